// AVX-512 (VNNI) weight-only int4 / int8 / NF4 / FP4 products (wq_linear_kernels.h layout).
//
// Int8 activations (int4/int8 weights): per 64 columns, the weight codes of one row (a 128-column
// int4 unit gives two such chunks: its low nibbles, then its high nibbles; int8 rows are read as
// is) meet 64 activation bytes in one vpdpbusd (u8 × s8 → 16 int32 lanes, lanes 0–7 = first
// block of 32, 8–15 = second). Lanes are converted to fp32 and scaled by the activation block's
// d and the weight group's scale; the zero point enters once per group as
// −scale·zero·Σ_block d·Σq (a dot over the groups at the end of the row).
//
// Exact (fp32 activations, every kind): 16 codes at a time are widened to int32 lanes
// (vpmovzxbd from memory, then a nibble shift/mask) and FMA'd with the activations. 4-bit
// kinds index (vpermps) a 16-entry table of the group's values scale·(code − zero) or
// scale·lut[code], built once per group and row (the same fp32 values as the reference
// decode); int8 computes scale·(code − zero) per element.
//
// Tiles: R = 4 weight rows × M activation rows (M = 1 for generation, 4 for prompts); each
// weight chunk is decoded once per tile and each activation chunk loaded once per R rows. Rows
// of W are split across threads in static contiguous blocks.
// GCC 12 reports its own intrinsics headers (_mm512_castps128_ps512 etc.) as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/wq_linear_kernels.h"

namespace lowbit::kernels::cpu::avx512 {
namespace {

// Software prefetch distance for weight streams (short rows; see q8_activation_avx512.cpp).
constexpr int kPrefetch = 4096;

template <int U>
using Unit = std::integral_constant<int, U>;

// f(c0, Unit<U>) for the 4-bit units of a row (k % 32 == 0): 128s, then a 64, then a 32.
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

// Walks the scale groups block by block (32 columns each; group_size % 32 == 0).
struct GroupCursor {
  int64_t blocks_per_group, g = 0, ib = 0;
  explicit GroupCursor(int64_t group_size) : blocks_per_group(group_size / 32) {}
  // Group of the current block, then moves to the next block.
  int64_t take() {
    const int64_t cur = g;
    if (++ib == blocks_per_group) {
      ib = 0;
      ++g;
    }
    return cur;
  }
};

// ---- Exact fp32 path -------------------------------------------------------------------------

// 16 codes (as int32 lanes) of the slice starting at column c of a unit of U at c0.
template <bool kNibbles, int U>
inline __m512i slice_codes(const uint8_t* row, int64_t c0, int s) {
  if constexpr (kNibbles) {
    constexpr int kHalf = U / 2;
    const int t = 16 * s;
    const int hi = t >= kHalf;
    const __m512i v = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0 / 2 + (hi ? t - kHalf : t))));
    return hi ? _mm512_srli_epi32(v, 4) : _mm512_and_si512(v, _mm512_set1_epi32(15));
  } else {
    return _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0 + 16 * s)));
  }
}

template <WqKind K, int R, int M>
void exact_tile(const WqWeight& w, int64_t r0, const float* xg, int64_t i0, float* y) {
  constexpr bool kNibbles = K != WqKind::kInt8;
  constexpr bool kLut = K == WqKind::kNf4 || K == WqKind::kFp4;
  const __m512 lut = kLut ? _mm512_loadu_ps(wq_lut(K)) : _mm512_setzero_ps();
  const uint8_t* rows[R];
  const float *scale[R], *zero[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = w.codes.data() + (r0 + r) * w.row_bytes;
    scale[r] = w.scale.data() + (r0 + r) * w.groups;
    zero[r] = kLut ? nullptr : w.zero.data() + (r0 + r) * w.groups;
  }
  const float* x[M];
  for (int i = 0; i < M; ++i) x[i] = xg + (i0 + i) * w.k;
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
  // Per row, the current group's values: 4-bit kinds as a 16-entry table of scale·value(code)
  // (one vpermps per 16 weights), int8 as scale and zero.
  __m512 tbl[R], s_v[R], z_v[R];
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t g_loaded = -1;
  GroupCursor cursor(w.group_size);
  auto slice = [&](const int64_t c, auto codes_of) {
    const int64_t g = cursor.g;
    if (g != g_loaded) {
      for (int r = 0; r < R; ++r) {
        s_v[r] = _mm512_set1_ps(scale[r][g]);
        if constexpr (!kLut) z_v[r] = _mm512_set1_ps(zero[r][g]);
        if constexpr (kLut) tbl[r] = _mm512_mul_ps(lut, s_v[r]);
        if constexpr (K == WqKind::kInt4)
          tbl[r] = _mm512_mul_ps(_mm512_sub_ps(iota, z_v[r]), s_v[r]);
      }
      g_loaded = g;
    }
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      const __m512i q = codes_of(r);
      if constexpr (kNibbles) {
        wv[r] = _mm512_permutexvar_ps(q, tbl[r]);
      } else {
        wv[r] = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), z_v[r]), s_v[r]);
      }
    }
    for (int i = 0; i < M; ++i) {
      const __m512 xv = _mm512_loadu_ps(x[i] + c);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  };
  if constexpr (kNibbles) {
    for_units(w.k, [&](int64_t c0, auto u) {
      constexpr int U = decltype(u)::value;
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c0 / 2) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 8
      for (int s = 0; s < U / 16; ++s) {
        slice(c0 + 16 * s, [&](int r) { return slice_codes<true, U>(rows[r], c0, s); });
        if (s & 1) cursor.take();
      }
    });
  } else {
    for (int64_t c = 0; c < w.k; c += 32) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c) + kPrefetch, _MM_HINT_T0);
      for (int s = 0; s < 2; ++s)
        slice(c + 16 * s, [&](int r) { return slice_codes<false, 32>(rows[r], c, s); });
      cursor.take();
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) y[(i0 + i) * w.n + r0 + r] = _mm512_reduce_add_ps(acc[r][i]);
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
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
  const __m512i pair_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  GroupCursor cursor(w.group_size);
  __m512 s_v[R];  // scales of the current chunk's two blocks, per row
  int64_t s_g0 = -1, s_g1 = -1;
  // One chunk of 64 columns starting at c (32 when `half`: lanes 8–15 then see zero weights,
  // zero padding activations and d = 0).
  auto chunk = [&](const int64_t c, const bool half, auto codes_of) {
    const int64_t g0 = cursor.take(), g1 = half ? g0 : cursor.take();
    if (g0 != s_g0 || g1 != s_g1) {
      for (int r = 0; r < R; ++r)
        s_v[r] = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(scale[r][g0]),
                                      _mm512_set1_ps(scale[r][g1]));
      s_g0 = g0;
      s_g1 = g1;
    }
    __m512i wq[R];
    for (int r = 0; r < R; ++r) wq[r] = codes_of(r);
    for (int i = 0; i < M; ++i) {
      const __m512i xv = _mm512_loadu_si512(xq[i] + c);
      const __m512 d = _mm512_permutexvar_ps(
          pair_idx, _mm512_castps128_ps512(_mm_castpd_ps(
                        _mm_load_sd(reinterpret_cast<const double*>(xd[i] + c / 32)))));
      for (int r = 0; r < R; ++r) {
        const __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r], xv);
        acc[r][i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), d), s_v[r], acc[r][i]);
      }
    }
  };
  const __m512i lo4 = _mm512_set1_epi8(15);
  if (nibbles) {
    for_units(w.k, [&](int64_t c0, auto u) {
      constexpr int U = decltype(u)::value;
      const int64_t off = c0 / 2;
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off) + kPrefetch, _MM_HINT_T0);
      if constexpr (U == 128) {
        chunk(c0, false,
              [&](int r) { return _mm512_and_si512(_mm512_loadu_si512(rows[r] + off), lo4); });
        chunk(c0 + 64, false, [&](int r) {
          return _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(rows[r] + off), 4), lo4);
        });
      } else if constexpr (U == 64) {
        chunk(c0, false, [&](int r) {
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + off));
          const __m256i m = _mm256_set1_epi8(15);
          return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, m)),
                                    _mm256_and_si256(_mm256_srli_epi16(raw, 4), m), 1);
        });
      } else {
        chunk(c0, true, [&](int r) {
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + off));
          const __m128i m = _mm_set1_epi8(15);
          return _mm512_zextsi256_si512(
              _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m)));
        });
      }
    });
  } else {
    int64_t c = 0;
    for (; c + 64 <= w.k; c += 64) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c) + kPrefetch, _MM_HINT_T0);
      chunk(c, false, [&](int r) { return _mm512_loadu_si512(rows[r] + c); });
    }
    if (c < w.k)
      chunk(c, true, [&](int r) { return _mm512_maskz_loadu_epi8(0xFFFFFFFFull, rows[r] + c); });
  }
  // Zero points: −Σ_g scale·zero·xs per (row, activation row).
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      const float* xs = a.xs.data() + (i0 + i) * a.groups;
      __m512 zt = _mm512_setzero_ps();
      for (int64_t g = 0; g < w.groups; g += 16) {
        const __mmask16 mk = w.groups - g >= 16 ? 0xFFFF : __mmask16((1u << (w.groups - g)) - 1);
        const __m512 sz = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, scale[r] + g),
                                        _mm512_maskz_loadu_ps(mk, zero[r] + g));
        zt = _mm512_fmadd_ps(sz, _mm512_maskz_loadu_ps(mk, xs + g), zt);
      }
      y[(i0 + i) * w.n + r0 + r] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[r][i], zt));
    }
}

// Tile<R, M> dispatch from run-time (rows ≤ 4, mc ≤ 4) to the templates.
template <class T>
struct Dispatch {
  template <int R, int M>
  static void tile(auto&&... a) {
    T::template run<R, M>(a...);
  }
  template <int R>
  static void by_m(int mc, auto&&... a) {
    switch (mc) {
      case 4:
        return tile<R, 4>(a...);
      case 3:
        return tile<R, 3>(a...);
      case 2:
        return tile<R, 2>(a...);
      default:
        return tile<R, 1>(a...);
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
    exact_tile<K, R, M>(w, r0, xg, i0, y);
  }
};
struct Q8Tile {
  template <int R, int M>
  static void run(const WqWeight& w, int64_t r0, const WqQ8Activations& a, int64_t i0, float* y) {
    q8_tile<R, M>(w, r0, a, i0, y);
  }
};

// Blocks of kR weight rows (split across threads) × tiles of kM activation rows.
template <class T, int kR, int kM, class X>
void run_all(const WqWeight& w, const X& x, int64_t m, float* y) {
  const int64_t blocks = (w.n + kR - 1) / kR;
#pragma omp parallel for schedule(static) if (w.n * w.k * m > (int64_t(1) << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = kR * b;
    const int rows = int(std::min<int64_t>(kR, w.n - r0));
    for (int64_t i0 = 0; i0 < m; i0 += kM)
      Dispatch<T>::go(rows, int(std::min<int64_t>(kM, m - i0)), w, r0, x, i0, y);
  }
}

// Generation: 4 rows × 1; prompts: 4 × 4. (2 × 8 halves the decodes per FMA but was slower,
// 14–15 vs 17–22 GFLOP/s at [2048 x 8192], m = 64: the activation rows come from L2, and 8
// of them per weight slice cost more loads than the decodes saved.)
template <WqKind K>
void exact_kind(const WqWeight& w, const float* xg, int64_t m, float* y) {
  if (m == 1) return run_all<ExactTile<K>, 4, 1>(w, xg, m, y);
  run_all<ExactTile<K>, 4, 4>(w, xg, m, y);
}

}  // namespace

void wq_linear_exact(const WqWeight& w, const float* xg, int64_t m, float* y) {
  switch (w.kind) {
    case WqKind::kInt4:
      return exact_kind<WqKind::kInt4>(w, xg, m, y);
    case WqKind::kInt8:
      return exact_kind<WqKind::kInt8>(w, xg, m, y);
    case WqKind::kNf4:
      return exact_kind<WqKind::kNf4>(w, xg, m, y);
    case WqKind::kFp4:
      return exact_kind<WqKind::kFp4>(w, xg, m, y);
  }
}

void wq_linear_q8(const WqWeight& w, const WqQ8Activations& a, float* y) {
  run_all<Q8Tile, 4, 4>(w, a, a.m, y);
}

}  // namespace lowbit::kernels::cpu::avx512
