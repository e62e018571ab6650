// Weight-only integer linear layers on the CPU (int4 / int8 / NF4 / FP4 weights, fp32
// activations): the one packed layout every weight-only method (awq, gptq, compressed-tensors,
// bitsandbytes, online int4/int8) repacks into in process_weights_after_loading, and the
// matrix products that read it with dequantization fused into the dot products.
//
// Logical weight, row j of W (n rows = output features, k columns = input features):
//   W[j, c] = (code[j, c] - zero[j, g]) * scale[j, g]     kInt4 (codes 0..15), kInt8 (0..255)
//   W[j, c] = lut[code[j, c]] * scale[j, g]                kNf4 / kFp4 (codes 0..15, bnb tables)
// with g = c / group_size, or under act-order g = (position of c in perm) / group_size (below).
//
// Methods hand over unpacked codes; pack_wq_weight() chooses the memory layout its kernels
// want (nibble order, interleaving, per-group precomputation), so that layout can change
// without touching any method.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"

namespace lowbit::kernels::cpu {

enum class WqKind : uint8_t { kInt4, kInt8, kNf4, kFp4 };
const char* wq_kind_name(WqKind kind);  // "int4", "int8", "nf4", "fp4"

// Unpacked description of one weight, as a method produces it. All arrays row-major.
struct WqSource {
  WqKind kind = WqKind::kInt4;
  int64_t n = 0, k = 0;
  int64_t group_size = 0;  // input columns per scale group; k for per-channel. Must divide k.
  const uint8_t* codes = nullptr;  // [n, k]; < 16 for 4-bit kinds
  const float* scales = nullptr;   // [n, k / group_size]
  const float* zeros = nullptr;    // [n, k / group_size] for kInt4/kInt8; nullptr = symmetric
                                   // (zero 8 for int4, 128 for int8); ignored for kNf4/kFp4
  // Act-order (GPTQ desc_act): codes stay in the checkpoint's column order (code column s
  // always multiplies x[s]), but the groups are scattered over the columns. perm lists the
  // columns in group order: column perm[c] belongs to scale group c / group_size, i.e.
  //   y[j] = Σ_c W(code[j, perm[c]], group c / group_size) · x[perm[c]].
  // For GPTQ, perm = stable argsort(g_idx) (valid when every group has group_size columns).
  // nullptr = identity (column c in group c / group_size). pack_wq_weight() reorders the
  // columns so that groups are contiguous and wq_linear gathers x once per call.
  const int32_t* perm = nullptr;
};

struct WqWeight;  // packed, opaque (layout private to the kernels)

// Validates `src` (sizes, group divisibility, code ranges, perm is a permutation) and packs
// it. Errors are lowbit::Error naming `what` (the layer), the field, found and expected.
std::shared_ptr<const WqWeight> pack_wq_weight(const WqSource& src, const std::string& what);

// Shape and storage of a packed weight (for reports and tests).
int64_t wq_rows(const WqWeight& w);
int64_t wq_cols(const WqWeight& w);
uint64_t wq_bytes(const WqWeight& w);  // bytes the kernels read per forward (codes + scales)

// y[m, n] = x[m, k] · Wᵀ (x row stride k, y row stride n), rows of W split across OpenMP
// threads, AVX-512(-VNNI) / AVX2 chosen at run time (active_isa()). With group_size % 32 == 0
// (every layout the methods produce) the SIMD kernels run; other layouts use a scalar kernel.
// Activations:
//   exact_activations() (linear.h) set, or nf4/fp4 weights: fp32 activations; the result
//     is the fp32 product of the exactly decoded weights (tests: within 1e-5 of Σ|w·x|).
//   otherwise, int4/int8 weights: each activation row is quantized once per call to int8
//     blocks of 32 (in group order under act-order; llama.cpp's Q8 rounding, d = amax/127 kept in
//     fp32) and dotted in integers; the result is the exact weights times the quantized
//     activations, so each output moves by at most Σ_c |W[j, c]|·d(c)/2 from the fp32 product (d of
//     c's block).
//   A NaN/Inf in an activation row reaches that row's outputs only.
// The scalar level always uses fp32 activations.
void wq_linear(const WqWeight& w, const float* x, int64_t m, float* y);
// Same at a given SIMD level (tests, benchmarks; lowbit::Error if this CPU lacks it); `exact`
// forces fp32 activations.
void wq_linear_isa(Isa isa, bool exact, const WqWeight& w, const float* x, int64_t m, float* y);

// Decodes the full logical weight to fp32 [n, k] in input order (tests, embeddings).
std::vector<float> wq_dequantize(const WqWeight& w);

// Plain reference on the *unpacked* source: double accumulation over the logical weight.
void wq_linear_reference(const WqSource& src, const float* x, int64_t m, float* y);

// The 16-entry value tables of bitsandbytes' NF4 and FP4 (FORMATS.md).
const float* wq_lut(WqKind kind);

}  // namespace lowbit::kernels::cpu
