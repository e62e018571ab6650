// Round-to-nearest quantizers used by the online methods (`int8`, `int4`, `bitsandbytes` on
// float checkpoints). Each turns an fp32 weight [n, k] into unpacked codes + scales (+ zero
// points) in the kernels' WqSource layout; pack_wq_weight() then packs them.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/wq_linear.h"
#include "quant/quant_method.h"

namespace lowbit::quant {

// Owning storage for a WqSource (see kernels/cpu/wq_linear.h for the meaning of each field).
struct QuantizedWeight {
  kernels::cpu::WqKind kind = kernels::cpu::WqKind::kInt8;
  int64_t n = 0, k = 0, group_size = 0;
  std::vector<uint8_t> codes;  // [n, k]
  std::vector<float> scales;   // [n, k / group_size]
  std::vector<float> zeros;    // [n, k / group_size]; empty = symmetric

  kernels::cpu::WqSource source() const;
};

// int8, symmetric, one scale per output row: scale = max|w| / 127, q = round(w / scale) in
// [-127, 127], stored as code q + 128 (the kernels' symmetric int8 zero). Ties round to even.
QuantizedWeight rtn_int8_per_channel(const float* w, int64_t n, int64_t k);

// int4, asymmetric per group of `group_size` input columns: w ≈ (code - zero) · scale with a
// float zero point (HQQ-style; GPTQ/AWQ store integers). Per group: the min/max grid (AWQ's
// pseudo-quantizer: scale = (max - min) / 15, integer zero), then its codes refit by weighted
// least squares (weights rms + |w|) and re-rounded; the better of the two under that error
// wins (never worse than min/max RTN by that measure). Codes are the nearest integers to
// w / scale + zero, clamped to 0..15; a constant group is reproduced exactly.
QuantizedWeight rtn_int4_grouped(const float* w, int64_t n, int64_t k, int64_t group_size);

// The group `int4` uses for a layer with k input columns: 128 when it divides k, else the
// largest multiple of 32 below 128 that does (576 -> 96); 0 when no multiple of 32 divides k
// (k = 172): every int4 format groups by multiples of 32 (GPTQ/AWQ 32/64/128, ggml's 32-element
// blocks) and llama-quantize keeps such a tensor in F16, so `int4` leaves the layer unquantized.
int64_t int4_group_size(int64_t k);

// bitsandbytes 4-bit (NF4 / FP4) quantization like bnb's quantize_4bit: the flattened weight is
// cut into blocks of `blocksize` elements (blocks may span rows), each scaled by its absmax and
// mapped to the nearest entry of the 16-value table. Returns codes [n·k] (flat) and
// absmax [ceil(n·k / blocksize)].
struct Bnb4bitBlocks {
  std::vector<uint8_t> codes;
  std::vector<float> absmax;
};
Bnb4bitBlocks bnb_quantize_4bit(kernels::cpu::WqKind kind, const float* w, int64_t numel,
                                int64_t blocksize);

// Re-expresses flat bnb blocks as WqSource groups along each row: group = gcd(k, blocksize),
// so no group straddles a block boundary; each group takes its block's absmax as scale.
QuantizedWeight bnb_blocks_to_groups(kernels::cpu::WqKind kind, std::vector<uint8_t> flat_codes,
                                     const std::vector<float>& absmax, int64_t n, int64_t k,
                                     int64_t blocksize);

// The layer's float weight [out, in] as fp32, refusing NaN/Inf (an online quantizer would turn
// them into garbage scales); `method` is named in errors.
std::vector<float> finite_weight_values(const LinearLayer& layer, const char* method);

}  // namespace lowbit::quant
