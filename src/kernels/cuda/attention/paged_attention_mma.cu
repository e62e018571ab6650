// Paged decode attention with tensor cores for caches of head_dim 128 (bf16 or FP8; up to 4
// query heads per block). The CUDA-core kernel (paged_attention.cu) spends ~500 instructions
// per 8 positions on FFMAs, shuffles and conversions; here both products are mma.sync.m16n8k16
// (bf16, or f16 for FP8 caches; f32 accumulate), ~290 instructions per 16 positions. Blocks,
// splits and the block merge are the CUDA-core kernel's (attention_common.cuh).
//
// Copies: on Hopper each warp's ring stage (16 K rows + 16 V rows, contiguous in a cache page)
// is filled by two bulk copies (cp.async.bulk, completion on an mbarrier) issued by one lane;
// elsewhere (and with LOWBIT_ATTENTION_BULK=0) by 16-byte cp.async per lane. Fewer instructions
// alone did not help: with per-lane copies this kernel and the CUDA-core one both read an FP8
// cache at ~80% of the copy rate (H100, batch 32 × 4k: 111 µs each), the per-lane copy path
// being the limit; the bulk copies reach 91% (97.6 µs, 1.92× bf16).
//
// Per warp and iteration: 16 positions p0..p0+15 of one kv head, thread (g = lane / 4,
// tq = lane % 4) as in the mma fragment layouts.
//   S = Q · Kᵀ   A = q [16 rows = heads (G real, the rest 0) × 16 dims], B = Kᵀ [16 dims × 8
//                positions], two n-tiles (positions 0..7, 8..15) × 8 k-blocks. The head's dims
//                are visited in a permuted order φ so that thread tq's B registers are whole
//                words of the bytes it copied: k-block j, k = 2tq + e (+8) ↦ dim
//                64·(j/4) + 16·tq + 4·(j%4) + e (+2). Thread (g, tq) copies position g (and
//                8 + g), dims [16tq, 16tq + 16) and [64 + 16tq, 80 + 16tq): 4 × 16 bytes.
//   O += P · V   A = P [heads × 16 positions] straight from S's accumulators (the flash-attention
//                register reuse), B = V [16 positions × 8 dims], 16 n-tiles with n-tile i,
//                column g ↦ dim 16·g + i. Thread (g, tq) copies dims [16g, 16g + 16) of
//                positions 2tq, 2tq + 1, 2tq + 8, 2tq + 9; a byte permute pairs the two
//                positions of each B register. O's accumulator (i, column c) holds dim 16·c + i.
// The dim orders above are FP8's (a lane's 32 K dims are 2 pieces of 16 bytes); bf16 rows are
// twice as long: k-block j, k = 2tq + e (+8) ↦ dim 32·tq + 4·j + e (+2), lane tq copying K dims
// [32tq, 32tq + 32) (4 pieces) and V dims [16g, 16g + 16) (2 pieces per row), B registers being
// whole words (K) or 16-bit halves of two rows paired by a byte permute (V).
// FP8 → f16 is exact (one cvt per pair); q is rounded to f16 for FP8 caches (unscaled: the
// softmax scale and the key scale are applied to the fp32 scores) and kept as bf16 otherwise;
// P ∈ [0, 1] is rounded to the products' 16-bit type.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/attention/attention_common.cuh"
#include "kernels/cuda/attention/kv_convert.cuh"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"

namespace lowbit::kernels::cuda::attention_detail {
namespace {

constexpr int kHd = 128;  // head_dim this kernel is written for
constexpr int kGc = 4;    // query heads per block (as the CUDA-core FP8 kernel)

// Per cache type: bytes of one position's head (a ring row), and the 16-byte pieces a lane
// copies per iteration: kKPieces per K position (2 positions), kVPieces per V row (4 rows).
template <KvDtype D>
struct MmaLayout {
  static constexpr bool kFp8 = D != KvDtype::kBf16;
  static constexpr int kRowBytes = kFp8 ? kHd : 2 * kHd;
  static constexpr int kKPieces = kRowBytes / 64;              // a lane's 32 dims: 2 or 4 pieces
  static constexpr int kVPieces = kRowBytes / 128;             // a lane's 16 dims: 1 or 2 pieces
  static constexpr int kPieces = 2 * kKPieces + 4 * kVPieces;  // 8 or 16
  static constexpr int kStageBytes = 32 * kRowBytes;           // 16 K rows, then 16 V rows
};
// Ring stages per warp (kMmaStages - 1 iterations in flight). H100, FP8 bulk copies, 4k
// context, µs at batch 8 / 32 / 64: 3 stages 31.1 / 97.6 / 192.0, 4: 32.7 / 100.9 / 194.6,
// 6: 34.3 / 104.4 / 198.1 (fewer copies in flight per SM read device memory faster).
constexpr int kMmaStages = 3;
constexpr int kPositions = 16;  // per warp per iteration (within one cache page: block_size >= 16)

// c += A·B with 16-bit A, B (f16 for FP8 caches, bf16 for bf16 ones); rows 8..15 of A (a1,
// a3) are padding heads: zero.
template <bool kF16>
__device__ __forceinline__ void mma16(float (&c)[4], uint32_t a0, uint32_t a2, uint32_t b0,
                                      uint32_t b1) {
  if constexpr (kF16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

// Two FP8 codes (low byte first) -> f16x2 (exact).
template <KvDtype D>
__device__ __forceinline__ uint32_t fp8x2_to_f16x2(uint32_t pair) {
  constexpr __nv_fp8_interpretation_t kind = D == KvDtype::kFp8E4M3 ? __NV_E4M3 : __NV_E5M2;
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(pair & 0xffffu), kind);
  return uint32_t(h.x) | (uint32_t(h.y) << 16);
}

template <bool kF16>
__device__ __forceinline__ uint32_t pack16x2(float lo, float hi) {
  if constexpr (kF16) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

__device__ __forceinline__ uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}

[[maybe_unused]] __device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <KvDtype D, bool kBulk>
__global__ void __launch_bounds__(kThreads, 2)
    attention_mma_kernel(AttentionArgs a, PagedKvLayer c, int bs_log2) {
  using L = MmaLayout<D>;
  constexpr bool kF16 = L::kFp8;  // the products' 16-bit type
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ float s_m[kWarps][kGc], s_l[kWarps][kGc];
  __shared__ __align__(8) uint64_t bars[kWarps][kMmaStages];  // kBulk: one per ring stage
  (void)bars;
  // No pdl_wait yet: the block table and context lengths come from host copies before the
  // step's first kernel; the first cache copies are issued before waiting (below).

  const BlockWork bw = block_work<kGc>(a, c, kPositions);
  const int t = bw.t, seq = bw.seq, ctx = bw.ctx, kvh = bw.kvh, h0 = bw.h0, G = bw.G;
  const int split = bw.split, splits = bw.splits, begin = bw.begin, end = bw.end;

  const int bs = c.block_size;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tq = lane & 3;
  float m_run = -INFINITY, l_run = 0.0f;  // head g's running max (log2) and this lane's sum
  float o[16][4];                         // O[head g][dim 16·(2tq) + i], [16·(2tq + 1) + i]
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

  // Byte offsets: cache block b, this kv head, position-in-block r at b·block_bytes + r·row.
  constexpr int kRow = L::kRowBytes;
  const int64_t block_bytes = int64_t(c.num_kv_heads) * bs * kRow;
  const uint8_t* kbase = static_cast<const uint8_t*>(c.k) + int64_t(kvh) * bs * kRow;
  const uint8_t* vbase = static_cast<const uint8_t*>(c.v) + int64_t(kvh) * bs * kRow;
  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks_per_seq;

  const int stride = kWarps * kPositions;
  const int first = begin + warp * kPositions;
  const int iters = first < end ? (end - first + stride - 1) / stride : 0;  // warp-uniform
  uint4* ring = reinterpret_cast<uint4*>(smem) + warp * (kMmaStages * L::kPieces * 32) + lane;
  // kBulk: stage s of this warp holds the 16 K rows then the 16 V rows of an iteration,
  // copied by the bulk-copy engine (two instructions of lane 0, completion counted in
  // bars[warp][s]) instead of kPieces 16-byte cp.async per lane.
  unsigned char* bulk_ring = smem + warp * (kMmaStages * L::kStageBytes);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kBulk) {
    if (lane == 0) {
#pragma unroll
      for (int s = 0; s < kMmaStages; ++s)
        asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(smem_addr(&bars[warp][s])));
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();
  }
#endif
  // An iteration's 16 positions start at a multiple of 16 (splits are cut at multiples of 16)
  // and so lie in one cache page. This lane's pieces: K of positions g and 8 + g, its 32 dims
  // (FP8: bytes [16tq, 16tq + 16) and [64 + 16tq, 80 + 16tq); bf16: bytes [64tq, 64tq + 64)),
  // then V dims [16g, 16g + 16) of positions 2tq, 2tq + 1, 2tq + 8, 2tq + 9.
  const int k_rel[2] = {g, 8 + g}, v_rel[4] = {2 * tq, 2 * tq + 1, 2 * tq + 8, 2 * tq + 9};
  auto k_byte = [&](int r, int piece) {
    return k_rel[r] * kRow + (L::kFp8 ? 64 * piece + 16 * tq : 64 * tq + 16 * piece);
  };
  auto v_byte = [&](int r, int piece) {
    return v_rel[r] * kRow + L::kVPieces * 16 * g + 16 * piece;
  };
  // The page of iteration `it`, read one iteration before its copies need it (the table load's
  // latency then hides behind an iteration instead of stalling the issue).
  auto page_of = [&](int it) { return it < iters ? table[(first + it * stride) >> bs_log2] : 0; };
  int next_page = page_of(0);
  auto issue = [&](int it) {
    if (it < iters) {
      const int p0 = first + it * stride;
      const int page = next_page;
      next_page = page_of(it + 1);
      const int64_t off = int64_t(page) * block_bytes + int64_t(p0 & (bs - 1)) * kRow;
      const uint8_t* kp = kbase + off;
      const uint8_t* vp = vbase + off;
      if constexpr (kBulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        // The stage was read in iteration it - 1 by every lane: order those reads before the
        // copy engine's writes.
        __syncwarp();
        if (lane == 0) {
          const uint32_t bytes = uint32_t(min(kPositions, end - p0)) * kRow;
          const uint32_t bar = smem_addr(&bars[warp][it % kMmaStages]);
          unsigned char* dst = bulk_ring + (it % kMmaStages) * L::kStageBytes;
          asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
          asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(bar),
                       "r"(2 * bytes)
                       : "memory");
          asm volatile(
              "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
              "[%3];" ::"r"(smem_addr(dst)),
              "l"(kp), "r"(bytes), "r"(bar)
              : "memory");
          asm volatile(
              "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
              "[%3];" ::"r"(smem_addr(dst + 16 * kRow)),
              "l"(vp), "r"(bytes), "r"(bar)
              : "memory");
        }
#endif
      } else {
        uint4* st = ring + (it % kMmaStages) * (L::kPieces * 32);
        // Positions past the end copy 0 bytes (their addresses stay inside the page).
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
          for (int q = 0; q < L::kKPieces; ++q)
            cp_async<16>(st + (r * L::kKPieces + q) * 32, kp + k_byte(r, q),
                         p0 + k_rel[r] < end ? 16 : 0);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int q = 0; q < L::kVPieces; ++q)
            cp_async<16>(st + (2 * L::kKPieces + r * L::kVPieces + q) * 32, vp + v_byte(r, q),
                         p0 + v_rel[r] < end ? 16 : 0);
      }
    }
    if constexpr (!kBulk) cp_async_commit();  // empty groups too: the wait counts groups
  };
  // Positions below ctx − n were written by earlier steps (a sequence has at most n new tokens
  // in this one), so the ring's first stages may be copied while the kernel before (RoPE + KV
  // write) still runs; q, the scales and the newest positions wait for it.
  const int stable = a.n < ctx ? ctx - int(a.n) : 0;
  int prologue = 0;
  while (prologue < kMmaStages - 1 && first + prologue * stride + kPositions <= stable)
    issue(prologue++);
  pdl_wait();
  while (prologue < kMmaStages - 1) issue(prologue++);

  const float k_scale = L::kFp8 ? c.k_scale[kvh * c.scale_stride] : 1.0f;
  const float v_scale = L::kFp8 ? c.v_scale[kvh * c.scale_stride] : 1.0f;
  const float score_scale = a.scale * k_scale * kLog2e;

  // q of head h0 + g in the permuted dim order of the A fragments: qa[j] = {dims φ(j, 2tq),
  // φ(j, 2tq + 1)}, qa2[j] = {φ(j, 2tq + 8), φ(j, 2tq + 9)}; rows g >= G stay 0. FP8: f16
  // (rounded), lane dims [16tq, 16tq + 16) ∪ [64 + 16tq, 80 + 16tq); bf16: q's own bits, lane
  // dims [32tq, 32tq + 32).
  uint32_t qa[8], qa2[8];
  {
    const __nv_bfloat16* qp = a.q + int64_t(t) * a.q_stride + int64_t(h0 + g) * kHd;
    if constexpr (L::kFp8) {
      float qf[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) qf[i] = 0.0f;
      if (g < G) {
        load8<KvDtype::kBf16>(qp + 16 * tq, qf);
        load8<KvDtype::kBf16>(qp + 16 * tq + 8, qf + 8);
        load8<KvDtype::kBf16>(qp + 64 + 16 * tq, qf + 16);
        load8<KvDtype::kBf16>(qp + 64 + 16 * tq + 8, qf + 24);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float* f = qf + 16 * (j / 4) + 4 * (j % 4);
        qa[j] = pack16x2<true>(f[0], f[1]);
        qa2[j] = pack16x2<true>(f[2], f[3]);
      }
    } else {
      uint4 qw[4] = {};
      if (g < G)
#pragma unroll
        for (int i = 0; i < 4; ++i) qw[i] = reinterpret_cast<const uint4*>(qp + 32 * tq)[i];
      const uint32_t* w = reinterpret_cast<const uint32_t*>(qw);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        qa[j] = w[2 * j];
        qa2[j] = w[2 * j + 1];
      }
    }
  }

  for (int it = 0; it < iters; ++it) {
    issue(it + kMmaStages - 1);
    const int p0 = first + it * stride;
    // This lane's pieces of the iteration, K (2 · kKPieces) then V (4 · kVPieces).
    uint4 piece[L::kPieces];
    if constexpr (kBulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      const uint32_t bar = smem_addr(&bars[warp][it % kMmaStages]);
      const uint32_t parity = uint32_t(it / kMmaStages) & 1u;
      uint32_t done = 0;
      while (!done)
        asm volatile(
            "{ .reg .pred p; mbarrier.try_wait.parity.shared.b64 p, [%1], %2; selp.u32 %0, 1, 0, "
            "p; }"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
#endif
      const unsigned char* kst = bulk_ring + (it % kMmaStages) * L::kStageBytes;
      const unsigned char* vst = kst + 16 * kRow;
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int q = 0; q < L::kKPieces; ++q)
          piece[r * L::kKPieces + q] = *reinterpret_cast<const uint4*>(kst + k_byte(r, q));
          // Rows past the end were not copied: whatever the stage held there must not reach the
          // products (a NaN pattern times a zero probability is still NaN).
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < L::kVPieces; ++q) {
          uint4 v = *reinterpret_cast<const uint4*>(vst + v_byte(r, q));
          if (p0 + v_rel[r] >= end) v = make_uint4(0, 0, 0, 0);
          piece[2 * L::kKPieces + r * L::kVPieces + q] = v;
        }
    } else {
      cp_async_wait<kMmaStages - 1>();  // iteration it's group has landed
      const uint4* st = ring + (it % kMmaStages) * (L::kPieces * 32);
#pragma unroll
      for (int i = 0; i < L::kPieces; ++i) piece[i] = st[i * 32];
    }
    const uint32_t* words = reinterpret_cast<const uint32_t*>(piece);

    // S[head g][positions 8τ + 2tq, 8τ + 2tq + 1] in s[τ][0..1] (s[τ][2..3]: padding rows).
    // Two accumulators per n-tile (even and odd k-blocks) halve the chain of dependent mmas.
    // B registers of k-block j: FP8 word j converted (low, high pair); bf16 words 2j, 2j + 1.
    float s[2][4];
#pragma unroll
    for (int tau = 0; tau < 2; ++tau) {
      float acc[2][4] = {};
      const uint32_t* kw = words + tau * 4 * L::kKPieces;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if constexpr (L::kFp8)
          mma16<true>(acc[j & 1], qa[j], qa2[j], fp8x2_to_f16x2<D>(kw[j]),
                      fp8x2_to_f16x2<D>(kw[j] >> 16));
        else
          mma16<false>(acc[j & 1], qa[j], qa2[j], kw[2 * j], kw[2 * j + 1]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) s[tau][e] = acc[0][e] + acc[1][e];
    }
    // Online softmax of head g over the 16 positions (4 per lane, the 4 lanes of a row).
    float mx = -INFINITY;
#pragma unroll
    for (int tau = 0; tau < 2; ++tau)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int p = p0 + 8 * tau + 2 * tq + e;
        s[tau][e] = p < end ? s[tau][e] * score_scale : -INFINITY;
        mx = fmaxf(mx, s[tau][e]);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m_run - m_use);
    m_run = m_new;
    float p[2][2];
#pragma unroll
    for (int tau = 0; tau < 2; ++tau)
#pragma unroll
      for (int e = 0; e < 2; ++e) p[tau][e] = exp2f(s[tau][e] - m_use);
    l_run = l_run * alpha + (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {  // rare once the maxima settle
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        o[i][0] *= alpha;
        o[i][1] *= alpha;
      }
    }
    const uint32_t pa0 = pack16x2<kF16>(p[0][0], p[0][1]);  // positions 2tq, 2tq + 1
    const uint32_t pa2 = pack16x2<kF16>(p[1][0], p[1][1]);  // positions 8 + 2tq, 9 + 2tq

    // O += P · V: B registers pair positions (2tq, 2tq + 1) and (2tq + 8, 2tq + 9) of dim
    // 16g + i for n-tile i. va..vd: the 4 V rows' words (dims 16g.. in order).
    const uint32_t* va = words + 8 * L::kKPieces;
    const uint32_t* vb = va + 4 * L::kVPieces;
    const uint32_t* vc = vb + 4 * L::kVPieces;
    const uint32_t* vd = vc + 4 * L::kVPieces;
    if constexpr (L::kFp8) {
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {
        // Bytes of dims 16g + 4wd .. +3: (a0, b0, a1, b1) and (a2, b2, a3, b3).
        const uint32_t lo01 = byte_perm(va[wd], vb[wd], 0x5140);
        const uint32_t hi01 = byte_perm(va[wd], vb[wd], 0x7362);
        const uint32_t lo23 = byte_perm(vc[wd], vd[wd], 0x5140);
        const uint32_t hi23 = byte_perm(vc[wd], vd[wd], 0x7362);
        mma16<true>(o[4 * wd + 0], pa0, pa2, fp8x2_to_f16x2<D>(lo01), fp8x2_to_f16x2<D>(lo23));
        mma16<true>(o[4 * wd + 1], pa0, pa2, fp8x2_to_f16x2<D>(lo01 >> 16),
                    fp8x2_to_f16x2<D>(lo23 >> 16));
        mma16<true>(o[4 * wd + 2], pa0, pa2, fp8x2_to_f16x2<D>(hi01), fp8x2_to_f16x2<D>(hi23));
        mma16<true>(o[4 * wd + 3], pa0, pa2, fp8x2_to_f16x2<D>(hi01 >> 16),
                    fp8x2_to_f16x2<D>(hi23 >> 16));
      }
    } else {
#pragma unroll
      for (int wd = 0; wd < 8; ++wd) {
        // bf16 of dims 16g + 2wd, +1: (a.lo, b.lo) and (a.hi, b.hi).
        mma16<false>(o[2 * wd], pa0, pa2, byte_perm(va[wd], vb[wd], 0x5410),
                     byte_perm(vc[wd], vd[wd], 0x5410));
        mma16<false>(o[2 * wd + 1], pa0, pa2, byte_perm(va[wd], vb[wd], 0x7632),
                     byte_perm(vc[wd], vd[wd], 0x7632));
      }
    }
  }
  if constexpr (!kBulk) cp_async_wait<0>();  // (bulk copies: every issued one was waited for)
  // The next kernel (the split merge, or the GEMV that loads o_proj's weight before it waits)
  // may start once every block is past its loop. A block of a later wave has not reached
  // this, so the trigger cannot take slots that this grid still needs.
  pdl_launch_dependents();
  __syncthreads();  // the ring becomes s_acc below

  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  float(*s_acc)[kGc][kMaxHeadDim] = reinterpret_cast<float(*)[kGc][kMaxHeadDim]>(smem);
  if (g < G) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      s_acc[warp][g][32 * tq + i] = o[i][0];
      s_acc[warp][g][32 * tq + 16 + i] = o[i][1];
    }
    if (tq == 0) {
      s_m[warp][g] = m_run;
      s_l[warp][g] = l_run;
    }
  }
  __syncthreads();
  write_block_result<kGc>(a, s_acc, s_m, s_l, G, h0, t, split, splits, kHd, v_scale);
}

template <KvDtype D, bool kBulk>
void launch(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  const int group = a.num_heads / c.num_kv_heads;
  const int q_chunks = (group + kGc - 1) / kGc;
  const int bs_log2 = __builtin_ctz(unsigned(c.block_size));  // a power of two: caller checks
  dim3 grid(unsigned(a.n), unsigned(c.num_kv_heads * q_chunks), unsigned(a.num_splits));
  constexpr size_t ring = size_t(kWarps) * kMmaStages * MmaLayout<D>::kStageBytes;
  constexpr size_t partial = size_t(kWarps) * kGc * kMaxHeadDim * sizeof(float);
  constexpr size_t need = ring > partial ? ring : partial;
  constexpr size_t smem = need > kSmemFloor ? need : kSmemFloor;  // 2 blocks per SM, as the other
  static const bool smem_ok = [] {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<D, kBulk>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)smem_ok;
  launch_pdl(attention_mma_kernel<D, kBulk>, grid, kThreads, smem, stream, a, c, bs_log2);
}

}  // namespace

bool launch_attention_mma(const AttentionArgs& a, const PagedKvLayer& c, cudaStream_t stream) {
  if (c.head_dim != kHd || c.block_size < kPositions) return false;
  // Read at each call (graph replays launch nothing), so one process can compare both kernels.
  if (const char* env = std::getenv("LOWBIT_ATTENTION_MMA"); env && std::strcmp(env, "0") == 0)
    return false;
  const char* bulk_env = std::getenv("LOWBIT_ATTENTION_BULK");
  const bool bulk = device_runs_sm90_code() && !(bulk_env && std::strcmp(bulk_env, "0") == 0);
  switch (c.dtype) {
    case KvDtype::kBf16:
      bulk ? launch<KvDtype::kBf16, true>(a, c, stream)
           : launch<KvDtype::kBf16, false>(a, c, stream);
      break;
    case KvDtype::kFp8E4M3:
      bulk ? launch<KvDtype::kFp8E4M3, true>(a, c, stream)
           : launch<KvDtype::kFp8E4M3, false>(a, c, stream);
      break;
    case KvDtype::kFp8E5M2:
      bulk ? launch<KvDtype::kFp8E5M2, true>(a, c, stream)
           : launch<KvDtype::kFp8E5M2, false>(a, c, stream);
      break;
  }
  return true;
}

}  // namespace lowbit::kernels::cuda::attention_detail
