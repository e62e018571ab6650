// Small GPU kernels of the Llama forward pass: embedding gather, fused residual-add + RMSNorm,
// SiLU·mul, RoPE fused with the paged-KV write, FP8 scale calibration, argmax, random fill.
// All launch on `stream` and check the launch; shapes are row-major, [rows, width].
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/attention/paged_kv.h"

namespace lowbit::kernels::cuda {

using bf16 = __nv_bfloat16;

// out[t, :] = float(table[ids[t], :]); table: [vocab, width]. ids must be in range (checked
// by the caller on the host).
void embedding(const bf16* table, const int32_t* ids, int64_t n, int64_t width, float* out,
               cudaStream_t stream);

// Per row r of x [n, width] (fp32, the residual stream): x += float(delta) when delta is not
// null, then out = bf16(x / sqrt(mean(x²) + eps) · w). x is updated in place.
void add_rms_norm(float* x, const bf16* delta, const float* w, float eps, int64_t n, int64_t width,
                  bf16* out, cudaStream_t stream);

// gate_up: [n, 2·inter] (gate columns first, then up) -> out [n, inter] = silu(gate) · up.
void silu_mul(const bf16* gate_up, int64_t n, int64_t inter, bf16* out, cudaStream_t stream);

// y[n, width] += bias[width] (bias fp32), in bf16.
void add_bias(bf16* y, const float* bias, int64_t n, int64_t width, cudaStream_t stream);

// The q/k/v projection output of n tokens, qkv: [n, (heads + 2·kv_heads) · head_dim] with the
// q heads first, then k, then v. Per token t at positions[t]:
//   rotate: optional per-head RMSNorm (q_norm / k_norm, [head_dim], null = none) and RoPE on
//           q and k, written back in place;
//   store:  k and v written to the paged cache at slot_mapping[t] (block · block_size + offset),
//           quantized with the layer's scales when the cache is FP8.
struct RopeKvArgs {
  bf16* qkv = nullptr;
  int64_t n = 0;
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0, rope_dim = 0;
  bool neox = true;                 // pairs (i, i + rope_dim/2); else (2i, 2i + 1)
  const float* inv_freq = nullptr;  // [rope_dim / 2]
  const int32_t* positions = nullptr;
  const int32_t* slot_mapping = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  float norm_eps = 1e-6f;
  bool rotate = true, store = true;
};
void rope_kv_write(const RopeKvArgs& args, const PagedKvLayer& cache, cudaStream_t stream);

// FP8 scale calibration from the first prompt over the k and v columns of qkv
// ([n, (heads + 2·kv_heads) · head_dim], already rotated): per_head, k_scale[h] = max|k| over
// the n rows of kv head h / fp8_max (likewise v); else every k_scale[h] = the max over all kv
// heads / fp8_max (one scale per layer). k_scale, v_scale: [num_kv_heads] each (the layer's
// PagedKvLayer with scale_stride 1); `amax_scratch` holds 2 · num_kv_heads floats. The same
// rule as the CPU cache's (engine::KvScales::calibrate).
void calibrate_kv_scales(const bf16* qkv, int64_t n, int32_t num_heads, int32_t num_kv_heads,
                         int32_t head_dim, float fp8_max, bool per_head, float* amax_scratch,
                         float* k_scale, float* v_scale, cudaStream_t stream);

// ids[r] = argmax over logits[r, :vocab] (fp32; first index on ties; NaN never wins, an
// all-NaN row gives 0). scratch: argmax_scratch_bytes(rows, vocab) bytes, zeroed once when
// allocated (each call leaves it zeroed again); one call at a time per scratch.
int64_t argmax_scratch_bytes(int64_t rows, int64_t vocab);
void argmax_rows(const float* logits, int64_t rows, int64_t vocab, int32_t* ids, void* scratch,
                 cudaStream_t stream);

// Deterministic uniform values in [-scale, scale) from (seed, index); never all zeros.
void fill_uniform(bf16* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
void fill_uniform(float* out, int64_t n, uint64_t seed, float scale, float offset,
                  cudaStream_t stream);

// Random FP8 bytes that are finite in both e4m3 and e5m2 (benchmarks' cache contents).
void fill_random_fp8(uint8_t* out, int64_t n, uint64_t seed, cudaStream_t stream);

}  // namespace lowbit::kernels::cuda
