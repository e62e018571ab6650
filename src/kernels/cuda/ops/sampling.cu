// GPU sampling (see sampling.h). One block of kThreads threads per row; every pass streams the
// row from global memory (vocab ≈ 32k-256k floats: a few hundred KB, L2-resident after the
// first pass), which at one row per decode step costs tens of microseconds at most.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/ops/sampling.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr int kThreads = 512;

// Order-preserving key: larger float -> larger key; NaN -> 0 (below every number).
__device__ __forceinline__ uint32_t order_key(float f) {
  if (f != f) return 0u;
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Radix selection from the top: the largest key t such that the weight (count or mass) of keys
// >= t reaches `need`. weight_of(key) gives each element's weight; only keys >= floor count.
template <typename Weight, typename WeightOf>
__device__ uint32_t select_from_top(const float* x, int64_t vocab, uint32_t floor, Weight need,
                                    WeightOf weight_of, Weight* hist /* shared [256] */) {
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = Weight(0);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const uint32_t key = order_key(x[i]);
      if (key < floor || (key & mask) != prefix) continue;
      atomicAdd(&hist[(key >> shift) & 0xFFu], weight_of(key, x[i]));
    }
    __syncthreads();
    // One thread walks the 256 bins from the top (cheap next to the pass over the row).
    __shared__ uint32_t s_bin;
    __shared__ Weight s_need;
    if (threadIdx.x == 0) {
      Weight acc = Weight(0);
      int b = 255;
      for (; b > 0; --b) {
        if (acc + hist[b] >= need) break;
        acc += hist[b];
      }
      s_bin = uint32_t(b);
      s_need = need - acc;
    }
    __syncthreads();
    prefix |= s_bin << shift;
    mask |= 0xFFu << shift;
    need = s_need;
    __syncthreads();
  }
  return prefix;
}

__global__ void sample_kernel(const float* __restrict__ logits, int64_t ld, int64_t vocab,
                              SamplingConfig cfg, const float* __restrict__ uniforms,
                              int32_t* __restrict__ ids) {
  using Reduce = cub::BlockReduce<float, kThreads>;
  using Scan = cub::BlockScan<float, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } tmp;
  __shared__ float hist_mass[256];
  __shared__ uint32_t hist_count[256];
  __shared__ float s_max, s_sum;
  __shared__ int32_t s_pick;
  const float* x = logits + int64_t(blockIdx.x) * ld;

  // 1. Largest logit (softmax shift).
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, x[i]);  // fmaxf drops NaN
  m = Reduce(tmp.reduce).Reduce(m, ::cuda::maximum<>{});
  if (threadIdx.x == 0) s_max = m;
  __syncthreads();
  m = s_max;
  const float inv_t = 1.0f / cfg.temperature;

  // 2. top-k: keep keys >= the k-th largest key.
  uint32_t floor = 1u;  // excludes NaN (key 0)
  if (cfg.top_k > 0 && cfg.top_k < vocab)
    floor = max(floor, select_from_top<uint32_t>(
                           x, vocab, floor, uint32_t(cfg.top_k), [](uint32_t, float) { return 1u; },
                           hist_count));
  auto prob = [&](float v) { return __expf((v - m) * inv_t); };

  // 3. top-p over the survivors: the smallest set of the largest keys holding top_p of the mass.
  if (cfg.top_p < 1.0f) {
    float z = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
      if (order_key(x[i]) >= floor) z += prob(x[i]);
    z = Reduce(tmp.reduce).Sum(z);
    if (threadIdx.x == 0) s_sum = z;
    __syncthreads();
    floor = max(floor, select_from_top<float>(
                           x, vocab, floor, cfg.top_p * s_sum,
                           [&](uint32_t, float v) { return prob(v); }, hist_mass));
  }

  // 4. Draw: the first token (vocabulary order) whose running mass passes u · Z. Each thread
  //    owns one contiguous slice so a block scan over slice sums orders the whole row.
  const int64_t per = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t lo = vocab < int64_t(threadIdx.x) * per ? vocab : int64_t(threadIdx.x) * per;
  const int64_t hi = vocab < lo + per ? vocab : lo + per;
  float part = 0;
  for (int64_t i = lo; i < hi; ++i)
    if (order_key(x[i]) >= floor) part += prob(x[i]);
  float before = 0, total = 0;
  Scan(tmp.scan).ExclusiveSum(part, before, total);
  if (threadIdx.x == 0) s_pick = -1;
  __syncthreads();
  const float target = uniforms[blockIdx.x] * total;
  if (part > 0 && before <= target && target < before + part) {
    float acc = before;
    int32_t pick = -1;
    for (int64_t i = lo; i < hi; ++i) {
      if (order_key(x[i]) < floor) continue;
      pick = int32_t(i);
      acc += prob(x[i]);
      if (acc > target) break;
    }
    atomicMax(&s_pick, pick);  // at most one thread, unless rounding puts target on a seam
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t pick = s_pick;
    if (pick < 0)  // rounding left target at or past the total: take the last kept token
      for (int64_t i = vocab - 1; i >= 0 && pick < 0; --i)
        if (order_key(x[i]) >= floor) pick = int32_t(i);
    ids[blockIdx.x] = pick < 0 ? 0 : pick;
  }
}

}  // namespace

void sample_rows(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                 const SamplingConfig& config, const float* uniforms, int32_t* ids,
                 cudaStream_t stream) {
  if (rows <= 0) return;
  if (vocab <= 0 || ld < vocab)
    fail("sample_rows: vocab {} with row stride {} (expected 0 < vocab <= stride)", vocab, ld);
  if (!(config.temperature > 0.0f) || !(config.top_p > 0.0f && config.top_p <= 1.0f) ||
      config.top_k < 0)
    fail("sample_rows: temperature {} (expected > 0), top_k {} (>= 0), top_p {} (in (0, 1])",
         config.temperature, config.top_k, config.top_p);
  sample_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, ld, vocab, config, uniforms, ids);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lowbit::kernels::cuda
