// AVX-512 VNNI variant of the K-quant / IQ4 int8-activation products (kquant_dot.h).
// A 256-element super-block is decoded into 4 registers of 64 weight bytes in element order
// (unsigned q_e, or |q_e| plus a sign mask for the non-linear IQ4 tables) and 4 registers of
// int16 group scales lined up with vpmaddubsw's 32 int16 pair sums (lanes 8g'..8g'+7 ↔ group
// 4c + g' of chunk c). Per activation row: vpmaddubsw (u8·s8 pairs, no saturation: |q| ≤ 127 and
// pairs of 6-bit q stay far below 2^15) then vpdpwssd (·scale, accumulated in int32), exact
// integers until one int32→fp32 conversion per block. Mins (Q2_K/Q4_K/Q5_K) and offsets (Q3_K's
// −4, Q6_K's −32) go through the activations' 16-element sums: Σ_g m_g·bsum_g with vpmaddwd.
// Q8_0-paired IQ4_NL / MXFP4: two 32-element blocks per 64-byte register, vpdpbusd.
// m > 1: a block is decoded once per tile of up to kTile activation rows.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/kquant_dot.h"
#include "kernels/cpu/kquant_simd.h"

namespace lowbit::kernels::cpu::avx512 {
namespace {

using namespace kquant_simd;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// [32 bytes at p | the same 32 bytes]; the upper copy shifted right by `shift` bits per byte
// when used through the helpers below.
inline __m512i bcast256(const void* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
// Per-byte constant: `lo` in the lower 32 bytes, `hi` in the upper 32.
inline __m512i split_const(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi8(char(lo)), _mm256_set1_epi8(char(hi)), 1);
}

// A decoded super-block.
struct Sb {
  __m512i w[4];      // 4 × 64 weight bytes, element order (|q| for signed formats)
  __m512i s[4];      // int16 scale per vpmaddubsw lane of chunk c
  __mmask64 neg[4];  // signed formats: elements whose weight is negative
  __m256i m;         // int16 group mins / offset scales m_g (formats with kMin)
  float d, dm;       // d_w and c_w
};

// 16 int8 group scales -> the 4 per-chunk int16 lane vectors.
inline void spread_scales(__m128i s8, __m512i s[4]) {
  const __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(s8));
  for (int c = 0; c < 4; ++c) {
    // lane j of chunk c <- group 4c + j/8
    const __m512i idx =
        _mm512_add_epi16(_mm512_set1_epi16(short(4 * c)),
                         _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                          1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
    s[c] = _mm512_permutexvar_epi16(idx, s16);
  }
}

// ---- Decoders: one per format. kSigned: weights as |q| + sign mask; kMin: has m_g. ----------

struct DecQ4K {
  static constexpr bool kSigned = false, kMin = true;
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ4_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -h2f(b.dmin);
    __m128i sc, mn;
    q4k_scales_mins(b.scales, &sc, &mn);
    spread_scales(sc, sb.s);
    sb.m = _mm256_cvtepu8_epi16(mn);
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int c = 0; c < 4; ++c) {  // 32 bytes: low nibbles = elements 64c.., high = 64c+32..
      __m512i q = bcast256(b.qs + 32 * c);
      q = _mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4);
      sb.w[c] = _mm512_and_si512(q, m4);
    }
  }
};

struct DecQ5K {
  static constexpr bool kSigned = false, kMin = true;
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ5_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -h2f(b.dmin);
    __m128i sc, mn;
    q4k_scales_mins(b.scales, &sc, &mn);
    spread_scales(sc, sb.s);
    sb.m = _mm256_cvtepu8_epi16(mn);
    const __m512i m4 = _mm512_set1_epi8(15), h = bcast256(b.qh);
    for (int c = 0; c < 4; ++c) {  // 5th bit of element 64c + 32t + l: bit 2c + t of qh[l]
      __m512i q = bcast256(b.qs + 32 * c);
      q = _mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4);
      q = _mm512_and_si512(q, m4);
      const __mmask64 hb = _mm512_test_epi8_mask(h, split_const(1 << (2 * c), 2 << (2 * c)));
      sb.w[c] = _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(16));
    }
  }
};

struct DecQ6K {
  static constexpr bool kSigned = false, kMin = true;  // m_g = scale, c_w = −32·d
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ6_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -32.0f * sb.d;
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
    spread_scales(sc, sb.s);
    sb.m = _mm256_cvtepi8_epi16(sc);
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int h = 0; h < 2; ++h) {
      // Half h, l < 32: element l    = ql[l]    & 15 | (qh[l] >> 0 & 3) << 4
      //                 element l+32 = ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4
      //                 element l+64 = ql[l]    >> 4 | (qh[l] >> 4 & 3) << 4
      //                 element l+96 = ql[l+32] >> 4 | (qh[l] >> 6 & 3) << 4
      const __m512i l = _mm512_loadu_si512(b.ql + 64 * h);
      __m512i hh = bcast256(b.qh + 32 * h);
      hh = _mm512_mask_srli_epi16(hh, 0xFFFF0000u, hh, 2);
      const __m512i hi0 = _mm512_and_si512(_mm512_slli_epi16(hh, 4), m30);
      const __m512i hi1 = _mm512_and_si512(hh, m30);
      sb.w[2 * h] = _mm512_ternarylogic_epi32(m4, l, hi0, 0xCA);  // m4 ? l : hi0
      sb.w[2 * h + 1] = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(l, 4), hi1, 0xCA);
    }
  }
};

template <bool kQ3>
struct DecQ23K {
  static constexpr bool kSigned = false, kMin = true;
  static void decode(const uint8_t* p, Sb& sb) {
    const uint8_t* qs;
    if constexpr (kQ3) {
      const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
      sb.d = h2f(b.d);
      sb.dm = -4.0f * sb.d;  // q = low2 + 4·hbit − 4
      const __m128i sc = q3k_scales(b.scales);
      spread_scales(sc, sb.s);
      sb.m = _mm256_cvtepi8_epi16(sc);
      qs = b.qs;
    } else {
      const auto& b = *reinterpret_cast<const BlockQ2_K*>(p);
      sb.d = h2f(b.d);
      sb.dm = -h2f(b.dmin);
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
      const __m128i m4 = _mm_set1_epi8(15);
      spread_scales(_mm_and_si128(raw, m4), sb.s);
      sb.m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
      qs = b.qs;
    }
    // Element 128h + 32j + l = (qs[32h + l] >> 2j) & 3; chunk c = 2h + jj holds j = 2jj, 2jj+1.
    for (int c = 0; c < 4; ++c) {
      const int h = c / 2, j = 2 * (c % 2);
      const __m512i q = bcast256(qs + 32 * h);
      const __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16(short(2 * j)),
                                             _mm256_set1_epi16(short(2 * j + 2)), 1);
      sb.w[c] = _mm512_and_si512(_mm512_srlv_epi16(q, cnt), _mm512_set1_epi8(3));
      if constexpr (kQ3) {  // 3rd bit of element e: bit e/32 of hmask[e % 32]
        const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
        const __mmask64 hb =
            _mm512_test_epi8_mask(bcast256(b.hmask), split_const(1 << (2 * c), 2 << (2 * c)));
        sb.w[c] = _mm512_mask_add_epi8(sb.w[c], hb, sb.w[c], _mm512_set1_epi8(4));
      }
    }
  }
};

// |T| of the IQ4 table (all ≤ 127) and which indices are negative (0..7).
inline __m512i iq4_abs_table() {
  return _mm512_abs_epi8(
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))));
}

struct DecIQ4XS {
  static constexpr bool kSigned = true, kMin = false;
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
    sb.d = h2f(b.d);
    sb.dm = 0.0f;
    spread_scales(iq4xs_scales(b), sb.s);
    const __m512i table = iq4_abs_table(), m4 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    for (int c = 0; c < 4; ++c) {  // sub-blocks 2c, 2c+1: [lo(16 B) hi(16 B) lo(next) hi(next)]
      const uint8_t* q = b.qs + 32 * c;
      __m512i r = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
      r = _mm512_mask_broadcast_i32x4(r, 0xFF00,
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)));
      r = _mm512_mask_srli_epi16(r, 0xFF00FF00u, r, 4);
      const __m512i idx = _mm512_and_si512(r, m4);
      sb.w[c] = _mm512_shuffle_epi8(table, idx);
      sb.neg[c] = _mm512_cmplt_epu8_mask(idx, eight);
    }
  }
};

// One super-block against one activation row: acc += d_x·d_w·Σ s_g·dot_g (16 lanes), accm +=
// d_x·c_w·Σ m_g·bsum_g (8 lanes).
template <class D>
inline void sb_dot(const Sb& sb, const int8_t* xq, const int16_t* bsums, float dx, __m512& acc,
                   __m256& accm) {
  __m512i isum = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    __m512i x = _mm512_loadu_si512(xq + 64 * c);
    if constexpr (D::kSigned) x = _mm512_mask_sub_epi8(x, sb.neg[c], _mm512_setzero_si512(), x);
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(sb.w[c], x), sb.s[c]);
  }
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(sb.d * dx), acc);
  if constexpr (D::kMin) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, sb.m)),
                           _mm256_set1_ps(sb.dm * dx), accm);
  }
}

// Software prefetch distance along the weight stream (rows of a thread are contiguous): the
// hardware prefetcher ramps up too slowly for the short per-call streams of generation.
constexpr int kPrefetch = 4096;
constexpr int kTile = 4;          // activation rows sharing one decoded block
constexpr int64_t kPanel = 64;    // activation rows per pass over the weights
constexpr int64_t kGroup = 8;     // weight rows sharing one activation tile (L1)
constexpr int64_t kSbChunk = 16;  // super-blocks per k-chunk (see run_sb)

// Prompt processing blocks the product like a GEMM: for each panel of activation rows and each
// k-chunk of `chunk` units (super-blocks or block pairs), weight rows are taken in groups of
// kGroup; every activation tile (kTile rows × one chunk, a few KiB) is read from L2 once per
// group and reused from L1 by its kGroup rows, and each decoded weight block serves the kTile
// rows. Partial sums of later chunks add into y: static scheduling with the same trip count in
// every pass gives each thread the same weight rows, so there is no race.
// kern(weight rows [j0, j1), first activation row, rows (1..kTile), unit begin, unit end,
//      accumulate).
template <class Kern>
void blocked(const WeightMatrix& w, const KQuantActivations& a, int64_t units, int64_t chunk,
             const Kern& kern) {
  if (a.m <= kTile) chunk = std::max<int64_t>(units, 1);  // generation: one pass, no reuse to win
  const int64_t groups = (w.n + kGroup - 1) / kGroup;
#pragma omp parallel if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t m0 = 0; m0 < a.m; m0 += kPanel) {
    const int64_t m1 = std::min(a.m, m0 + kPanel);
    for (int64_t u0 = 0; u0 < std::max<int64_t>(units, 1); u0 += chunk) {
      const int64_t u1 = std::min(units, u0 + chunk);
#pragma omp for schedule(static) nowait
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j1 = std::min(w.n, (g + 1) * kGroup);
        for (int64_t i = m0; i < m1; i += kTile)
          kern(g * kGroup, j1, i, std::min<int64_t>(kTile, m1 - i), u0, u1, u0 > 0);
      }
    }
  }
}

// Weight row `wr`, super-blocks [s0, s1), against activation rows i0 .. i0+T-1.
template <class D, int T>
void row_tile(const uint8_t* wr, const KQuantActivations& a, int64_t i0, int64_t s0, int64_t s1,
              float* y, int64_t ldy, bool accumulate) {
  __m512 acc[T];
  __m256 accm[T];
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm512_setzero_ps();
    accm[t] = _mm256_setzero_ps();
  }
  for (int64_t s = s0; s < s1; ++s) {
    _mm_prefetch(reinterpret_cast<const char*>(wr + size_t(s) * D::kBlockBytes) + kPrefetch,
                 _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(wr + size_t(s) * D::kBlockBytes) + kPrefetch + 64,
                 _MM_HINT_T0);
    Sb sb;
    D::decode(wr + size_t(s) * D::kBlockBytes, sb);
    for (int t = 0; t < T; ++t) {
      const int64_t i = i0 + t;
      sb_dot<D>(sb, a.qs.data() + i * a.k + 256 * s, a.bsums.data() + (i * a.nb + s) * 16,
                a.d[size_t(i * a.nb + s)], acc[t], accm[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const float v = D::kMin ? hsum512(acc[t]) + hsum256(accm[t]) : hsum512(acc[t]);
    y[t * ldy] = accumulate ? y[t * ldy] + v : v;
  }
}

template <class D>
void run_sb(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  const size_t row_bytes = size_t(a.nb) * D::kBlockBytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
  auto kern = [&](int64_t j0, int64_t j1, int64_t i, int64_t rows, int64_t s0, int64_t s1,
                  bool acc) {
    for (int64_t j = j0; j < j1; ++j) {
      const uint8_t* wr = base + size_t(j) * row_bytes;
      float* out = y + i * w.n + j;
      switch (rows) {
        case 4:
          row_tile<D, 4>(wr, a, i, s0, s1, out, w.n, acc);
          break;
        case 3:
          row_tile<D, 3>(wr, a, i, s0, s1, out, w.n, acc);
          break;
        case 2:
          row_tile<D, 2>(wr, a, i, s0, s1, out, w.n, acc);
          break;
        default:
          row_tile<D, 1>(wr, a, i, s0, s1, out, w.n, acc);
          break;
      }
    }
  };
  // 16 super-blocks (4096 elements): a tile is 4 × 16 × 288 B of activations.
  blocked(w, a, a.nb, kSbChunk, kern);
}

// A decoder with its block size.
template <class D, class B>
struct Sized : D {
  static constexpr size_t kBlockBytes = sizeof(B);
};

// ---- 32-element table formats with Q8_0 activations: IQ4_NL, MXFP4 ---------------------------

// fp16 -> fp32 table: a memory-operand broadcast of table[h] costs only a load, where converting
// a scalar and broadcasting it would take two more shuffle-port uops per 32-element block.
const float* f16_table() {
  static const float* table = [] {
    static float t[65536];
    for (uint32_t h = 0; h < 65536; ++h) t[h] = _cvtsh_ss(uint16_t(h));
    return t;
  }();
  return table;
}

// The weights enter vpdpbusd as unsigned bytes T + 128; the activations' bias lanes
// (−128·Σ q_x per int32 lane) make every lane the exact Σ T·q_x of its 4 elements.
struct Iq4nl {
  static constexpr size_t kBytes = sizeof(BlockIQ4_NL);
  static constexpr int kQs = 2;
  static float scale(const float* f16, const uint8_t* b) {
    uint16_t h;
    std::memcpy(&h, b, 2);
    return f16[h];
  }
  static const int8_t* values() { return kIq4nlValues; }
};
struct Mxfp4 {
  static constexpr size_t kBytes = sizeof(BlockMXFP4);
  static constexpr int kQs = 1;
  static float scale(const float*, const uint8_t* b) {  // E8M0 -> 2^(e−127) / 2
    const uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : uint32_t(b[0] - 1) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  static const int8_t* values() { return kMxfp4Values; }
};

template <class F>
inline __m512i table_plus128() {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(F::values()));
  return _mm512_xor_si512(_mm512_broadcast_i32x4(t), _mm512_set1_epi8(char(0x80)));
}

// Two 32-element blocks -> [lo(b0) hi(b0) lo(b1) hi(b1)] as T + 128.
template <class F>
inline __m512i decode_pair(const uint8_t* b0, __m512i table) {
  __m512i r =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + F::kQs)));
  r = _mm512_mask_broadcast_i32x4(
      r, 0xFF00, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + F::kBytes + F::kQs)));
  r = _mm512_mask_srli_epi16(r, 0xFF00FF00u, r, 4);
  return _mm512_shuffle_epi8(table, _mm512_and_si512(r, _mm512_set1_epi8(15)));
}

// Lone last block (odd block count): 32 bytes [lo | hi], bias lanes 0..7.
template <class F>
inline float single_dot(const uint8_t* b, __m512i table, const int8_t* xq, const int32_t* bias,
                        float scale) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + F::kQs));
  const __m128i m4 = _mm_set1_epi8(15);
  const __m256i idx =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
  const __m256i u = _mm256_shuffle_epi8(_mm512_castsi512_si256(table), idx);
  const __m256i isum =
      _mm256_dpbusd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias)), u,
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  return hsum256(_mm256_cvtepi32_ps(isum)) * scale;
}

// R weight rows (row_bytes apart) × T activation rows, block pairs [p0, p1): each decoded pair
// serves T activation rows and each activation load (qs, bias, d lanes) R weight rows. Per pair,
// weight row and activation row: vpdpbusd, one conversion, d_w·d_x lanes, one FMA. With a single
// weight and activation row, two accumulators (even / odd pairs) keep the FMA latency chain off
// the critical path (generation of a matrix with fewer than 4 rows left).
template <class F, int R, int T>
void tile32(const uint8_t* wr, size_t row_bytes, __m512i table, const KQuantActivations& a,
            int64_t i0, int64_t p0, int64_t p1, float* y, int64_t ldy, bool accumulate) {
  constexpr int H = R * T == 1 ? 2 : 1;
  const float* f16 = f16_table();
  const int64_t pairs = a.nb / 2, lane_pairs = (a.nb + 1) / 2;
  const int32_t* bias[T];
  const int8_t* xq[T];
  const float* dl[T];
  __m512 acc[R][T][H];
  for (int t = 0; t < T; ++t) {
    bias[t] = a.bias.data() + (i0 + t) * a.k / 4;
    xq[t] = a.qs.data() + (i0 + t) * a.k;
    dl[t] = a.dlanes.data() + (i0 + t) * lane_pairs * 16;
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < H; ++h) acc[r][t][h] = _mm512_setzero_ps();
  }
  auto step = [&](int64_t p, int h) {
    __m512i u[R];
    __m512 dw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = wr + r * row_bytes + size_t(2 * p) * F::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
      u[r] = decode_pair<F>(b0, table);
      // d_w of block 2p in lanes 0–7, of block 2p+1 in lanes 8–15
      dw[r] = _mm512_mask_broadcastss_ps(_mm512_set1_ps(F::scale(f16, b0)), 0xFF00,
                                         _mm_set_ss(F::scale(f16, b0 + F::kBytes)));
    }
    for (int t = 0; t < T; ++t) {
      const __m512i bi = _mm512_loadu_si512(bias[t] + 16 * p);
      const __m512i x = _mm512_loadu_si512(xq[t] + 64 * p);
      const __m512 dx = _mm512_loadu_ps(dl[t] + 16 * p);
      for (int r = 0; r < R; ++r) {
        const __m512i isum = _mm512_dpbusd_epi32(bi, u[r], x);
        acc[r][t][h] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw[r], dx), acc[r][t][h]);
      }
    }
  };
  int64_t p = p0;
  if constexpr (H == 2) {
    for (; p + 2 <= p1; p += 2) {
      step(p, 0);
      step(p + 1, 1);
    }
  }
  for (; p < p1; ++p) step(p, 0);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float s = hsum512(H == 2 ? _mm512_add_ps(acc[r][t][0], acc[r][t][H - 1]) : acc[r][t][0]);
      if ((a.nb & 1) && p1 == pairs) {  // lone last block, with the last chunk
        const int64_t b = a.nb - 1;
        const uint8_t* blk = wr + r * row_bytes + size_t(b) * F::kBytes;
        s += single_dot<F>(blk, table, xq[t] + 32 * b, bias[t] + 8 * b,
                           F::scale(f16, blk) * a.d[size_t((i0 + t) * a.nb + b)]);
      }
      float& out = y[t * ldy + r];
      out = accumulate ? out + s : s;
    }
}

template <class F, int R>
void tile32_rows(const uint8_t* wr, size_t row_bytes, __m512i table, const KQuantActivations& a,
                 int64_t i0, int64_t rows, int64_t p0, int64_t p1, float* y, int64_t ldy,
                 bool accumulate) {
  switch (rows) {
    case 4:
      return tile32<F, R, 4>(wr, row_bytes, table, a, i0, p0, p1, y, ldy, accumulate);
    case 3:
      return tile32<F, R, 3>(wr, row_bytes, table, a, i0, p0, p1, y, ldy, accumulate);
    case 2:
      return tile32<F, R, 2>(wr, row_bytes, table, a, i0, p0, p1, y, ldy, accumulate);
    default:
      return tile32<F, R, 1>(wr, row_bytes, table, a, i0, p0, p1, y, ldy, accumulate);
  }
}

template <class F>
void run_32(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  const __m512i table = table_plus128<F>();
  const size_t row_bytes = size_t(a.nb) * F::kBytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
  auto kern = [&](int64_t j0, int64_t j1, int64_t i, int64_t rows, int64_t p0, int64_t p1,
                  bool acc) {
    for (int64_t j = j0; j < j1; j += 4) {  // 4 weight rows at a time
      const uint8_t* wr = base + size_t(j) * row_bytes;
      float* out = y + i * w.n + j;
      switch (std::min<int64_t>(4, j1 - j)) {
        case 4:
          tile32_rows<F, 4>(wr, row_bytes, table, a, i, rows, p0, p1, out, w.n, acc);
          break;
        case 3:
          tile32_rows<F, 3>(wr, row_bytes, table, a, i, rows, p0, p1, out, w.n, acc);
          break;
        case 2:
          tile32_rows<F, 2>(wr, row_bytes, table, a, i, rows, p0, p1, out, w.n, acc);
          break;
        default:
          tile32_rows<F, 1>(wr, row_bytes, table, a, i, rows, p0, p1, out, w.n, acc);
          break;
      }
    }
  };
  // 64 pairs (4096 elements): a tile is 4 × 64 × 192 B of activations (qs, bias, d lanes); one
  // pass for k ≤ 4096, where the per-chunk reductions would cost more than L2 reads save.
  blocked(w, a, a.nb / 2, 64, kern);
}

}  // namespace

// Q8_K quantization; vcvtps2dq rounds half to even (default MXCSR), as ggml's nearest_int.

void q8k_quantize_row(const float* x, int64_t nb, int8_t* qs, float* d, int16_t* bsums) {
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + 256 * b;
    int8_t* q = qs + 256 * b;
    int16_t* bs = bsums + 16 * b;
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int c = 0; c < 16; ++c) {
      const __m512 v = _mm512_loadu_ps(xb + 16 * c);
      bad |= _mm512_fpclass_ps_mask(v, 0x99);  // NaN, ±Inf
      vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v));
    }
    if (bad) {
      std::memset(q, 0, 256);
      std::memset(bs, 0, 32);
      d[b] = NAN;
      continue;
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    if (amax == 0.0f) {
      std::memset(q, 0, 256);
      std::memset(bs, 0, 32);
      d[b] = 0.0f;
      continue;
    }
    // The signed value of the first element with |x| == amax.
    float max = 0.0f;
    for (int c = 0; c < 16; ++c) {
      const __m512 v = _mm512_loadu_ps(xb + 16 * c);
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        max = xb[16 * c + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int c = 0; c < 16; ++c) {
      __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * c), vs));
      v = _mm512_min_epi32(v, _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * c), _mm512_cvtepi32_epi8(v));
      bs[c] = int16_t(_mm512_reduce_add_epi32(v));
    }
    d[b] = 1.0f / iscale;
  }
}

void kquant_linear(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  switch (w.dtype) {
    case DType::Q2_K:
      return run_sb<Sized<DecQ23K<false>, BlockQ2_K>>(w, a, y);
    case DType::Q3_K:
      return run_sb<Sized<DecQ23K<true>, BlockQ3_K>>(w, a, y);
    case DType::Q4_K:
      return run_sb<Sized<DecQ4K, BlockQ4_K>>(w, a, y);
    case DType::Q5_K:
      return run_sb<Sized<DecQ5K, BlockQ5_K>>(w, a, y);
    case DType::Q6_K:
      return run_sb<Sized<DecQ6K, BlockQ6_K>>(w, a, y);
    case DType::IQ4_XS:
      return run_sb<Sized<DecIQ4XS, BlockIQ4_XS>>(w, a, y);
    case DType::IQ4_NL:
      return run_32<Iq4nl>(w, a, y);
    default:
      return run_32<Mxfp4>(w, a, y);
  }
}

}  // namespace lowbit::kernels::cpu::avx512
