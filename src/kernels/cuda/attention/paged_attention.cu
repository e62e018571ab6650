// Paged attention, flash-decoding style. One block of 4 warps per (token, kv head, chunk of GC
// query heads, split of the context). Inside a block every warp streams its own share of the
// split's positions with its own running softmax; no barrier until the end, where the warps'
// partial results are merged through shared memory.
//
// Inside a warp, a "slot" of lpp lanes holds one position at a time: each lane loads EPL
// consecutive elements of the head (16 bytes: 8 bf16 or 16 FP8), so one load instruction of the
// warp reads 32/lpp consecutive positions = 512 contiguous bytes of the [block][kv head][pos][dim]
// cache. Each lane issues U loads of K and U of V before using any (8 · 16 bytes in flight per
// lane), and the K/V bytes it loads serve all GC query heads of the kv head (GQA reuse).
// Scores live in the log2 domain (q is pre-multiplied by log2 e) so exp2 is one instruction.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "kernels/cuda/attention/kv_convert.cuh"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/common/cuda_check.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
constexpr int kUnroll = 4;         // positions per lane loaded before the first use
constexpr int kMinSplitLen = 32;   // positions: the kernel never splits finer than this
constexpr int kSplitTarget = 128;  // positions: attention_splits aims at no less per split
constexpr int kBlocksPerSm = 4;    // attention_splits fills the GPU with this many blocks
constexpr float kLog2e = 1.4426950408889634f;

// Streaming loads: read once, keep out of L1, fetch whole 256-byte L2 sectors groups.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}
__device__ __forceinline__ uint2 ld_stream(const uint2* p) {
  uint2 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0, %1}, [%2];"
      : "=r"(r.x), "=r"(r.y)
      : "l"(p));
  return r;
}

// EPL cache elements of type D packed in Raw (16 or 8 bytes).
template <KvDtype D, int EPL>
using RawOf = std::conditional_t<EPL*(D == KvDtype::kBf16 ? 2 : 1) == 16, uint4, uint2>;

template <KvDtype D, int EPL>
__device__ __forceinline__ void unpack(const RawOf<D, EPL>& raw, float out[EPL]) {
  if constexpr (D == KvDtype::kBf16) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < EPL / 2; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    constexpr __nv_fp8_interpretation_t kind = D == KvDtype::kFp8E4M3 ? __NV_E4M3 : __NV_E5M2;
    const __nv_fp8x2_storage_t* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&raw);
#pragma unroll
    for (int i = 0; i < EPL / 2; ++i) {  // one packed cvt (e4m3x2/e5m2x2 -> f16x2) per pair
      const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pairs[i], kind)));
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

// Merges running softmax state (m, l, acc) with another one (log2 domain).
__device__ __forceinline__ void merge_weights(float m, float m_o, float& w, float& w_o) {
  const float M = fmaxf(m, m_o);
  const float M_use = M == -INFINITY ? 0.0f : M;  // both empty: weights 0, state stays empty
  w = exp2f(m - M_use);
  w_o = exp2f(m_o - M_use);
}

template <KvDtype D, int EPL, int GC>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(AttentionArgs a, PagedKvLayer c, int lpp_log2) {
  using T = typename KvElem<D>::T;
  using Raw = RawOf<D, EPL>;
  __shared__ __align__(16) float s_acc[kWarps][GC][kMaxHeadDim];
  __shared__ float s_m[kWarps][GC], s_l[kWarps][GC];

  const int t = blockIdx.x;
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + GC - 1) / GC;
  const int kvh = blockIdx.y / q_chunks;
  const int qc = blockIdx.y % q_chunks;
  const int h0 = kvh * group + qc * GC;
  const int G = min(GC, group - qc * GC);
  const int split = blockIdx.z, splits = gridDim.z;
  const int ctx = a.ctx_lens[t];
  const int seq = a.token_seq[t];
  // Splits cover at least kMinSplitLen positions each; the trailing ones of a short context
  // stay empty (a CUDA graph captures one split count for every context length).
  const int per = max((ctx + splits - 1) / splits, kMinSplitLen);
  const int begin = min(ctx, split * per), end = min(ctx, begin + per);

  const int hd = c.head_dim, bs = c.block_size;
  const int lpp = 1 << lpp_log2;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane & (lpp - 1);
  const int slot = lane >> lpp_log2;
  const int num_slots = 32 >> lpp_log2;
  const int d0 = sub * EPL;
  const bool dim_on = d0 < hd;
  const float k_scale = D == KvDtype::kBf16 ? 1.0f : *c.k_scale;
  const float v_scale = D == KvDtype::kBf16 ? 1.0f : *c.v_scale;

  // q of the block's heads, pre-multiplied by softmax scale · K dequant scale · log2 e.
  float q[GC][EPL];
#pragma unroll
  for (int g = 0; g < GC; ++g) {
#pragma unroll
    for (int i = 0; i < EPL; ++i) q[g][i] = 0.0f;
    if (g < G && dim_on) {
      const __nv_bfloat16* qp = a.q + int64_t(t) * a.q_stride + int64_t(h0 + g) * hd + d0;
#pragma unroll
      for (int j = 0; j < EPL; j += 8) load8<KvDtype::kBf16>(qp + j, q[g] + j);
#pragma unroll
      for (int i = 0; i < EPL; ++i) q[g][i] *= a.scale * k_scale * kLog2e;
    }
  }
  float m[GC], l[GC], acc[GC][EPL];
#pragma unroll
  for (int g = 0; g < GC; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < EPL; ++i) acc[g][i] = 0.0f;
  }

  // Element offsets: block b, this kv head, position-in-block r, dim d0.
  const int64_t block_elems = int64_t(c.num_kv_heads) * bs * hd;
  const T* kbase = static_cast<const T*>(c.k) + int64_t(kvh) * bs * hd + d0;
  const T* vbase = static_cast<const T*>(c.v) + int64_t(kvh) * bs * hd + d0;
  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks_per_seq;

  const int warp_span = num_slots * kUnroll;  // positions a warp covers per iteration
  for (int p0 = begin + warp * warp_span; p0 < end; p0 += kWarps * warp_span) {
    Raw kr[kUnroll], vr[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int pos = p0 + u * num_slots + slot;
      kr[u] = Raw{};
      vr[u] = Raw{};
      if (pos < end && dim_on) {
        const int64_t off = int64_t(table[pos / bs]) * block_elems + int64_t(pos % bs) * hd;
        kr[u] = ld_stream(reinterpret_cast<const Raw*>(kbase + off));
        vr[u] = ld_stream(reinterpret_cast<const Raw*>(vbase + off));
      }
    }
    // Scores (log2 domain) of the U positions for each head; the whole warp runs the shuffles.
    float s[kUnroll][GC];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[EPL];
      unpack<D, EPL>(kr[u], kf);
      const bool in = p0 + u * num_slots + slot < end;
#pragma unroll
      for (int g = 0; g < GC; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < EPL; ++i) dot = fmaf(q[g][i], kf[i], dot);
        for (int o = lpp >> 1; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        s[u][g] = in ? dot : -INFINITY;
      }
    }
    // Running softmax per slot: rescale once per U positions.
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      float mx = s[0][g];
#pragma unroll
      for (int u = 1; u < kUnroll; ++u) mx = fmaxf(mx, s[u][g]);
      const float m_new = fmaxf(m[g], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[g] - m_use);
      m[g] = m_new;
      l[g] *= alpha;
#pragma unroll
      for (int i = 0; i < EPL; ++i) acc[g][i] *= alpha;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        s[u][g] = exp2f(s[u][g] - m_use);
        l[g] += s[u][g];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float vf[EPL];
      unpack<D, EPL>(vr[u], vf);
#pragma unroll
      for (int g = 0; g < GC; ++g)
#pragma unroll
        for (int i = 0; i < EPL; ++i) acc[g][i] = fmaf(s[u][g], vf[i], acc[g][i]);
    }
  }

  // Merge the slots of each warp (lanes with equal `sub`), then the warps in shared memory.
  for (int o = lpp; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[g], o);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[g], o);
      float w, w_o;
      merge_weights(m[g], m_o, w, w_o);
      m[g] = fmaxf(m[g], m_o);
      l[g] = l[g] * w + l_o * w_o;
#pragma unroll
      for (int i = 0; i < EPL; ++i)
        acc[g][i] = acc[g][i] * w + __shfl_xor_sync(0xffffffffu, acc[g][i], o) * w_o;
    }
  }
  if (lane < lpp && dim_on) {
#pragma unroll
    for (int g = 0; g < GC; ++g) {
#pragma unroll
      for (int i = 0; i < EPL; i += 4)
        *reinterpret_cast<float4*>(&s_acc[warp][g][d0 + i]) =
            make_float4(acc[g][i], acc[g][i + 1], acc[g][i + 2], acc[g][i + 3]);
      if (lane == 0) {
        s_m[warp][g] = m[g];
        s_l[warp][g] = l[g];
      }
    }
  }
  __syncthreads();
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

// Merges the splits of one (token, head): out = Σ 2^(m_s − M)·acc_s / Σ 2^(m_s − M)·l_s.
// The split weights are computed once into shared memory; then each thread owns dims.
__global__ void merge_kernel(AttentionArgs a, int hd) {
  __shared__ float s_w[128];  // attention_splits never asks for more than 128
  __shared__ float s_inv_den;
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int splits = a.num_splits;
  const int64_t row0 = (t * a.num_heads + h) * splits;
  const float* ml = a.workspace + a.n * a.num_heads * splits * int64_t(hd) + 2 * row0;
  if (threadIdx.x < 32) {
    float M = -INFINITY;
    for (int s = threadIdx.x; s < splits; s += 32)
      if (ml[2 * s + 1] > 0.0f) M = fmaxf(M, ml[2 * s]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float den = 0.0f;
    for (int s = threadIdx.x; s < splits; s += 32) {
      const float l = ml[2 * s + 1];
      const float w = l > 0.0f ? exp2f(ml[2 * s] - M) : 0.0f;
      s_w[s] = w;
      den += w * l;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) den += __shfl_xor_sync(0xffffffffu, den, o);
    if (threadIdx.x == 0) s_inv_den = 1.0f / den;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.0f;
    for (int s = 0; s < splits; ++s) num = fmaf(s_w[s], a.workspace[(row0 + s) * hd + d], num);
    a.out[t * a.num_heads * int64_t(hd) + h * hd + d] = __float2bfloat16(num * s_inv_den);
  }
}

// Query heads per block for a GQA group: the next power of two, at most max_gc.
int heads_per_block(int group, int max_gc) {
  int gc = 1;
  while (gc < group && gc < max_gc) gc <<= 1;
  return gc;
}

template <KvDtype D, int EPL, int GC>
void launch(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  int lpp_log2 = 0;
  while ((EPL << lpp_log2) < c.head_dim) ++lpp_log2;
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + GC - 1) / GC;
  dim3 grid(unsigned(a.n), unsigned(c.num_kv_heads * q_chunks), unsigned(a.num_splits));
  attention_kernel<D, EPL, GC><<<grid, kThreads, 0, stream>>>(a, c, lpp_log2);
}

// bf16: 8 elements per lane, up to 8 heads per block. FP8 with head_dim % 16 == 0: 16 elements
// per lane (16-byte loads), up to 4 heads per block (registers: q and acc are GC · EPL floats
// each); other FP8 head dims: 8-byte loads, 8 heads per block.
template <KvDtype D>
void dispatch(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  const int group = a.num_heads / c.num_kv_heads;
  if constexpr (D == KvDtype::kBf16) {
    switch (heads_per_block(group, 8)) {
      case 1:
        return launch<D, 8, 1>(a, c, stream);
      case 2:
        return launch<D, 8, 2>(a, c, stream);
      case 4:
        return launch<D, 8, 4>(a, c, stream);
      default:
        return launch<D, 8, 8>(a, c, stream);
    }
  } else {
    if (c.head_dim % 16 != 0) return launch<D, 8, 8>(a, c, stream);
    switch (heads_per_block(group, 4)) {
      case 1:
        return launch<D, 16, 1>(a, c, stream);
      case 2:
        return launch<D, 16, 2>(a, c, stream);
      default:
        return launch<D, 16, 4>(a, c, stream);
    }
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
  const int64_t blocks = n * num_kv_heads * ((group + 7) / 8);
  const int64_t want = int64_t(kBlocksPerSm) * sms;
  if (blocks >= want) return 1;
  // Fill the GPU with about kBlocksPerSm blocks per multiprocessor, each split at least
  // kSplitTarget positions long (shorter splits cost more in the merge than they gain).
  int64_t splits = (want + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, (max_ctx + kSplitTarget - 1) / kSplitTarget);
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
  if (a.num_splits < 1 || a.num_splits > 128)
    fail("paged attention: {} context splits (expected 1 to 128)", a.num_splits);
  LOWBIT_CHECK(a.num_splits == 1 || a.workspace, "attention with {} splits needs a workspace",
               a.num_splits);
  switch (c.dtype) {
    case KvDtype::kBf16:
      dispatch<KvDtype::kBf16>(a, c, stream);
      break;
    case KvDtype::kFp8E4M3:
      dispatch<KvDtype::kFp8E4M3>(a, c, stream);
      break;
    case KvDtype::kFp8E5M2:
      dispatch<KvDtype::kFp8E5M2>(a, c, stream);
      break;
  }
  LOWBIT_CUDA_CHECK_LAUNCH();
  if (a.num_splits > 1) {
    merge_kernel<<<dim3(unsigned(a.n), unsigned(a.num_heads)), 128, 0, stream>>>(a, c.head_dim);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace lowbit::kernels::cuda
