// Paged attention, flash-decoding style. One block of 4 warps per (token, kv head, chunk of GC
// query heads, split of the context). Inside a block every warp streams its own share of the
// split's positions with its own running softmax; no barrier until the end, where the warps'
// partial results are merged through shared memory.
//
// Inside a warp, a "slot" of lpp lanes holds one position at a time: each lane loads EPL
// consecutive elements of the head (16 bytes: 8 bf16 or 16 FP8), so one load instruction of the
// warp reads 32/lpp consecutive positions = 512 contiguous bytes of the [block][kv head][pos][dim]
// cache. The loads are cp.async copies into a warp-private ring of kStages stages in shared
// memory (each stage: U positions per slot, K and V), issued kStages - 1 iterations ahead, so
// the warp keeps up to 3 · 4 KB in flight while it computes; a lane only reads back the bytes
// it copied itself, so no barrier is needed. The K/V bytes serve all GC query heads of the kv
// head (GQA reuse).
// Scores live in the log2 domain (q is pre-multiplied by log2 e) so exp2 is one instruction.
// Head size 128 (Llama, Qwen, Mistral) runs the tensor-core kernel of paged_attention_mma.cu
// instead; this one serves every other head size (and A/B runs with LOWBIT_ATTENTION_MMA=0).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "kernels/cuda/attention/attention_common.cuh"
#include "kernels/cuda/attention/kv_convert.cuh"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"

namespace lowbit::kernels::cuda {
namespace {

using namespace attention_detail;

// Positions per slot per iteration (one ring stage): 4 with 8 elements per lane, 2 with 16 (the
// same 8 positions per warp at head_dim 128, and q/acc/scores fit 168 registers either way).
template <int EPL>
constexpr int kUnroll = EPL == 16 ? 2 : 4;

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

// c ? a : b on registers. Written as selp because a plain ?: between two elements of a
// register array was compiled into a select of their addresses, moving the array to local memory.
__device__ __forceinline__ float select(bool c, float a, float b) {
  float r;
  asm("{ .reg .pred p; setp.ne.u32 p, %3, 0; selp.f32 %0, %1, %2, p; }"
      : "=f"(r)
      : "f"(a), "f"(b), "r"(unsigned(c)));
  return r;
}

// One level of the transposing reduction over W · 2 lanes, then the next (W / 2): a lane keeps
// the half of v[0 .. 2W) its lane bit W selects and adds the partner's partial sums of it.
// Afterwards v[0] of lane L holds the full sum of element L (mod the slot width).
template <int W, int N>
__device__ __forceinline__ void transpose_reduce(float (&v)[N], int sub) {
  const bool upper = sub & W;
#pragma unroll
  for (int i = 0; i < W; ++i) {
    const float send = select(upper, v[i], v[i + W]);
    const float keep = select(upper, v[i + W], v[i]);
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, W);
  }
  if constexpr (W > 1) transpose_reduce<W / 2>(v, sub);
}

template <KvDtype D, int EPL, int GC>
constexpr size_t smem_bytes() {
  const size_t ring = size_t(kWarps) * kStages * 2 * kUnroll<EPL> * 32 * sizeof(RawOf<D, EPL>);
  const size_t partial = size_t(kWarps) * GC * kMaxHeadDim * sizeof(float);
  const size_t need = ring > partial ? ring : partial;
  return need > kSmemFloor ? need : kSmemFloor;
}

// At least 2 blocks per multiprocessor (attention_splits counts on it): at most 255 registers.
// kFast: the slot has exactly U · GC lanes (head_dim 128 with 4 heads per block, bf16 or FP8),
// which the transposing score reduction needs; otherwise every score is reduced on its own.
template <KvDtype D, int EPL, int GC, bool kFast>
__global__ void __launch_bounds__(kThreads, 2)
    attention_kernel(AttentionArgs a, PagedKvLayer c, int lpp_log2, int bs_log2) {
  using T = typename KvElem<D>::T;
  using Raw = RawOf<D, EPL>;
  constexpr int U = kUnroll<EPL>;
  constexpr int NV = U * GC;                // (position, head) pairs per slot per iteration
  float m_lane = -INFINITY, l_lane = 0.0f;  // kFast: running max / sum of this lane's head
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float s_m[kWarps][GC], s_l[kWarps][GC];
  // No early trigger: the next kernel's blocks would take SM slots before this one's later
  // waves (it triggers when its blocks exit).
  pdl_wait();  // q and the cache entries of this step come from the kernels before

  const BlockWork bw = block_work<GC>(a, c, 1);
  const int t = bw.t, seq = bw.seq, kvh = bw.kvh, h0 = bw.h0, G = bw.G;
  const int split = bw.split, splits = bw.splits, begin = bw.begin, end = bw.end;

  const int hd = c.head_dim, bs = c.block_size;
  const int lpp = 1 << lpp_log2;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane & (lpp - 1);
  const int slot = lane >> lpp_log2;
  const int num_slots = 32 >> lpp_log2;
  const int d0 = sub * EPL;
  const bool dim_on = d0 < hd;
  // This kv head's dequantization scales (per layer or per head: c.scale_stride).
  const float k_scale = D == KvDtype::kBf16 ? 1.0f : c.k_scale[kvh * c.scale_stride];
  const float v_scale = D == KvDtype::kBf16 ? 1.0f : c.v_scale[kvh * c.scale_stride];

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

  const int warp_span = num_slots * kUnroll<EPL>;  // positions a warp covers per iteration
  const int stride = kWarps * warp_span;
  const int first = begin + warp * warp_span;
  const int iters = first < end ? (end - first + stride - 1) / stride : 0;  // warp-uniform
  Raw* ring = reinterpret_cast<Raw*>(smem) + warp * (kStages * 2 * kUnroll<EPL> * 32) + lane;
  // Copies iteration `it` (positions first + it · stride + u · num_slots + slot) into its stage.
  auto issue = [&](int it) {
    if (it < iters) {
      Raw* st = ring + (it % kStages) * (2 * kUnroll<EPL> * 32);
      // Table entries first (independent loads), then the copies. Out-of-range positions copy
      // 0 bytes from a clamped (valid) address: no branches.
      int32_t blk[kUnroll<EPL>];
      int pos[kUnroll<EPL>];
#pragma unroll
      for (int u = 0; u < kUnroll<EPL>; ++u) {
        pos[u] = min(first + it * stride + u * num_slots + slot, end - 1);
        blk[u] = table[pos[u] >> bs_log2];
      }
#pragma unroll
      for (int u = 0; u < kUnroll<EPL>; ++u) {
        const bool ok = first + it * stride + u * num_slots + slot < end && dim_on;
        const int64_t off = int64_t(blk[u]) * block_elems + (pos[u] & (bs - 1)) * hd;
        const int bytes = ok ? int(sizeof(Raw)) : 0;
        cp_async<sizeof(Raw)>(st + u * 32, kbase + off, bytes);
        cp_async<sizeof(Raw)>(st + (kUnroll<EPL> + u) * 32, vbase + off, bytes);
      }
    }
    cp_async_commit();  // empty groups too: the wait below counts groups
  };
#pragma unroll
  for (int it = 0; it < kStages - 1; ++it) issue(it);
  for (int it = 0; it < iters; ++it) {
    issue(it + kStages - 1);
    cp_async_wait<kStages - 1>();  // iteration it's group has landed
    const Raw* st = ring + (it % kStages) * (2 * kUnroll<EPL> * 32);
    const int p0 = first + it * stride;
    if constexpr (kFast) {
      // Partial dots of the NV = U · GC (position, head) pairs, then a transposing reduction
      // over the slot's lpp = NV lanes: at xor distance w each lane keeps half of its values
      // and receives the partner's partial sums of that half (NV - 1 shuffles in all, not
      // NV · log2 NV); afterwards lane `sub` holds the full score of pair sub = g · U + u.
      float v[NV];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float kf[EPL];
        const Raw kr = st[u * 32];
        unpack<D, EPL>(kr, kf);
#pragma unroll
        for (int g = 0; g < GC; ++g) {
          float dot = 0.0f;
#pragma unroll
          for (int i = 0; i < EPL; ++i) dot = fmaf(q[g][i], kf[i], dot);
          v[g * U + u] = dot;
        }
      }
      transpose_reduce<NV / 2>(v, sub);
      const int my_u = sub & (U - 1);
      const float score = p0 + my_u * num_slots + slot < end ? v[0] : -INFINITY;
      // Running softmax of this lane's head (g = sub / U): max over its U positions.
      float mx = score;
#pragma unroll
      for (int o = 1; o < U; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m_lane, mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m_lane - m_use);
      const float p = exp2f(score - m_use);
      m_lane = m_new;
      l_lane = l_lane * alpha + p;  // this lane's position only; summed over u at the end
      if (__any_sync(0xffffffffu, alpha != 1.0f)) {  // rare once the maxima settle
#pragma unroll
        for (int g = 0; g < GC; ++g) {
          const float ag = __shfl_sync(0xffffffffu, alpha, g * U, NV);
#pragma unroll
          for (int i = 0; i < EPL; ++i) acc[g][i] *= ag;
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float vf[EPL];
        const Raw vr = st[(U + u) * 32];
        unpack<D, EPL>(vr, vf);
#pragma unroll
        for (int g = 0; g < GC; ++g) {
          const float pg = __shfl_sync(0xffffffffu, p, g * U + u, NV);
#pragma unroll
          for (int i = 0; i < EPL; ++i) acc[g][i] = fmaf(pg, vf[i], acc[g][i]);
        }
      }
    } else {
      // Scores (log2 domain) of the U positions for each head; the whole warp runs the shuffles.
      float s[kUnroll<EPL>][GC];
#pragma unroll
      for (int u = 0; u < kUnroll<EPL>; ++u) {
        float kf[EPL];
        const Raw kr = st[u * 32];  // one 16- or 8-byte shared load
        unpack<D, EPL>(kr, kf);
        const bool in = p0 + u * num_slots + slot < end;
#pragma unroll
        for (int g = 0; g < GC; ++g) {
          float dot = 0.0f;
#pragma unroll
          for (int i = 0; i < EPL; ++i) dot = fmaf(q[g][i], kf[i], dot);
            // Sum over the slot's lpp lanes: all five xor steps, unrolled and branch-free (a
            // run-time loop costs a divergence check per step); steps >= lpp would mix slots.
#pragma unroll
          for (int o = 1; o < 32; o <<= 1) {
            const float other = __shfl_xor_sync(0xffffffffu, dot, o);
            dot += o < lpp ? other : 0.0f;
          }
          s[u][g] = in ? dot : -INFINITY;
        }
      }
      // Running softmax per slot: rescale once per U positions.
#pragma unroll
      for (int g = 0; g < GC; ++g) {
        float mx = s[0][g];
#pragma unroll
        for (int u = 1; u < kUnroll<EPL>; ++u) mx = fmaxf(mx, s[u][g]);
        const float m_new = fmaxf(m[g], mx);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m[g] - m_use);
        m[g] = m_new;
        l[g] *= alpha;
#pragma unroll
        for (int i = 0; i < EPL; ++i) acc[g][i] *= alpha;
#pragma unroll
        for (int u = 0; u < kUnroll<EPL>; ++u) {
          s[u][g] = exp2f(s[u][g] - m_use);
          l[g] += s[u][g];
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll<EPL>; ++u) {
        float vf[EPL];
        const Raw vr = st[(kUnroll<EPL> + u) * 32];
        unpack<D, EPL>(vr, vf);
#pragma unroll
        for (int g = 0; g < GC; ++g)
#pragma unroll
          for (int i = 0; i < EPL; ++i) acc[g][i] = fmaf(s[u][g], vf[i], acc[g][i]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the ring becomes s_acc below
  if constexpr (kFast) {
#pragma unroll
    for (int o = 1; o < U; o <<= 1) l_lane += __shfl_xor_sync(0xffffffffu, l_lane, o);
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      m[g] = __shfl_sync(0xffffffffu, m_lane, g * U, NV);
      l[g] = __shfl_sync(0xffffffffu, l_lane, g * U, NV);
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
  float(*s_acc)[GC][kMaxHeadDim] = reinterpret_cast<float(*)[GC][kMaxHeadDim]>(smem);
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
  write_block_result<GC>(a, s_acc, s_m, s_l, G, h0, t, split, splits, hd, v_scale);
}

// Merges the splits of one (token, head): out = Σ 2^(m_s − M)·acc_s / Σ 2^(m_s − M)·l_s.
// The split weights are computed once into shared memory; then each thread owns dims.
__global__ void merge_kernel(AttentionArgs a, int hd) {
  __shared__ float s_w[128];  // attention_splits never asks for more than 128
  __shared__ float s_inv_den;
  pdl_launch_dependents();
  pdl_wait();  // the splits' partial results
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

template <KvDtype D, int EPL, int GC, bool kFast>
void launch_kernel(const AttentionArgs& a, const PagedKvLayer& c, int lpp_log2,
                   cudaStream_t stream) {
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + GC - 1) / GC;
  const int bs_log2 = __builtin_ctz(unsigned(c.block_size));  // a power of two: caller checks
  dim3 grid(unsigned(a.n), unsigned(c.num_kv_heads * q_chunks), unsigned(a.num_splits));
  constexpr size_t smem = smem_bytes<D, EPL, GC>();
  static const bool smem_ok = [] {  // above 48 KB needs an explicit opt-in, once per kernel
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<D, EPL, GC, kFast>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)smem_ok;
  launch_pdl(attention_kernel<D, EPL, GC, kFast>, grid, kThreads, smem, stream, a, c, lpp_log2,
             bs_log2);
}

template <KvDtype D, int EPL, int GC>
void launch(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  int lpp_log2 = 0;
  while ((EPL << lpp_log2) < c.head_dim) ++lpp_log2;
  // The transposing reduction is compiled for 4 heads per block only (Llama-style GQA 4/8).
  if constexpr (GC == 4) {
    if ((1 << lpp_log2) == kUnroll<EPL> * GC)
      return launch_kernel<D, EPL, GC, true>(a, c, lpp_log2, stream);
  }
  launch_kernel<D, EPL, GC, false>(a, c, lpp_log2, stream);
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
  const int64_t blocks = n * num_kv_heads * ((group + 3) / 4);
  // One wave of kBlocksPerSm blocks per multiprocessor, never more: a partial second wave
  // costs up to a whole block time (measured on H100, 4k context: batch 8 with 5 splits
  // 57 us vs 4 splits 40 us in FP8; batch 32 with 2 splits 223 us vs 1 split 189 us in bf16).
  // Each split keeps at least kSplitTarget positions (shorter ones cost more in the merge).
  const int64_t wave = int64_t(kBlocksPerSm) * sms;
  if (blocks >= wave) return 1;
  int64_t splits = wave / blocks;
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
  if (c.block_size <= 0 || (c.block_size & (c.block_size - 1)) != 0)
    fail("paged attention: KV block size {} is not a power of two", c.block_size);
  if (a.num_splits < 1 || a.num_splits > 128)
    fail("paged attention: {} context splits (expected 1 to 128)", a.num_splits);
  LOWBIT_CHECK(a.num_splits == 1 || a.workspace, "attention with {} splits needs a workspace",
               a.num_splits);
  if (!attention_detail::launch_attention_mma(a, c, stream)) {
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
  }
  if (a.num_splits > 1)
    launch_pdl(merge_kernel, dim3(unsigned(a.n), unsigned(a.num_heads)), 128, 0, stream, a,
               c.head_dim);
}

}  // namespace lowbit::kernels::cuda
