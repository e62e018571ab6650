#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cuda/attention/kv_convert.cuh"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/common/cuda_check.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 256;   // positions scored per pass (scores kept in shared memory)
constexpr int kMaxGroup = 8;  // query heads per block
constexpr int kMaxHeadDim = 256;
constexpr int kUnroll = 4;  // positions per slot loaded before use

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Threads are grouped in "slots" of lpp = 2^lpp_log2 lanes; a slot handles one position at a
// time, each lane 8 consecutive dims of the head (lpp·8 >= head_dim).
template <KvDtype D>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(AttentionArgs a, PagedKvLayer c, int lpp_log2) {
  using T = typename KvElem<D>::T;
  __shared__ float s_p[kMaxGroup][kChunk];                  // scores, then probabilities
  __shared__ float s_out[kWarps][kMaxGroup * kMaxHeadDim];  // per-warp partial outputs
  __shared__ float s_m[kMaxGroup], s_l[kMaxGroup], s_alpha[kMaxGroup];

  const int t = blockIdx.x;
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const int kvh = blockIdx.y / q_chunks;
  const int qc = blockIdx.y % q_chunks;
  const int h0 = kvh * group + qc * kMaxGroup;
  const int G = min(kMaxGroup, group - qc * kMaxGroup);
  const int split = blockIdx.z, splits = gridDim.z;
  const int ctx = a.ctx_lens[t];
  const int seq = a.token_seq[t];
  // Splits cover at least 32 positions each; the trailing ones of a short context stay empty
  // (a CUDA graph captures one split count for every context length).
  const int per = max((ctx + splits - 1) / splits, 32);
  const int begin = min(ctx, split * per), end = min(ctx, begin + per);

  const int hd = c.head_dim, bs = c.block_size, nkv = c.num_kv_heads;
  const int lpp = 1 << lpp_log2;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane & (lpp - 1);
  const int slot = threadIdx.x >> lpp_log2;
  const int num_slots = kThreads >> lpp_log2;
  const int d0 = sub * 8;
  const bool dim_on = d0 < hd;
  const float k_scale = D == KvDtype::kBf16 ? 1.0f : *c.k_scale;
  const float v_scale = D == KvDtype::kBf16 ? 1.0f : *c.v_scale;

  if (threadIdx.x < kMaxGroup) {
    s_m[threadIdx.x] = -INFINITY;
    s_l[threadIdx.x] = 0.0f;
  }

  // q of the block's heads, pre-multiplied by the softmax scale and the K dequant scale.
  float q[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
#pragma unroll
    for (int i = 0; i < 8; ++i) q[g][i] = 0.0f;
    if (g < G && dim_on) {
      load8<KvDtype::kBf16>(a.q + int64_t(t) * a.q_stride + int64_t(h0 + g) * hd + d0, q[g]);
#pragma unroll
      for (int i = 0; i < 8; ++i) q[g][i] *= a.scale * k_scale;
    }
  }
  float acc[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;

  const T* kbase = static_cast<const T*>(c.k);
  const T* vbase = static_cast<const T*>(c.v);
  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks_per_seq;
  auto elem_offset = [&](int pos) {
    const int64_t blk = table[pos / bs];
    return ((blk * nkv + kvh) * bs + pos % bs) * hd + d0;
  };

  for (int c0 = begin; c0 < end; c0 += kChunk) {
    const int c1 = min(end, c0 + kChunk);
    // 1. scores s_p[g][pos - c0] = q_g · k_pos. Each slot loads kUnroll positions before using
    //    them (several loads in flight); every lane runs the same iterations (shuffles).
    for (int base = c0; base < c1; base += num_slots * kUnroll) {
      float kv[kUnroll][8];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int pos = base + u * num_slots + slot;
#pragma unroll
        for (int i = 0; i < 8; ++i) kv[u][i] = 0.0f;
        if (pos < c1 && dim_on) load8<D>(kbase + elem_offset(pos), kv[u]);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int pos = base + u * num_slots + slot;
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < G) {  // G is block-uniform: the shuffles stay convergent
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; ++i) s = fmaf(q[g][i], kv[u][i], s);
            for (int o = lpp >> 1; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (pos < c1 && sub == 0) s_p[g][pos - c0] = s;
          }
        }
      }
    }
    __syncthreads();
    // 2. running softmax per head: warp w owns heads w, w + kWarps, ...
    const int len = c1 - c0;
    for (int g = warp; g < G; g += kWarps) {
      float mx = -INFINITY;
      for (int i = lane; i < len; i += 32) mx = fmaxf(mx, s_p[g][i]);
      mx = warp_max(mx);
      const float m_old = s_m[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int i = lane; i < len; i += 32) {
        float p = __expf(s_p[g][i] - m_new);
        s_p[g][i] = p;
        sum += p;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float alpha = __expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        s_alpha[g] = alpha;
        s_l[g] = s_l[g] * alpha + sum;
        s_m[g] = m_new;
      }
    }
    __syncthreads();
    // 3. acc = acc · alpha + Σ p · v
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      const float alpha = g < G ? s_alpha[g] : 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] *= alpha;
    }
    for (int base = c0; base < c1; base += num_slots * kUnroll) {
      float v[kUnroll][8];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int pos = base + u * num_slots + slot;
#pragma unroll
        for (int i = 0; i < 8; ++i) v[u][i] = 0.0f;
        if (pos < c1 && dim_on) load8<D>(vbase + elem_offset(pos), v[u]);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int pos = base + u * num_slots + slot;
        if (pos >= c1) break;
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < G) {
            const float p = s_p[g][pos - c0];
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[g][i] = fmaf(p, v[u][i], acc[g][i]);
          }
        }
      }
    }
    __syncthreads();  // s_p is rewritten by the next chunk
  }

  // Sum the slots of each warp (lanes with equal `sub`), then the warps through shared memory.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      for (int o = lpp; o < 32; o <<= 1) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], o);
  if (lane < lpp && dim_on) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g)
      if (g < G)
#pragma unroll
        for (int i = 0; i < 8; ++i) s_out[warp][g * hd + d0 + i] = acc[g][i];
  }
  __syncthreads();
  const int64_t out_width = int64_t(a.num_heads) * hd;
  for (int e = threadIdx.x; e < G * hd; e += kThreads) {
    const int g = e / hd, d = e % hd;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += s_out[w][e];
    const int h = h0 + g;
    if (splits == 1) {
      a.out[int64_t(t) * out_width + int64_t(h) * hd + d] =
          __float2bfloat16(sum / s_l[g] * v_scale);
    } else {
      const int64_t row = (int64_t(t) * a.num_heads + h) * splits + split;
      a.workspace[row * hd + d] = sum * v_scale;
      if (d == 0) {
        float* ml = a.workspace + a.n * a.num_heads * splits * int64_t(hd);
        ml[2 * row] = s_m[g];
        ml[2 * row + 1] = s_l[g];
      }
    }
  }
}

// Merges the splits of one (token, head): out = Σ e^(m_s − M)·acc_s / Σ e^(m_s − M)·l_s.
__global__ void merge_kernel(AttentionArgs a, int hd) {
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int splits = a.num_splits;
  const int64_t row0 = (t * a.num_heads + h) * splits;
  const float* ml = a.workspace + a.n * a.num_heads * splits * int64_t(hd) + 2 * row0;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s)
    if (ml[2 * s + 1] > 0.0f) M = fmaxf(M, ml[2 * s]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float l = ml[2 * s + 1];
      if (l > 0.0f) {
        const float w = __expf(ml[2 * s] - M);
        num += w * a.workspace[(row0 + s) * hd + d];
        den += w * l;
      }
    }
    a.out[t * a.num_heads * int64_t(hd) + h * hd + d] = __float2bfloat16(num / den);
  }
}

}  // namespace

int64_t attention_workspace_floats(int64_t n, int64_t num_heads, int64_t head_dim,
                                   int64_t num_splits) {
  return num_splits <= 1 ? 0 : n * num_heads * num_splits * (head_dim + 2);
}

int32_t attention_splits(int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t max_ctx,
                         int sms) {
  const int64_t group = num_heads / num_kv_heads;
  const int64_t blocks = n * num_kv_heads * ((group + kMaxGroup - 1) / kMaxGroup);
  if (blocks >= sms) return 1;
  // About 4 blocks per multiprocessor, each with at least 32 positions.
  int64_t splits = (4 * int64_t(sms) + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, (max_ctx + 31) / 32);
  return int32_t(std::clamp<int64_t>(splits, 1, 128));
}

void paged_attention(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  if (a.n == 0) return;
  const int hd = c.head_dim;
  if (hd % 8 != 0 || hd > kMaxHeadDim)
    fail("paged attention: head_dim {} is not supported (a multiple of 8 up to {})", hd,
         kMaxHeadDim);
  if (c.num_kv_heads <= 0 || a.num_heads % c.num_kv_heads != 0)
    fail("paged attention: {} query heads are not a multiple of {} kv heads", a.num_heads,
         c.num_kv_heads);
  LOWBIT_CHECK(a.num_splits == 1 || a.workspace, "attention with {} splits needs a workspace",
               a.num_splits);
  int lpp_log2 = 0;
  while ((8 << lpp_log2) < hd) ++lpp_log2;
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + kMaxGroup - 1) / kMaxGroup;
  dim3 grid(unsigned(a.n), unsigned(c.num_kv_heads * q_chunks), unsigned(a.num_splits));
  switch (c.dtype) {
    case KvDtype::kBf16:
      attention_kernel<KvDtype::kBf16><<<grid, kThreads, 0, stream>>>(a, c, lpp_log2);
      break;
    case KvDtype::kFp8E4M3:
      attention_kernel<KvDtype::kFp8E4M3><<<grid, kThreads, 0, stream>>>(a, c, lpp_log2);
      break;
    case KvDtype::kFp8E5M2:
      attention_kernel<KvDtype::kFp8E5M2><<<grid, kThreads, 0, stream>>>(a, c, lpp_log2);
      break;
  }
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (a.num_splits > 1) {
    merge_kernel<<<dim3(unsigned(a.n), unsigned(a.num_heads)), 128, 0, stream>>>(a, hd);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace lowbit::kernels::cuda
