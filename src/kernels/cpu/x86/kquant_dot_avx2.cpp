// AVX2 variant of the K-quant / IQ4 int8-activation products (kquant_dot.h).
// A 256-element super-block is decoded into 8 registers of 32 weight bytes in element order
// (unsigned q_e, or |q_e| plus the signed values for _mm256_sign_epi8 with the IQ4 tables), and
// 16 int16 group scales. Per activation row and 32 elements: vpmaddubsw (u8·s8 pairs; |q| ≤ 127
// and 6-bit unsigned q keep the int16 pair sums below 2^15), vpmaddwd with the two groups'
// scales, int32 adds: exact integers until one int32→fp32 conversion per block. Mins and offsets
// go through the activations' 16-element sums (vpmaddwd). IQ4_NL / MXFP4: 32-element blocks.
// m > 1: a block is decoded once per tile of up to kTile activation rows.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/kquant_dot.h"
#include "kernels/cpu/kquant_simd.h"

namespace lowbit::kernels::cpu::avx2 {
namespace {

using namespace kquant_simd;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

struct Sb {
  __m256i w[8];    // 8 × 32 weight bytes, element order (|q| for signed formats)
  __m256i sgn[8];  // signed formats: the signed values (only their signs are used)
  __m256i s16;     // 16 int16 group scales
  __m256i m;       // 16 int16 group mins / offset scales
  float d, dm;
};

// int16 lanes 0..7 <- group 2c, 8..15 <- group 2c+1 of the 16 group scales.
inline __m256i chunk_scales(__m256i s16, int c) {
  const __m256i pair = _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(c));
  return _mm256_shuffle_epi8(
      pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,
                             2, 3, 2, 3, 2, 3, 2, 3));
}

struct DecQ4K {
  static constexpr bool kSigned = false, kMin = true;
  template <bool kFive>
  static void decode45(const uint8_t* scales, const uint8_t* qs, const uint8_t* qh, Sb& sb) {
    __m128i sc, mn;
    q4k_scales_mins(scales, &sc, &mn);
    sb.s16 = _mm256_cvtepi8_epi16(sc);
    sb.m = _mm256_cvtepu8_epi16(mn);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i h = kFive ? load256(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(qs + 32 * c);
      __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if constexpr (kFive) {  // 5th bit of element 64c + 32t + l: bit 2c + t of qh[l]
        const __m256i one = _mm256_set1_epi8(1);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
        hi = _mm256_or_si256(hi,
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 1), one), 4));
        h = _mm256_srli_epi16(h, 2);
      }
      sb.w[2 * c] = lo;
      sb.w[2 * c + 1] = hi;
    }
  }
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ4_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -h2f(b.dmin);
    decode45<false>(b.scales, b.qs, nullptr, sb);
  }
};

struct DecQ5K : DecQ4K {
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ5_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -h2f(b.dmin);
    decode45<true>(b.scales, b.qs, b.qh, sb);
  }
};

struct DecQ6K {
  static constexpr bool kSigned = false, kMin = true;  // m_g = scale, c_w = −32·d
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockQ6_K*>(p);
    sb.d = h2f(b.d);
    sb.dm = -32.0f * sb.d;
    sb.s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    sb.m = sb.s16;
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = load256(b.ql + 64 * h), l1 = load256(b.ql + 64 * h + 32);
      const __m256i qh = load256(b.qh + 32 * h);
      auto hb = [&](int shift) {
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), m3), 4);
      };
      sb.w[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), hb(0));
      sb.w[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), hb(2));
      sb.w[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), hb(4));
      sb.w[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hb(6));
    }
  }
};

template <bool kQ3>
struct DecQ23K {
  static constexpr bool kSigned = false, kMin = true;
  static void decode(const uint8_t* p, Sb& sb) {
    const uint8_t* qs;
    __m256i hm = _mm256_setzero_si256();
    if constexpr (kQ3) {
      const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
      sb.d = h2f(b.d);
      sb.dm = -4.0f * sb.d;  // q = low2 + 4·hbit − 4
      sb.s16 = _mm256_cvtepi8_epi16(q3k_scales(b.scales));
      sb.m = sb.s16;
      qs = b.qs;
      hm = load256(b.hmask);
    } else {
      const auto& b = *reinterpret_cast<const BlockQ2_K*>(p);
      sb.d = h2f(b.d);
      sb.dm = -h2f(b.dmin);
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
      const __m128i m4 = _mm_set1_epi8(15);
      sb.s16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
      sb.m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
      qs = b.qs;
    }
    const __m256i m3 = _mm256_set1_epi8(3);
    // Element 128h + 32j + l = (qs[32h + l] >> 2j) & 3; its 3rd bit (Q3_K): bit 4h + j of hmask[l].
    for (int h = 0; h < 2; ++h) {
      const __m256i q = load256(qs + 32 * h);
      for (int j = 0; j < 4; ++j) {
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
        if constexpr (kQ3) {
          const __m256i bit =
              _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), _mm256_set1_epi8(1));
          v = _mm256_or_si256(v, _mm256_slli_epi16(bit, 2));
        }
        sb.w[4 * h + j] = v;
      }
    }
  }
};

inline __m256i iq4_table() {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues));
  return _mm256_broadcastsi128_si256(t);
}

struct DecIQ4XS {
  static constexpr bool kSigned = true, kMin = false;
  static void decode(const uint8_t* p, Sb& sb) {
    const auto& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
    sb.d = h2f(b.d);
    sb.dm = 0.0f;
    sb.s16 = _mm256_cvtepi8_epi16(iq4xs_scales(b));
    const __m256i table = iq4_table();
    const __m128i m4 = _mm_set1_epi8(15);
    for (int ib = 0; ib < 8; ++ib) {  // sub-block ib: [lo nibbles of 16 B | high nibbles]
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * ib));
      const __m256i idx =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
      sb.sgn[ib] = _mm256_shuffle_epi8(table, idx);
      sb.w[ib] = _mm256_abs_epi8(sb.sgn[ib]);
    }
  }
};

template <class D>
inline void sb_dot(const Sb& sb, const int8_t* xq, const int16_t* bsums, float dx, __m256& acc,
                   __m256& accm) {
  __m256i isum = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    __m256i x = load256(xq + 32 * c);
    if constexpr (D::kSigned) x = _mm256_sign_epi8(x, sb.sgn[c]);
    const __m256i p = _mm256_maddubs_epi16(sb.w[c], x);
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, chunk_scales(sb.s16, c)));
  }
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(sb.d * dx), acc);
  if constexpr (D::kMin) {
    const __m256i im = _mm256_madd_epi16(load256(bsums), sb.m);
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(im), _mm256_set1_ps(sb.dm * dx), accm);
  }
}

// Software prefetch distance along the weight stream (rows of a thread are contiguous): the
// hardware prefetcher ramps up too slowly for the short per-call streams of generation.
constexpr int kPrefetch = 4096;
constexpr int kTile = 4;
constexpr int64_t kPanel = 64;

template <class D, class B>
struct Sized : D {
  static constexpr size_t kBlockBytes = sizeof(B);
};

template <class D, int T>
void row_tile(const uint8_t* wr, const KQuantActivations& a, int64_t i0, float* y, int64_t ldy) {
  __m256 acc[T], accm[T];
  for (int t = 0; t < T; ++t) acc[t] = accm[t] = _mm256_setzero_ps();
  for (int64_t s = 0; s < a.nb; ++s) {
    const char* blk = reinterpret_cast<const char*>(wr + size_t(s) * D::kBlockBytes);
    _mm_prefetch(blk + kPrefetch, _MM_HINT_T0);
    _mm_prefetch(blk + kPrefetch + 64, _MM_HINT_T0);
    Sb sb;
    D::decode(wr + size_t(s) * D::kBlockBytes, sb);
    for (int t = 0; t < T; ++t) {
      const int64_t i = i0 + t;
      sb_dot<D>(sb, a.qs.data() + i * a.k + 256 * s, a.bsums.data() + (i * a.nb + s) * 16,
                a.d[size_t(i * a.nb + s)], acc[t], accm[t]);
    }
  }
  for (int t = 0; t < T; ++t)
    y[t * ldy] = D::kMin ? hsum256(_mm256_add_ps(acc[t], accm[t])) : hsum256(acc[t]);
}

// ---- 32-element table formats with Q8_0 activations: IQ4_NL, MXFP4 ---------------------------

struct Iq4nl {
  static constexpr size_t kBytes = sizeof(BlockIQ4_NL);
  static constexpr int kQs = 2;
  static float scale(const uint8_t* b) {
    uint16_t h;
    std::memcpy(&h, b, 2);
    return h2f(h);
  }
  static __m256i table() { return iq4_table(); }
};
struct Mxfp4 {
  static constexpr size_t kBytes = sizeof(BlockMXFP4);
  static constexpr int kQs = 1;
  static float scale(const uint8_t* b) {  // E8M0 -> 2^(e−127) / 2 (ggml's ..._TO_FP32_HALF)
    const uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : uint32_t(b[0] - 1) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  static __m256i table() {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Values));
    return _mm256_broadcastsi128_si256(t);
  }
};

template <class F, int T>
void row_tile32(const uint8_t* wr, __m256i table, const KQuantActivations& a, int64_t i0, float* y,
                int64_t ldy) {
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m128i m4 = _mm_set1_epi8(15);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < a.nb; ++b) {
    const uint8_t* blk = wr + size_t(b) * F::kBytes;
    if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetch, _MM_HINT_T0);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + F::kQs));
    const __m256i idx =
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
    const __m256i v = _mm256_shuffle_epi8(table, idx);
    const __m256i av = _mm256_abs_epi8(v);
    const float dw = F::scale(blk);
    for (int t = 0; t < T; ++t) {
      const int64_t i = i0 + t;
      const __m256i x = _mm256_sign_epi8(load256(a.qs.data() + i * a.k + 32 * b), v);
      const __m256i isum = _mm256_madd_epi16(_mm256_maddubs_epi16(av, x), ones);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum),
                               _mm256_set1_ps(dw * a.d[size_t(i * a.nb + b)]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) y[t * ldy] = hsum256(acc[t]);
}

// Weight rows split across threads; activation rows in panels of kPanel (kept in L2 while every
// weight row passes), each weight block decoded once per tile of kTile rows.
template <class Tile>
void for_rows(const WeightMatrix& w, const KQuantActivations& a, size_t row_bytes, float* y,
              const Tile& tile) {
  const auto* base = static_cast<const uint8_t*>(w.data);
#pragma omp parallel if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t m0 = 0; m0 < a.m; m0 += kPanel) {
    const int64_t m1 = std::min(a.m, m0 + kPanel);
#pragma omp for schedule(static) nowait
    for (int64_t j = 0; j < w.n; ++j) {
      const uint8_t* wr = base + size_t(j) * row_bytes;
      for (int64_t i = m0; i < m1; i += kTile) tile(wr, i, m1 - i, y + i * w.n + j);
    }
  }
}

template <class D>
void run_sb(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  for_rows(w, a, size_t(a.nb) * D::kBlockBytes, y,
           [&](const uint8_t* wr, int64_t i, int64_t left, float* out) {
             switch (std::min<int64_t>(left, kTile)) {
               case 4:
                 return row_tile<D, 4>(wr, a, i, out, w.n);
               case 3:
                 return row_tile<D, 3>(wr, a, i, out, w.n);
               case 2:
                 return row_tile<D, 2>(wr, a, i, out, w.n);
               default:
                 return row_tile<D, 1>(wr, a, i, out, w.n);
             }
           });
}

template <class F>
void run_32(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  const __m256i table = F::table();
  for_rows(w, a, size_t(a.nb) * F::kBytes, y,
           [&](const uint8_t* wr, int64_t i, int64_t left, float* out) {
             switch (std::min<int64_t>(left, kTile)) {
               case 4:
                 return row_tile32<F, 4>(wr, table, a, i, out, w.n);
               case 3:
                 return row_tile32<F, 3>(wr, table, a, i, out, w.n);
               case 2:
                 return row_tile32<F, 2>(wr, table, a, i, out, w.n);
               default:
                 return row_tile32<F, 1>(wr, table, a, i, out, w.n);
             }
           });
}

}  // namespace

// Q8_K quantization; vcvtps2dq rounds half to even (default MXCSR), as ggml's nearest_int.
void q8k_quantize_row(const float* x, int64_t nb, int8_t* qs, float* d, int16_t* bsums) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + 256 * b;
    int8_t* q = qs + 256 * b;
    int16_t* bs = bsums + 16 * b;
    __m256 vmax = _mm256_setzero_ps();
    __m256 finite = _mm256_setzero_ps();  // x·0 is 0 for finite x, NaN otherwise
    for (int c = 0; c < 32; ++c) {
      const __m256 v = _mm256_loadu_ps(xb + 8 * c);
      finite = _mm256_add_ps(finite, _mm256_mul_ps(v, _mm256_setzero_ps()));
      vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, v));
    }
    if (_mm256_movemask_ps(_mm256_cmp_ps(finite, finite, _CMP_UNORD_Q))) {
      std::memset(q, 0, 256);
      std::memset(bs, 0, 32);
      d[b] = NAN;
      continue;
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0.0f) {
      std::memset(q, 0, 256);
      std::memset(bs, 0, 32);
      d[b] = 0.0f;
      continue;
    }
    float max = 0.0f;  // the signed value of the first element with |x| == amax
    for (int c = 0; c < 32; ++c) {
      const __m256 v = _mm256_loadu_ps(xb + 8 * c);
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit) {
        max = xb[8 * c + __builtin_ctz(unsigned(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int g = 0; g < 16; ++g) {  // 16 values per group: two vectors of 8
      __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g), vs));
      __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g + 8), vs));
      v0 = _mm256_min_epi32(v0, _mm256_set1_epi32(127));
      v1 = _mm256_min_epi32(v1, _mm256_set1_epi32(127));
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);  // in order
      const __m128i b8 =
          _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * g), b8);
      __m256i s = _mm256_add_epi32(v0, v1);
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      bs[g] = int16_t(_mm_cvtsi128_si32(s4));
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

}  // namespace lowbit::kernels::cpu::avx2
