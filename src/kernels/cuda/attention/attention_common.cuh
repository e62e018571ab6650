// What both paged decode-attention kernels share (paged_attention.cu: CUDA cores, any head
// size; paged_attention_mma.cu: tensor cores, head_dim 128): the block shape,
// the split rule's constants, the cp.async ring helpers and the merge of a block's warps.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention/paged_attention.h"

namespace lowbit::kernels::cuda::attention_detail {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
constexpr int kStages = 4;        // ring stages per warp: kStages - 1 iterations in flight
constexpr int kMinSplitLen = 32;  // positions: the kernel never splits finer than this
constexpr int kSplitTarget = 64;  // positions: attention_splits aims at no less per split
constexpr int kBlocksPerSm = 2;   // resident blocks per SM (registers, kSmemFloor)
constexpr float kLog2e = 1.4426950408889634f;

// cp.async of Bytes (16 or 8) from global to shared; src_bytes 0 zero-fills (out-of-range
// positions and idle lanes must read as 0, never as stale data: 0 · NaN would poison acc).
template <int Bytes>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (Bytes == 16)
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(d), "l"(src),
                 "r"(src_bytes));
  else
    asm volatile("cp.async.ca.shared.global.L2::256B [%0], [%1], 8, %2;" ::"r"(d), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Merges running softmax state (m, l, acc) with another one (log2 domain).
__device__ __forceinline__ void merge_weights(float m, float m_o, float& w, float& w_o) {
  const float M = fmaxf(m, m_o);
  const float M_use = M == -INFINITY ? 0.0f : M;  // both empty: weights 0, state stays empty
  w = exp2f(m - M_use);
  w_o = exp2f(m_o - M_use);
}

// Dynamic shared memory: the cp.async ring, reused for the warps' partial outputs at the end;
// at least kSmemFloor so that every variant holds exactly kBlocksPerSm blocks per SM (the bf16
// kernel would fit 3 by registers and ring, and at batch 64 x 4k its 512 blocks then left a
// 116-block tail wave: 437 us vs 380 us with 2 or 3 splits). attention_splits' one-wave rule
// relies on the uniform count.
constexpr size_t kSmemFloor = 80 * 1024;  // 2 · 80 KB fit the 228 KB of an H100 SM, 3 do not

// What one block of the grid (tokens, kv heads × chunks of GC query heads, splits) attends:
// token t of sequence seq, kv head kvh, query heads h0 .. h0 + G − 1, positions [begin, end) of
// its ctx. Splits cover at least kMinSplitLen positions each (multiples of `align`), so the
// trailing splits of a short context stay empty (a CUDA graph captures one split count for
// every context length).
struct BlockWork {
  int t, seq, ctx, kvh, h0, G, split, splits, begin, end;
};
template <int GC>
__device__ __forceinline__ BlockWork block_work(const AttentionArgs& a, const PagedKvLayer& c,
                                                int align) {
  BlockWork w;
  w.t = blockIdx.x;
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + GC - 1) / GC;
  w.kvh = blockIdx.y / q_chunks;
  const int qc = blockIdx.y % q_chunks;
  w.h0 = w.kvh * group + qc * GC;
  w.G = min(GC, group - qc * GC);
  w.split = blockIdx.z;
  w.splits = gridDim.z;
  w.ctx = a.ctx_lens[w.t];
  w.seq = a.token_seq[w.t];
  int per = max((w.ctx + w.splits - 1) / w.splits, kMinSplitLen);
  per = (per + align - 1) / align * align;
  w.begin = min(w.ctx, w.split * per);
  w.end = min(w.ctx, w.begin + per);
  return w;
}

// The end of a block: merges its warps' running softmax states (s_m, s_l: max and sum per warp
// and head, log2 domain; s_acc: unnormalized outputs [kWarps][GC][kMaxHeadDim]) for its G heads
// h0.. of token t, and writes the normalized output (one split) or the split's partial result
// and (max, sum) into the workspace for merge_kernel. Called after a barrier.
template <int GC>
__device__ __forceinline__ void write_block_result(const AttentionArgs& a,
                                                   const float (*s_acc)[GC][kMaxHeadDim],
                                                   const float (*s_m)[GC], const float (*s_l)[GC],
                                                   int G, int h0, int t, int split, int splits,
                                                   int hd, float v_scale) {
  const int64_t out_width = int64_t(a.num_heads) * hd;
  for (int e = threadIdx.x; e < G * hd; e += kThreads) {
    const int g = e / hd, d = e % hd;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w][g]);
    const float M_use = M == -INFINITY ? 0.0f : M;
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = exp2f(s_m[w][g] - M_use);
      num = fmaf(wt, s_acc[w][g][d], num);
      den = fmaf(wt, s_l[w][g], den);
    }
    const int h = h0 + g;
    if (splits == 1) {
      a.out[int64_t(t) * out_width + int64_t(h) * hd + d] = __float2bfloat16(num / den * v_scale);
    } else {
      const int64_t row = (int64_t(t) * a.num_heads + h) * splits + split;
      a.workspace[row * hd + d] = num * v_scale;
      if (d == 0) {
        float* ml = a.workspace + a.n * a.num_heads * splits * int64_t(hd);
        ml[2 * row] = M;
        ml[2 * row + 1] = den;
      }
    }
  }
}

// The tensor-core kernel for this call, launched, or false when it cannot take it (head_dim
// != 128, block size < 16, LOWBIT_ATTENTION_MMA=0): paged_attention_mma.cu.
bool launch_attention_mma(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream);

}  // namespace lowbit::kernels::cuda::attention_detail
