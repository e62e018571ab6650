// AVX2 weight-only int4 / int8 / NF4 / FP4 products (wq_linear_kernels.h layout); the same
// algorithm as wq_linear_avx512.cpp at 256 bits.
//
// Int8 activations: per block of 32 columns, vpmaddubsw (u8 × s8 → pairs of int16) and
// vpmaddwd with ones give 8 int32 lanes, scaled by the block's d and the group's scale. Int4
// codes (≤ 15) never saturate the int16 pairs (2·15·127). Int8 codes could (2·255·127), so they
// enter signed as code − 128 with the sign moved onto the activations (|code − 128| ≤ 128,
// 2·128·127 < 32768), and the zero-point term uses zero − 128.
// Exact: 8 codes at a time widened to int32 lanes; nf4/fp4 values come from two 8-entry
// vpermps tables blended on bit 3 of the code.
// Tiles: up to 4 weight rows × 1 activation row for generation, 2 × 4 for prompts (16 ymm
// registers).
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/wq_linear_kernels.h"

namespace lowbit::kernels::cpu::avx2 {
namespace {

constexpr int kPrefetch = 4096;

template <int U>
using Unit = std::integral_constant<int, U>;

template <class F>
inline void for_units(int64_t k, F&& f) {
  int64_t c = 0;
  for (; c + 128 <= k; c += 128) f(c, Unit<128>{});
  if (c + 64 <= k) {
    f(c, Unit<64>{});
    c += 64;
  }
  if (c + 32 <= k) f(c, Unit<32>{});
}

struct GroupCursor {
  int64_t blocks_per_group, g = 0, ib = 0;
  explicit GroupCursor(int64_t group_size) : blocks_per_group(group_size / 32) {}
  int64_t take() {
    const int64_t cur = g;
    if (++ib == blocks_per_group) {
      ib = 0;
      ++g;
    }
    return cur;
  }
};

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- Exact fp32 path -------------------------------------------------------------------------

// 8 codes (int32 lanes) of slice s (8 columns) of a unit of U columns at c0.
template <bool kNibbles, int U>
inline __m256i slice_codes(const uint8_t* row, int64_t c0, int s) {
  if constexpr (kNibbles) {
    constexpr int kHalf = U / 2;
    const int t = 8 * s;
    const int hi = t >= kHalf;
    const __m256i v = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c0 / 2 + (hi ? t - kHalf : t))));
    return hi ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
  } else {
    return _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c0 + 8 * s)));
  }
}

template <WqKind K, int R, int M>
void exact_tile(const WqWeight& w, int64_t r0, const float* xg, int64_t i0, float* y) {
  constexpr bool kNibbles = K != WqKind::kInt8;
  constexpr bool kLut = K == WqKind::kNf4 || K == WqKind::kFp4;
  const float* table = kLut ? wq_lut(K) : nullptr;
  const __m256 lut_lo = kLut ? _mm256_loadu_ps(table) : _mm256_setzero_ps();
  const __m256 lut_hi = kLut ? _mm256_loadu_ps(table + 8) : _mm256_setzero_ps();
  const uint8_t* rows[R];
  const float *scale[R], *zero[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = w.codes.data() + (r0 + r) * w.row_bytes;
    scale[r] = w.scale.data() + (r0 + r) * w.groups;
    zero[r] = kLut ? nullptr : w.zero.data() + (r0 + r) * w.groups;
  }
  const float* x[M];
  for (int i = 0; i < M; ++i) x[i] = xg + (i0 + i) * w.k;
  __m256 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
  GroupCursor cursor(w.group_size);
  // nf4/fp4: the current group's table scale·lut as two 8-entry halves per row.
  __m256 t_lo[R], t_hi[R];
  int64_t g_loaded = -1;
  auto slice = [&](const int64_t c, auto codes_of) {
    const int64_t g = cursor.g;
    if constexpr (kLut) {
      if (g != g_loaded) {
        for (int r = 0; r < R; ++r) {
          const __m256 sv = _mm256_broadcast_ss(scale[r] + g);
          t_lo[r] = _mm256_mul_ps(lut_lo, sv);
          t_hi[r] = _mm256_mul_ps(lut_hi, sv);
        }
        g_loaded = g;
      }
    }
    __m256 wv[R];
    for (int r = 0; r < R; ++r) {
      const __m256i q = codes_of(r);
      if constexpr (kLut) {
        const __m256 lo = _mm256_permutevar8x32_ps(t_lo[r], q);
        const __m256 hi = _mm256_permutevar8x32_ps(t_hi[r], q);
        wv[r] = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
      } else {
        const __m256 v = _mm256_sub_ps(_mm256_cvtepi32_ps(q), _mm256_broadcast_ss(zero[r] + g));
        wv[r] = _mm256_mul_ps(v, _mm256_broadcast_ss(scale[r] + g));
      }
    }
    for (int i = 0; i < M; ++i) {
      const __m256 xv = _mm256_loadu_ps(x[i] + c);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  };
  if constexpr (kNibbles) {
    for_units(w.k, [&](int64_t c0, auto u) {
      constexpr int U = decltype(u)::value;
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c0 / 2) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 16
      for (int s = 0; s < U / 8; ++s) {
        slice(c0 + 8 * s, [&](int r) { return slice_codes<true, U>(rows[r], c0, s); });
        if ((s & 3) == 3) cursor.take();
      }
    });
  } else {
    for (int64_t c = 0; c < w.k; c += 32) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c) + kPrefetch, _MM_HINT_T0);
      for (int s = 0; s < 4; ++s)
        slice(c + 8 * s, [&](int r) { return slice_codes<false, 32>(rows[r], c, s); });
      cursor.take();
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) y[(i0 + i) * w.n + r0 + r] = hsum256(acc[r][i]);
}

// ---- Int8-activation path --------------------------------------------------------------------

template <int R, int M>
void q8_tile(const WqWeight& w, int64_t r0, const WqQ8Activations& a, int64_t i0, float* y) {
  const bool nibbles = w.kind == WqKind::kInt4;
  const uint8_t* rows[R];
  const float *scale[R], *zero[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = w.codes.data() + (r0 + r) * w.row_bytes;
    scale[r] = w.scale.data() + (r0 + r) * w.groups;
    zero[r] = w.zero.data() + (r0 + r) * w.groups;
  }
  const int8_t* xq[M];
  const float* xd[M];
  for (int i = 0; i < M; ++i) {
    xq[i] = a.q.data() + (i0 + i) * a.kp;
    xd[i] = a.d.data() + (i0 + i) * a.kp / 32;
  }
  __m256 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  GroupCursor cursor(w.group_size);
  // Block of 32 columns at c; codes_of(r) gives 32 unsigned int4 codes, or int8 codes − 128.
  auto block = [&](const int64_t c, auto codes_of) {
    const int64_t g = cursor.take();
    __m256i wq[R];
    for (int r = 0; r < R; ++r) wq[r] = codes_of(r);
    for (int i = 0; i < M; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[i] + c));
      const __m256 d = _mm256_broadcast_ss(xd[i] + c / 32);
      for (int r = 0; r < R; ++r) {
        const __m256i prod =
            nibbles ? _mm256_maddubs_epi16(wq[r], xv)
                    : _mm256_maddubs_epi16(_mm256_abs_epi8(wq[r]), _mm256_sign_epi8(xv, wq[r]));
        const __m256i isum = _mm256_madd_epi16(prod, ones);
        acc[r][i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), d),
                                    _mm256_broadcast_ss(scale[r] + g), acc[r][i]);
      }
    }
  };
  const __m256i lo4 = _mm256_set1_epi8(15);
  auto ld = [](const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  };
  if (nibbles) {
    for_units(w.k, [&](int64_t c0, auto u) {
      constexpr int U = decltype(u)::value;
      const int64_t off = c0 / 2;
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off) + kPrefetch, _MM_HINT_T0);
      if constexpr (U == 128) {
        for (int part = 0; part < 2; ++part)  // bytes 0–31: columns 0–31 | 64–95; 32–63: +32
          block(c0 + 32 * part,
                [&](int r) { return _mm256_and_si256(ld(rows[r] + off + 32 * part), lo4); });
        for (int part = 0; part < 2; ++part)
          block(c0 + 64 + 32 * part, [&](int r) {
            return _mm256_and_si256(_mm256_srli_epi16(ld(rows[r] + off + 32 * part), 4), lo4);
          });
      } else if constexpr (U == 64) {
        block(c0, [&](int r) { return _mm256_and_si256(ld(rows[r] + off), lo4); });
        block(c0 + 32, [&](int r) {
          return _mm256_and_si256(_mm256_srli_epi16(ld(rows[r] + off), 4), lo4);
        });
      } else {
        block(c0, [&](int r) {
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + off));
          const __m128i m = _mm_set1_epi8(15);
          return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
        });
      }
    });
  } else {
    const __m256i bias = _mm256_set1_epi8(char(0x80));
    for (int64_t c = 0; c < w.k; c += 32) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c) + kPrefetch, _MM_HINT_T0);
      block(c, [&](int r) { return _mm256_xor_si256(ld(rows[r] + c), bias); });
    }
  }
  // Zero points: −Σ_g scale·zero'·xs, zero' = zero (int4) or zero − 128 (signed int8 codes).
  const __m256 shift = _mm256_set1_ps(nibbles ? 0.0f : 128.0f);
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      const float* xs = a.xs.data() + (i0 + i) * a.groups;
      __m256 zt = _mm256_setzero_ps();
      int64_t g = 0;
      for (; g + 8 <= w.groups; g += 8) {
        const __m256 z = _mm256_sub_ps(_mm256_loadu_ps(zero[r] + g), shift);
        zt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(scale[r] + g), z),
                             _mm256_loadu_ps(xs + g), zt);
      }
      float tail = 0.0f;
      for (; g < w.groups; ++g)
        tail += scale[r][g] * (zero[r][g] - (nibbles ? 0.0f : 128.0f)) * xs[g];
      y[(i0 + i) * w.n + r0 + r] = hsum256(_mm256_sub_ps(acc[r][i], zt)) - tail;
    }
}

// Run-time (rows ≤ kR, mc ≤ kM) to Tile<R, M>.
template <class T>
struct Dispatch {
  template <int R>
  static void by_m(int mc, auto&&... a) {
    switch (mc) {
      case 4:
        return T::template run<R, 4>(a...);
      case 3:
        return T::template run<R, 3>(a...);
      case 2:
        return T::template run<R, 2>(a...);
      default:
        return T::template run<R, 1>(a...);
    }
  }
  static void go(int rows, int mc, auto&&... a) {
    switch (rows) {
      case 4:
        return by_m<4>(mc, a...);
      case 3:
        return by_m<3>(mc, a...);
      case 2:
        return by_m<2>(mc, a...);
      default:
        return by_m<1>(mc, a...);
    }
  }
};

template <WqKind K>
struct ExactTile {
  template <int R, int M>
  static void run(const WqWeight& w, int64_t r0, const float* xg, int64_t i0, float* y) {
    if constexpr (R * M <= 8) exact_tile<K, R, M>(w, r0, xg, i0, y);
  }
};
struct Q8Tile {
  template <int R, int M>
  static void run(const WqWeight& w, int64_t r0, const WqQ8Activations& a, int64_t i0, float* y) {
    if constexpr (R * M <= 8) q8_tile<R, M>(w, r0, a, i0, y);
  }
};

// Generation (m == 1): blocks of 4 rows × 1; prompts: 2 rows × 4 activation rows.
template <class T, class X>
void run_all(const WqWeight& w, const X& x, int64_t m, float* y) {
  const int64_t rb = m == 1 ? 4 : 2;
  const int64_t blocks = (w.n + rb - 1) / rb;
#pragma omp parallel for schedule(static) if (w.n * w.k * m > (int64_t(1) << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = rb * b;
    const int rows = int(std::min<int64_t>(rb, w.n - r0));
    for (int64_t i0 = 0; i0 < m; i0 += 4)
      Dispatch<T>::go(rows, int(std::min<int64_t>(4, m - i0)), w, r0, x, i0, y);
  }
}

}  // namespace

void wq_linear_exact(const WqWeight& w, const float* xg, int64_t m, float* y) {
  switch (w.kind) {
    case WqKind::kInt4:
      return run_all<ExactTile<WqKind::kInt4>>(w, xg, m, y);
    case WqKind::kInt8:
      return run_all<ExactTile<WqKind::kInt8>>(w, xg, m, y);
    case WqKind::kNf4:
      return run_all<ExactTile<WqKind::kNf4>>(w, xg, m, y);
    case WqKind::kFp4:
      return run_all<ExactTile<WqKind::kFp4>>(w, xg, m, y);
  }
}

void wq_linear_q8(const WqWeight& w, const WqQ8Activations& a, float* y) {
  run_all<Q8Tile>(w, a, a.m, y);
}

}  // namespace lowbit::kernels::cpu::avx2
