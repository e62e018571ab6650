// AVX-512 VNNI micro-kernel of the prompt GEMM (q8_gemm.h): M ≤ kPanel activation rows × one
// tile of 16 weight rows. Per 32-element block, for each of the 8 groups of 4 elements, one
// 64-byte register holds the 16 rows' unsigned weight bytes (decoded from the packed nibbles:
// and / shift, IQ4_NL's table through vpshufb, Q5's 5th bits through a precomputed byte mask) and
// each activation row adds one vpdpbusd with its 4 bytes broadcast from memory into its int32
// block sum (seeded with −o·Σ q_x). Then per activation row: one int32 → fp32 conversion and
// acc += (d_w·d_x)·Σ for the 16 columns, with separately rounded multiplies and adds (embedded
// rounding intrinsics, which the compiler cannot contract into FMAs), so every output carries the
// scalar reference's bits.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/q8_gemm.h"

namespace lowbit::kernels::cpu::avx512 {
namespace {

constexpr int kRn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
constexpr int kPanel = 8;  // activation rows per micro-kernel call
// Generation (few rows) streams the weights from memory: software prefetch this many bytes ahead
// along the tile (the tile's records are contiguous).
constexpr int kPrefetch = 4096, kPrefetchRows = 2;
// One activation row (generation): each thread walks its share of the tiles as kStreams parts at
// once (one tile of each per step), so kStreams weight streams per core are in flight instead of
// one. Why: a core alone reads DRAM at ~16 GB/s here and the one-stream GEMV reached only ~85%
// of that (its decode work stalls the single stream); the same loop without the arithmetic
// streamed at 30.3 GB/s on 2 threads. Measured on 2 vCPUs Intel Xeon (AVX-512 VNNI), m = 1,
// 308 MB of Llama-1B-shaped Q4_0 matrices: 26.4 -> 29.1 GB/s (membw read 30.7); 3 or 4 streams
// no better than 2, two neighbouring tiles 27.8, threads taking small chunks from a shared
// counter (balance) slower. Whole synthetic Llama-1B Q4_0: tg128 39.1 -> 42.3 tok/s.
constexpr int kStreams = 2;

inline __m512 mul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kRn); }
inline __m512 add(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kRn); }

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Weight decoders: group slots j (elements 4j..4j+3) and 4+j (elements 16+4j..) of one block.
struct Nibbles {  // Q4_0, Q4_1: u = q
  static constexpr int kPairs = 4, kHiOff = 16;
  static constexpr size_t kQuantBytes = 256;
  static void decode(const uint8_t* q, int j, __m512i table, __m512i& lo, __m512i& hi) {
    const __m512i v = _mm512_load_si512(q + 64 * j), m4 = _mm512_set1_epi8(15);
    lo = _mm512_and_si512(v, m4);
    hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  }
};
struct Fives {  // Q5_0, Q5_1: u = q | 5th bit << 4
  static constexpr int kPairs = 4, kHiOff = 16;
  static constexpr size_t kQuantBytes = 320;
  static void decode(const uint8_t* q, int j, __m512i table, __m512i& lo, __m512i& hi) {
    Nibbles::decode(q, j, table, lo, hi);
    __mmask64 mlo, mhi;
    std::memcpy(&mlo, q + 256 + 8 * j, 8);
    std::memcpy(&mhi, q + 256 + 8 * (4 + j), 8);
    const __m512i sixteen = _mm512_set1_epi8(16);
    lo = _mm512_mask_add_epi8(lo, mlo, lo, sixteen);
    hi = _mm512_mask_add_epi8(hi, mhi, hi, sixteen);
  }
};
struct Iq4nl {  // u = T[idx] + 128
  static constexpr int kPairs = 4, kHiOff = 16;
  static constexpr size_t kQuantBytes = 256;
  static void decode(const uint8_t* q, int j, __m512i table, __m512i& lo, __m512i& hi) {
    Nibbles::decode(q, j, table, lo, hi);
    lo = _mm512_shuffle_epi8(table, lo);
    hi = _mm512_shuffle_epi8(table, hi);
  }
};
struct Bytes {  // Q8_0: u = q + 128, stored as is
  static constexpr int kPairs = 4, kHiOff = 16;
  static constexpr size_t kQuantBytes = 512;
  static void decode(const uint8_t* q, int j, __m512i, __m512i& lo, __m512i& hi) {
    lo = _mm512_load_si512(q + 64 * j);
    hi = _mm512_load_si512(q + 64 * (4 + j));
  }
};

// Q6_K: u = q + 32 (6 bits) per 16-element group: [A | B | H] of 64 bytes, A holding slots 0 and
// 2 as low / high nibbles, B slots 1 and 3, H the top 2 bits of slot k at bits 2k..2k+1.
struct Six {
  static constexpr size_t kQuantBytes = 192;
  static constexpr int kPairs = 2, kHiOff = 8;  // steps j: slots j and j + 2
  static void decode(const uint8_t* q, int j, __m512i, __m512i& lo, __m512i& hi) {
    const __m512i v = _mm512_load_si512(q + 64 * j), h = _mm512_load_si512(q + 128);
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    const __m512i hlo = j == 0 ? _mm512_slli_epi16(h, 4) : _mm512_slli_epi16(h, 2);
    const __m512i hhi = j == 0 ? h : _mm512_srli_epi16(h, 2);
    // nib | (shifted & 0x30)
    lo = _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), hlo, m30, 0xF8);
    hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), hhi, m30, 0xF8);
  }
};

// M activation rows from i0 × the tile at `qt` (its scales follow its quants); `cols` masks the
// tile's valid columns of y (row stride ldy).
template <class D, bool kMin, int M>
void micro_kernel(const PackedGemmWeights& w, const uint8_t* qt, const GemmActivations& a,
                  int64_t i0, __m512i table, float* y, int64_t ldy, __mmask16 cols) {
  // Independent integer chains per row (summed exactly at the block's end): vpdpbusd's latency
  // needs about 8 in flight, so few rows split each block's 8 steps over 2 or 4 chains.
  constexpr int kChains = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  const int64_t nb = a.nb;
  const uint8_t* st = qt + size_t(nb) * D::kQuantBytes;
  const int8_t* x[M];
  const float* dx[M];
  const float* sx[M];
  const int32_t* bias[M];
  __m512 acc[M];
  for (int i = 0; i < M; ++i) {
    x[i] = a.qs.data() + (i0 + i) * a.k;
    dx[i] = a.d.data() + (i0 + i) * nb;
    sx[i] = kMin ? a.s.data() + (i0 + i) * nb : nullptr;
    bias[i] = a.bias.data() + (i0 + i) * nb;
    acc[i] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* q = qt + size_t(b) * D::kQuantBytes;
    if constexpr (M <= kPrefetchRows)
      for (size_t l = 0; l < D::kQuantBytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(q) + kPrefetch + l, _MM_HINT_T0);
    __m512i sum[kChains][M];
    for (int i = 0; i < M; ++i) {
      sum[0][i] = _mm512_set1_epi32(bias[i][b]);
      for (int c = 1; c < kChains; ++c) sum[c][i] = _mm512_setzero_si512();
    }
    for (int j = 0; j < 4; ++j) {
      __m512i lo, hi;
      D::decode(q, j, table, lo, hi);
      constexpr int kLo = 0, kHi = kChains > 1 ? 1 : 0;
      const int c = kChains == 4 ? 2 * (j & 1) : 0;  // chain pair of this step
      for (int i = 0; i < M; ++i) {
        sum[c + kLo][i] = _mm512_dpbusd_epi32(sum[c + kLo][i], lo, bcast4(x[i] + 32 * b + 4 * j));
        sum[c + kHi][i] =
            _mm512_dpbusd_epi32(sum[c + kHi][i], hi, bcast4(x[i] + 32 * b + 16 + 4 * j));
      }
    }
    const uint8_t* sb = st + size_t(b) * w.scale_bytes;
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb)));
    __m512 mw;
    if constexpr (kMin)
      mw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 32)));
    for (int i = 0; i < M; ++i) {
      __m512i isum = sum[0][i];
      for (int c = 1; c < kChains; ++c) isum = _mm512_add_epi32(isum, sum[c][i]);
      __m512 t = mul(mul(dw, _mm512_set1_ps(dx[i][b])), _mm512_cvtepi32_ps(isum));
      if constexpr (kMin) t = add(t, mul(mw, _mm512_set1_ps(sx[i][b])));
      acc[i] = add(acc[i], t);
    }
  }
  for (int i = 0; i < M; ++i) _mm512_mask_storeu_ps(y + i * ldy, cols, acc[i]);
}

// The K-quants with 32-element sub-blocks (IQ4_XS, Q4_K, Q5_K) and Q6_K (16-element groups),
// Q8_K activations: per
// super-block and row, each sub-block's integer dot (8 vpdpbusd, seeded with −o·Σ q_x) is
// multiplied by the 16 rows' sub-block scales (vpmulld) into the super-block's int32 sum; the
// mins (Q4_K, Q5_K) add Σ m_s·Σ_s q_x with 4 vpdpwssd on int16 pairs; then, as the scalar
// reference, sum += (d_w·d_x)·float(isum) − (dmin_w·d_x)·float(msum).
template <class D, bool kMin, int M>
void micro_kernel_k(const PackedGemmWeights& w, const uint8_t* qt, const GemmActivations& a,
                    int64_t i0, __m512i table, float* y, int64_t ldy, __mmask16 cols) {
  constexpr int kChains = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  constexpr int kSubs = 256 / (8 * D::kPairs);  // 8 sub-blocks of 32 or (Q6_K) 16 of 16
  const int64_t nb = a.nb;
  const uint8_t* st = qt + size_t(nb) * w.quant_bytes;
  const int8_t* x[M];
  const float* dx[M];
  const int32_t* bias[M];
  const int16_t* sub[M];
  __m512 acc[M];
  for (int i = 0; i < M; ++i) {
    x[i] = a.qs.data() + (i0 + i) * a.k;
    dx[i] = a.d.data() + (i0 + i) * nb;
    bias[i] = a.bias.data() + (i0 + i) * nb * kSubs;
    sub[i] = kMin ? a.sub.data() + (i0 + i) * nb * 8 : nullptr;
    acc[i] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* sr = st + size_t(b) * w.scale_bytes;
    __m512i isum[M];
    for (int i = 0; i < M; ++i) isum[i] = _mm512_setzero_si512();
    for (int s = 0; s < kSubs; ++s) {
      const uint8_t* q = qt + size_t(b) * w.quant_bytes + size_t(s) * D::kQuantBytes;
      if constexpr (M <= kPrefetchRows)
        for (size_t l = 0; l < D::kQuantBytes; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(q) + kPrefetch + l, _MM_HINT_T0);
      const int8_t* xs[M];
      __m512i sum[kChains][M];
      for (int i = 0; i < M; ++i) {
        xs[i] = x[i] + 256 * b + (256 / kSubs) * s;
        sum[0][i] = _mm512_set1_epi32(bias[i][kSubs * b + s]);
        for (int c = 1; c < kChains; ++c) sum[c][i] = _mm512_setzero_si512();
      }
      for (int j = 0; j < D::kPairs; ++j) {
        __m512i lo, hi;
        D::decode(q, j, table, lo, hi);
        constexpr int kHi = kChains > 1 ? 1 : 0;
        const int c = kChains == 4 ? 2 * (j & 1) : 0;
        for (int i = 0; i < M; ++i) {
          sum[c][i] = _mm512_dpbusd_epi32(sum[c][i], lo, bcast4(xs[i] + 4 * j));
          sum[c + kHi][i] =
              _mm512_dpbusd_epi32(sum[c + kHi][i], hi, bcast4(xs[i] + D::kHiOff + 4 * j));
        }
      }
      const __m512i sc =
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sr + 64 + 16 * s)));
      for (int i = 0; i < M; ++i) {
        __m512i dot = sum[0][i];
        for (int c = 1; c < kChains; ++c) dot = _mm512_add_epi32(dot, sum[c][i]);
        isum[i] = _mm512_add_epi32(isum[i], _mm512_mullo_epi32(dot, sc));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sr)));
    __m512 dmw;
    if constexpr (kMin)
      dmw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sr + 32)));
    for (int i = 0; i < M; ++i) {
      const __m512 dxv = _mm512_set1_ps(dx[i][b]);
      __m512 t = mul(mul(dw, dxv), _mm512_cvtepi32_ps(isum[i]));
      if constexpr (kMin) {
        __m512i msum = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
          int32_t pair;
          std::memcpy(&pair, sub[i] + 8 * b + 2 * p, 4);
          msum = _mm512_dpwssd_epi32(msum, _mm512_load_si512(sr + 192 + 64 * p),
                                     _mm512_set1_epi32(pair));
        }
        t = _mm512_sub_round_ps(t, mul(mul(dmw, dxv), _mm512_cvtepi32_ps(msum)), kRn);
      }
      acc[i] = add(acc[i], t);
    }
  }
  for (int i = 0; i < M; ++i) _mm512_mask_storeu_ps(y + i * ldy, cols, acc[i]);
}

// One activation row × NT tiles qt[u] (32-element formats): per block, each tile's step is
// micro_kernel's for M = 1 (same integer sums, same fp32 operations in the same order, so the
// same bits); the tiles are independent streams.
template <class D, bool kMin, int NT>
void gemv_tiles(const PackedGemmWeights& w, const uint8_t* const* qt, const GemmActivations& a,
                __m512i table, float* const* y, const __mmask16* cols) {
  const int64_t nb = a.nb;
  const int8_t* x = a.qs.data();
  const float* dx = a.d.data();
  const float* sx = kMin ? a.s.data() : nullptr;
  const int32_t* bias = a.bias.data();
  __m512 acc[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int u = 0; u < NT; ++u) {
      const uint8_t* q = qt[u] + size_t(b) * D::kQuantBytes;
      for (size_t l = 0; l < D::kQuantBytes; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(q) + kPrefetch + l, _MM_HINT_T0);
      // Two chains (lo, hi): the blocks' sums are independent, so out-of-order execution
      // overlaps them.
      __m512i s0 = _mm512_set1_epi32(bias[b]), s1 = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        __m512i lo, hi;
        D::decode(q, j, table, lo, hi);
        s0 = _mm512_dpbusd_epi32(s0, lo, bcast4(x + 32 * b + 4 * j));
        s1 = _mm512_dpbusd_epi32(s1, hi, bcast4(x + 32 * b + 16 + 4 * j));
      }
      const uint8_t* sb = qt[u] + size_t(nb) * D::kQuantBytes + size_t(b) * w.scale_bytes;
      const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb)));
      __m512 t = mul(mul(dw, _mm512_set1_ps(dx[b])), _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)));
      if constexpr (kMin) {
        const __m512 mw =
            _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 32)));
        t = add(t, mul(mw, _mm512_set1_ps(sx[b])));
      }
      acc[u] = add(acc[u], t);
    }
  }
  for (int u = 0; u < NT; ++u) _mm512_mask_storeu_ps(y[u], cols[u], acc[u]);
}

// The same for the K-quants: each tile's step is micro_kernel_k's for M = 1.
template <class D, bool kMin, int NT>
void gemv_tiles_k(const PackedGemmWeights& w, const uint8_t* const* qt, const GemmActivations& a,
                  __m512i table, float* const* y, const __mmask16* cols) {
  constexpr int kSubs = 256 / (8 * D::kPairs);  // 8 sub-blocks of 32 or (Q6_K) 16 of 16
  const int64_t nb = a.nb;
  const int8_t* x = a.qs.data();
  const float* dx = a.d.data();
  const int32_t* bias = a.bias.data();
  const int16_t* sub = kMin ? a.sub.data() : nullptr;
  __m512 acc[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int u = 0; u < NT; ++u) {
      const uint8_t* sr = qt[u] + size_t(nb) * w.quant_bytes + size_t(b) * w.scale_bytes;
      __m512i isum = _mm512_setzero_si512();
      for (int s = 0; s < kSubs; ++s) {
        const uint8_t* q = qt[u] + size_t(b) * w.quant_bytes + size_t(s) * D::kQuantBytes;
        for (size_t l = 0; l < D::kQuantBytes; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(q) + kPrefetch + l, _MM_HINT_T0);
        const int8_t* xs = x + 256 * b + (256 / kSubs) * s;
        __m512i s0 = _mm512_set1_epi32(bias[kSubs * b + s]), s1 = _mm512_setzero_si512();
        for (int j = 0; j < D::kPairs; ++j) {
          __m512i lo, hi;
          D::decode(q, j, table, lo, hi);
          s0 = _mm512_dpbusd_epi32(s0, lo, bcast4(xs + 4 * j));
          s1 = _mm512_dpbusd_epi32(s1, hi, bcast4(xs + D::kHiOff + 4 * j));
        }
        const __m512i sc = _mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(sr + 64 + 16 * s)));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
      }
      const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sr)));
      const __m512 dxv = _mm512_set1_ps(dx[b]);
      __m512 t = mul(mul(dw, dxv), _mm512_cvtepi32_ps(isum));
      if constexpr (kMin) {
        const __m512 dmw =
            _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sr + 32)));
        __m512i msum = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
          int32_t pair;
          std::memcpy(&pair, sub + 8 * b + 2 * p, 4);
          msum = _mm512_dpwssd_epi32(msum, _mm512_load_si512(sr + 192 + 64 * p),
                                     _mm512_set1_epi32(pair));
        }
        t = _mm512_sub_round_ps(t, mul(mul(dmw, dxv), _mm512_cvtepi32_ps(msum)), kRn);
      }
      acc[u] = add(acc[u], t);
    }
  }
  for (int u = 0; u < NT; ++u) _mm512_mask_storeu_ps(y[u], cols[u], acc[u]);
}

// Tiles t[0..NT) for one activation row.
template <class D, bool kMin, bool kK, int NT>
void gemv_step(const PackedGemmWeights& w, const GemmActivations& a, __m512i table, float* y,
               const int64_t* t) {
  const uint8_t* qt[NT];
  float* out[NT];
  __mmask16 cols[NT];
  for (int u = 0; u < NT; ++u) {
    qt[u] = w.tile(t[u]);
    out[u] = y + 16 * t[u];
    cols[u] = __mmask16((1u << std::min<int64_t>(16, w.n - 16 * t[u])) - 1);
  }
  if constexpr (kK)
    gemv_tiles_k<D, kMin, NT>(w, qt, a, table, out, cols);
  else
    gemv_tiles<D, kMin, NT>(w, qt, a, table, out, cols);
}

// y[1, n]: each thread takes the tiles schedule(static) would give it, [t0, t1), and walks its
// kStreams equal parts side by side (the last (t1 - t0) % kStreams tiles alone).
template <class D, bool kMin, bool kK>
void gemv(const PackedGemmWeights& w, const GemmActivations& a, __m512i table, float* y) {
#pragma omp parallel if (w.n * w.k > (int64_t(1) << 16))
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t t0 = w.tiles * id / threads, t1 = w.tiles * (id + 1) / threads;
    const int64_t part = (t1 - t0) / kStreams;
    for (int64_t i = 0; i < part; ++i) {
      int64_t t[kStreams];
      for (int u = 0; u < kStreams; ++u) t[u] = t0 + u * part + i;
      gemv_step<D, kMin, kK, kStreams>(w, a, table, y, t);
    }
    for (int64_t t = t0 + kStreams * part; t < t1; ++t)
      gemv_step<D, kMin, kK, 1>(w, a, table, y, &t);
  }
}

template <class D, bool kMin, bool kK>
void run(const PackedGemmWeights& w, const GemmActivations& a, float* y) {
  __m512i table = _mm512_setzero_si512();
  if (w.dtype == DType::IQ4_NL || w.dtype == DType::IQ4_XS)
    table = _mm512_xor_si512(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))),
        _mm512_set1_epi8(char(0x80)));
  if (a.m == 1) return gemv<D, kMin, kK>(w, a, table, y);
#pragma omp parallel for schedule(static) if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t t = 0; t < w.tiles; ++t) {
    const uint8_t* qt = w.tile(t);
    const int cols = int(std::min<int64_t>(16, w.n - 16 * t));
    const __mmask16 mask = __mmask16((1u << cols) - 1);
    for (int64_t i0 = 0; i0 < a.m; i0 += kPanel) {
      float* out = y + i0 * w.n + 16 * t;
      switch (std::min<int64_t>(kPanel, a.m - i0)) {
#define LOWBIT_GEMM_ROWS(R)                                            \
  case R:                                                              \
    if constexpr (kK)                                                  \
      micro_kernel_k<D, kMin, R>(w, qt, a, i0, table, out, w.n, mask); \
    else                                                               \
      micro_kernel<D, kMin, R>(w, qt, a, i0, table, out, w.n, mask);   \
    break;
        LOWBIT_GEMM_ROWS(8)
        LOWBIT_GEMM_ROWS(7)
        LOWBIT_GEMM_ROWS(6)
        LOWBIT_GEMM_ROWS(5)
        LOWBIT_GEMM_ROWS(4)
        LOWBIT_GEMM_ROWS(3)
        LOWBIT_GEMM_ROWS(2)
        LOWBIT_GEMM_ROWS(1)
#undef LOWBIT_GEMM_ROWS
      }
    }
  }
}

}  // namespace

void q8_gemm(const PackedGemmWeights& w, const GemmActivations& a, float* y) {
  switch (w.dtype) {
    case DType::Q4_0:
      return run<Nibbles, false, false>(w, a, y);
    case DType::Q4_1:
      return run<Nibbles, true, false>(w, a, y);
    case DType::Q5_0:
      return run<Fives, false, false>(w, a, y);
    case DType::Q5_1:
      return run<Fives, true, false>(w, a, y);
    case DType::Q8_0:
      return run<Bytes, false, false>(w, a, y);
    case DType::IQ4_XS:
      return run<Iq4nl, false, true>(w, a, y);
    case DType::Q4_K:
      return run<Nibbles, true, true>(w, a, y);
    case DType::Q5_K:
      return run<Fives, true, true>(w, a, y);
    case DType::Q6_K:
      return run<Six, false, true>(w, a, y);
    default:
      return run<Iq4nl, false, false>(w, a, y);
  }
}

}  // namespace lowbit::kernels::cpu::avx512
