// AVX2 variant of the int8-activation products (q8_activation.h), llama.cpp's AVX2 scheme:
// maddubs (u8 × s8 → saturating i16 pairs, which cannot saturate here: |w| ≤ 31 for 4/5-bit
// weights, and Q8_0 moves the sign onto x so |w| ≤ 128, |x| ≤ 127) then madd with ones to
// int32, plus the activation's per-lane bias (−offset·Σ q_x of the lane's 4 bytes). A pair of
// weight blocks is two ymm: [lo16(b0) lo16(b1)] and [hi16(b0) hi16(b1)], matching the
// pair-interleaved activation bytes; int32 lanes 0–3 belong to b0, 4–7 to b1.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/q8_activation.h"

namespace lowbit::kernels::cpu::avx2 {
namespace {

inline uint16_t u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline __m256i loadu(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 0xFF in byte j where bit j of m is set (llama.cpp's bytes_from_bits_32).
inline __m256i bytes_from_bits(uint32_t m) {
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101,
                                         0x0000000000000000);
  __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(int(m)), shuf);
  b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

template <int kB, int kQs>
struct Nibbles {
  static constexpr int kBytes = kB;
  static void pair(const uint8_t* b0, __m256i& a, __m256i& b) {
    const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b0 + kB + kQs),
                                            reinterpret_cast<const __m128i*>(b0 + kQs));
    const __m256i m = _mm256_set1_epi8(15);
    a = _mm256_and_si256(raw, m);
    b = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m);
  }
  static __m256i one(const uint8_t* b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kQs));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
  }
  static constexpr bool kWide = false;  // two maddubs results add in int16 (≤ 4·31·127)
  static __m256i mul(__m256i w, __m256i x) { return _mm256_maddubs_epi16(w, x); }
};
template <int kB, int kQh>
struct Fives : Nibbles<kB, kQh + 4> {
  static void pair(const uint8_t* b0, __m256i& a, __m256i& b) {
    const uint32_t h0 = u32(b0 + kQh), h1 = u32(b0 + kB + kQh);
    Nibbles<kB, kQh + 4>::pair(b0, a, b);
    const __m256i sixteen = _mm256_set1_epi8(16);
    a = _mm256_or_si256(a, _mm256_and_si256(bytes_from_bits((h0 & 0xFFFF) | (h1 << 16)), sixteen));
    b = _mm256_or_si256(
        b, _mm256_and_si256(bytes_from_bits((h0 >> 16) | (h1 & 0xFFFF0000u)), sixteen));
  }
  static __m256i one(const uint8_t* b) {
    return _mm256_or_si256(Nibbles<kB, kQh + 4>::one(b),
                           _mm256_and_si256(bytes_from_bits(u32(b + kQh)), _mm256_set1_epi8(16)));
  }
};
struct Q8w {
  static constexpr int kBytes = 34;
  static constexpr bool kWide = true;  // each maddubs result may reach 2·128·127
  static void pair(const uint8_t* b0, __m256i& a, __m256i& b) {
    const __m256i w0 = loadu(b0 + 2), w1 = loadu(b0 + 34 + 2);
    a = _mm256_permute2x128_si256(w0, w1, 0x20);
    b = _mm256_permute2x128_si256(w0, w1, 0x31);
  }
  static __m256i one(const uint8_t* b) { return loadu(b + 2); }
  static __m256i mul(__m256i w, __m256i x) {
    return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  }
};

template <class W, bool kMin>
inline __m128 scales(const uint8_t* b0) {
  if constexpr (kMin) {
    const __m128 v = _mm_cvtph_ps(_mm_set_epi32(0, 0, int(u32(b0 + W::kBytes)), int(u32(b0))));
    return _mm_shuffle_ps(v, v, _MM_SHUFFLE(3, 1, 2, 0));
  } else {
    return _mm_cvtph_ps(_mm_cvtsi32_si128(int(u16(b0) | uint32_t(u16(b0 + W::kBytes)) << 16)));
  }
}

constexpr int kPrefetch = 4096;  // bytes ahead; see q8_activation_avx512.cpp

template <class W, bool kMin, int R>
void rows_dot(const uint8_t* w0, size_t row_bytes, const int8_t* qs, const float* ds,
              const int32_t* bias, int64_t nb, float* out) {
  const __m256i bcast = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  __m128 accm[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    accm[r] = _mm_setzero_ps();
  }
  const int64_t full = nb / 2;
  for (int64_t p = 0; p < full; ++p) {
    const __m256i xa = loadu(qs + 64 * p), xb = loadu(qs + 64 * p + 32);
    const __m256i bi = _mm256_add_epi32(loadu(bias + 16 * p), loadu(bias + 16 * p + 8));
    const __m128 dxs = _mm_loadu_ps(ds + 4 * p);
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = w0 + r * row_bytes + 2 * p * W::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
      __m256i wa, wb;
      W::pair(b0, wa, wb);
      __m256i isum;
      if constexpr (W::kWide) {
        isum = _mm256_add_epi32(_mm256_madd_epi16(W::mul(wa, xa), ones),
                                _mm256_madd_epi16(W::mul(wb, xb), ones));
      } else {
        isum = _mm256_madd_epi16(_mm256_add_epi16(W::mul(wa, xa), W::mul(wb, xb)), ones);
      }
      isum = _mm256_add_epi32(bi, isum);
      const __m128 prod = _mm_mul_ps(scales<W, kMin>(b0), dxs);
      const __m256 sc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(prod), bcast);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), sc, acc[r]);
      if constexpr (kMin) accm[r] = _mm_add_ps(accm[r], prod);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum256(acc[r]);
    if constexpr (kMin) {
      const __m128 hi = _mm_movehl_ps(accm[r], accm[r]);
      s += _mm_cvtss_f32(_mm_add_ss(hi, _mm_movehdup_ps(hi)));
    }
    if (nb & 1) {
      const int64_t p = full;
      const uint8_t* b = w0 + r * row_bytes + 2 * p * W::kBytes;
      const __m256i isum = _mm256_add_epi32(
          loadu(bias + 16 * p), _mm256_madd_epi16(W::mul(W::one(b), loadu(qs + 64 * p)), ones));
      const float dw = _cvtsh_ss(u16(b));
      s += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dw * ds[4 * p])));
      if constexpr (kMin) s += _cvtsh_ss(u16(b + 2)) * ds[4 * p + 2];
    }
    out[r] = s;
  }
}

template <class W, bool kMin>
void run(const WeightMatrix& w, const Q8Activations& a, float* y) {
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t groups = (w.n + 3) / 4;
#pragma omp parallel for schedule(static) if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = 4 * g;
    const uint8_t* p = base + size_t(r0) * row_bytes;
    const int rows = int(std::min<int64_t>(4, w.n - r0));
    for (int64_t i = 0; i < a.m; ++i) {
      const int8_t* qs = a.qs.data() + i * a.k;
      const float* ds = a.ds.data() + i * a.pairs * 4;
      const int32_t* bias = a.bias.data() + i * a.pairs * 16;
      float* out = y + i * w.n + r0;
      switch (rows) {
        case 4:
          rows_dot<W, kMin, 4>(p, row_bytes, qs, ds, bias, a.nb, out);
          break;
        case 3:
          rows_dot<W, kMin, 3>(p, row_bytes, qs, ds, bias, a.nb, out);
          break;
        case 2:
          rows_dot<W, kMin, 2>(p, row_bytes, qs, ds, bias, a.nb, out);
          break;
        default:
          rows_dot<W, kMin, 1>(p, row_bytes, qs, ds, bias, a.nb, out);
          break;
      }
    }
  }
}

inline __m256 round_even(__m256 v) {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace

void quantize_blocks(const float* x, int64_t nb, int8_t* qs, float* d, int32_t* sums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t b = 0; b < nb; ++b) {
    __m256 v[4], mx = _mm256_setzero_ps();
    int bad = 0;
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 32 * b + 8 * j);
      const __m256 z = _mm256_mul_ps(v[j], _mm256_setzero_ps());  // NaN iff v is NaN/Inf
      bad |= _mm256_movemask_ps(_mm256_cmp_ps(z, z, _CMP_UNORD_Q));
      mx = _mm256_max_ps(mx, _mm256_and_ps(v[j], abs_mask));
    }
    int64_t lo, hi;
    q8_half_offsets(b, nb, &lo, &hi);
    if (bad) {
      std::memset(qs + lo, 0, 16);
      std::memset(qs + hi, 0, 16);
      sums[b] = 0;
      d[b] = NAN;
      continue;
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    // ggml's x86 quantize_row_q8_0: id = 127/amax, round to nearest even.
    const float amax = _mm_cvtss_f32(m4);
    const float db = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    if (!std::isfinite(id)) id = 0.0f;
    const __m256 vid = _mm256_set1_ps(id), lim = _mm256_set1_ps(127.0f),
                 nlim = _mm256_set1_ps(-127.0f);
    __m256i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_cvtps_epi32(
          _mm256_min_ps(lim, _mm256_max_ps(nlim, round_even(_mm256_mul_ps(v[j], vid)))));
    // int32 → int16 → int8; packs interleave 128-bit lanes, the permute restores order.
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + lo), _mm256_castsi256_si128(p8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + hi), _mm256_extracti128_si256(p8, 1));
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    sums[b] = _mm_cvtsi128_si32(s4);
    d[b] = db;
  }
}

void q8_linear(const WeightMatrix& w, const Q8Activations& a, float* y) {
  switch (w.dtype) {
    case DType::Q4_0:
      return run<Nibbles<18, 2>, false>(w, a, y);
    case DType::Q4_1:
      return run<Nibbles<20, 4>, true>(w, a, y);
    case DType::Q5_0:
      return run<Fives<22, 2>, false>(w, a, y);
    case DType::Q5_1:
      return run<Fives<24, 4>, true>(w, a, y);
    default:
      return run<Q8w, false>(w, a, y);
  }
}

}  // namespace lowbit::kernels::cpu::avx2
