// Token sampling on the GPU (temperature, top-k, top-p) so that a sampled decode step copies one
// token id to the host instead of the logits. Semantics follow engine::Sampler (the CPU
// sampler): keep the top_k largest logits (0 = all), take their softmax at `temperature`, keep
// the most probable tokens whose cumulative probability first reaches top_p, and draw from what
// is left with a uniform number u in [0, 1) supplied by the caller (the host RNG, so a seed
// gives the same stream on both devices). Tokens tied at a cut-off are all kept.
//
// One block per row; the thresholds come from radix selection over the logits' order-preserving
// 32-bit keys (4 passes of 256-bin histograms: counts for top-k, probability mass for top-p),
// the draw from a block-wide prefix sum in vocabulary order. NaN logits are never drawn.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lowbit::kernels::cuda {

struct SamplingConfig {
  float temperature = 1.0f;  // > 0 (temperature 0 is greedy: use argmax_rows)
  int32_t top_k = 0;         // 0 = no top-k cut
  float top_p = 1.0f;        // (0, 1]
};

// ids[r] = a draw from row r of logits [rows, ld] (fp32, first `vocab` entries) with the
// uniform uniforms[r] (device array, [rows]). Launch-only: CUDA-graph safe, no allocation.
void sample_rows(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                 const SamplingConfig& config, const float* uniforms, int32_t* ids,
                 cudaStream_t stream);

}  // namespace lowbit::kernels::cuda
