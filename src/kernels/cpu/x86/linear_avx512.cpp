// AVX-512 (F/BW/VL/DQ) + FMA + F16C variant of linear(): fp32 activations times the exact
// dequantized weights, fp32 accumulation.
//   m == 1: rows_dot streams 4 weight rows at a time, decoding each 32-element block straight
//           into two zmm registers and FMA-ing them against x (8 independent accumulators; x
//           stays in L1, so the loop is bound by weight bandwidth).
//   m  > 1: a tile of 4 weight rows × kKC columns is decoded once into an L1-resident fp32
//           buffer and multiplied with all activation rows by a 4×4 register-blocked
//           micro-kernel; the activation panel [kMC, kKC] is reused from L2 across tiles.
// Per-format code is only the block decoder; the drivers are shared templates.
// GCC 12's AVX-512 headers seed masked builtins with _mm*_undefined_*(), which -Wuninitialized
// reports at every use (GCC bug 105593); the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/half.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/isa_kernels.h"

namespace lowbit::kernels::cpu::avx512 {
namespace {

// ---- Block decoders: 32 elements -> lo (elements 0..15), hi (16..31). -------------------

// Horizontal sum (GCC 12's _mm512_reduce_add_ps triggers a false -Wuninitialized).
inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline __m512i load_u8x16_as_i32(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct DecF32 {
  static constexpr int kBytes = 128;
  static constexpr bool kPlain = true;
  static constexpr bool kScaled = false;
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    lo = _mm512_loadu_ps(p);
    hi = _mm512_loadu_ps(p + 64);
  }
  static float scalar(const uint8_t* row, int64_t i) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
};
struct DecF16 {
  static constexpr int kBytes = 64;
  static constexpr bool kPlain = true;
  static constexpr bool kScaled = false;
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
  }
  static float scalar(const uint8_t* row, int64_t i) { return load_f16(row + 2 * i); }
};
struct DecBF16 {
  static constexpr int kBytes = 64;
  static constexpr bool kPlain = true;
  static constexpr bool kScaled = false;
  static __m512 widen(const uint8_t* p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    lo = widen(p);
    hi = widen(p + 32);
  }
  static float scalar(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return bf16_to_f32(h);
  }
};
struct DecQ8_0 {
  static constexpr int kBytes = 34;
  static constexpr bool kPlain = false;
  static constexpr bool kScaled = true;  // W = d · ints(), d factored out in rows_dot
  static float scale(const uint8_t* p) { return load_f16(p); }
  static void ints(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m128i* q = reinterpret_cast<const __m128i*>(p + 2);
    lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
    hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
  }
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(scale(p));
    ints(p, lo, hi);
    lo = _mm512_mul_ps(lo, d);  // |q| < 2^8 times an 11-bit significand: exact
    hi = _mm512_mul_ps(hi, d);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ4_0 {
  static constexpr int kBytes = 18;
  static constexpr bool kPlain = false;
  static constexpr bool kScaled = true;
  static float scale(const uint8_t* p) { return load_f16(p); }
  // vpermps reads only the low 4 bits of each index, so a byte indexes its low nibble
  // directly: one permute turns 16 nibbles into 16 floats (nibble − 8).
  static void ints(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i q = load_u8x16_as_i32(p + 2);
    lo = _mm512_permutexvar_ps(q, table);
    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
  }
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(scale(p));
    ints(p, lo, hi);
    lo = _mm512_mul_ps(lo, d);
    hi = _mm512_mul_ps(hi, d);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ4_1 {
  static constexpr int kBytes = 20;
  static constexpr bool kPlain = false;
  static constexpr bool kScaled = false;
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(load_f16(p)), m = _mm512_set1_ps(load_f16(p + 2));
    const __m512i q = load_u8x16_as_i32(p + 4);
    // q·d is exact, so the fused q·d + m rounds once, like ggml's separate mul and add.
    lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15))), d, m);
    hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)), d, m);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
// The fifth bit of element j is bit j of qh: it becomes the lane mask of a masked OR.
inline void q5_ints(const uint8_t* qh_p, const uint8_t* qs_p, __m512i& l, __m512i& h) {
  const uint32_t qh = load_u32(qh_p);
  const __m512i q = load_u8x16_as_i32(qs_p), sixteen = _mm512_set1_epi32(16);
  const __m512i ln = _mm512_and_si512(q, _mm512_set1_epi32(15)), hn = _mm512_srli_epi32(q, 4);
  l = _mm512_mask_or_epi32(ln, __mmask16(qh & 0xFFFF), ln, sixteen);
  h = _mm512_mask_or_epi32(hn, __mmask16(qh >> 16), hn, sixteen);
}
struct DecQ5_0 {
  static constexpr int kBytes = 22;
  static constexpr bool kPlain = false;
  static constexpr bool kScaled = true;
  static float scale(const uint8_t* p) { return load_f16(p); }
  // 5-bit index (nibble | fifth bit << 4) into a 32-entry table of (q − 16) via vpermt2ps.
  static void ints(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 t0 =
        _mm512_setr_ps(-16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1);
    const __m512 t1 = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i l, h;
    q5_ints(p + 2, p + 6, l, h);
    lo = _mm512_permutex2var_ps(t0, l, t1);
    hi = _mm512_permutex2var_ps(t0, h, t1);
  }
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(scale(p));
    ints(p, lo, hi);
    lo = _mm512_mul_ps(lo, d);
    hi = _mm512_mul_ps(hi, d);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ5_1 {
  static constexpr int kBytes = 24;
  static constexpr bool kPlain = false;
  static constexpr bool kScaled = false;
  static void decode(const uint8_t* p, __m512& lo, __m512& hi) {
    const __m512 d = _mm512_set1_ps(load_f16(p)), m = _mm512_set1_ps(load_f16(p + 2));
    __m512i l, h;
    q5_ints(p + 4, p + 8, l, h);
    lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(l), d, m);
    hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h), d, m);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};

// ---- m == 1 ---------------------------------------------------------------------------

constexpr int kPrefetchBytes = 1024;

// out[r] = Σ_t W[r, t] · x[t] for R consecutive rows starting at `w0`.
template <class Dec, int R>
void rows_dot(const uint8_t* w0, size_t row_bytes, const float* x, int64_t k, float* out) {
  const int64_t nb = k / 32;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 xa = _mm512_loadu_ps(x + 32 * b), xb = _mm512_loadu_ps(x + 32 * b + 16);
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w0 + r * row_bytes + b * Dec::kBytes;
      // Four row streams at a low byte rate each: hardware prefetch alone leaves DRAM
      // latency exposed for the 18–24-byte formats.
      if constexpr (!Dec::kPlain)
        _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetchBytes, _MM_HINT_T0);
      __m512 lo, hi;
      if constexpr (Dec::kScaled) {
        // Σ d·q·x = d·Σ q·x: one scale FMA per block instead of two multiplies.
        Dec::ints(blk, lo, hi);
        const __m512 t = _mm512_fmadd_ps(hi, xb, _mm512_mul_ps(lo, xa));
        acc[r][b & 1] = _mm512_fmadd_ps(t, _mm512_set1_ps(Dec::scale(blk)), acc[r][b & 1]);
      } else {
        Dec::decode(blk, lo, hi);
        acc[r][0] = _mm512_fmadd_ps(lo, xa, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(hi, xb, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum512(_mm512_add_ps(acc[r][0], acc[r][1]));
    if constexpr (Dec::kPlain) {
      for (int64_t t = nb * 32; t < k; ++t) s += Dec::scalar(w0 + r * row_bytes, t) * x[t];
    }
    out[r] = s;
  }
}

template <class Dec>
void matvec(const WeightMatrix& w, const float* x, float* y) {
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t groups = (w.n + 3) / 4;
#pragma omp parallel for schedule(static) if (w.n * w.k > (int64_t(1) << 16))
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = 4 * g;
    const uint8_t* p = base + size_t(r0) * row_bytes;
    switch (std::min<int64_t>(4, w.n - r0)) {
      case 4:
        rows_dot<Dec, 4>(p, row_bytes, x, w.k, y + r0);
        break;
      case 3:
        rows_dot<Dec, 3>(p, row_bytes, x, w.k, y + r0);
        break;
      case 2:
        rows_dot<Dec, 2>(p, row_bytes, x, w.k, y + r0);
        break;
      default:
        rows_dot<Dec, 1>(p, row_bytes, x, w.k, y + r0);
        break;
    }
  }
}

// ---- m > 1 ----------------------------------------------------------------------------

constexpr int kNR = 4;         // weight rows per decoded tile
constexpr int64_t kKC = 1024;  // columns per tile: 4 × 1024 × 4 B = 16 KiB (L1)
constexpr int64_t kMC = 64;    // activation rows per panel: 64 × 1024 × 4 B = 256 KiB (L2)
constexpr int64_t kLdb = kKC + 16;

// buf[r, 0..len) = W[row0 + r, k0 .. k0 + len) for r < rows, zeros elsewhere up to a multiple
// of 16 (so the micro-kernel's tail vector reads zeros, never stale values).
template <class Dec>
void decode_tile(const uint8_t* row0, size_t row_bytes, int rows, int64_t k0, int64_t len,
                 float* buf) {
  const int64_t full = len / 32 * 32, padded = (len + 15) / 16 * 16;
  for (int r = 0; r < kNR; ++r) {
    float* dst = buf + r * kLdb;
    if (r >= rows) {
      std::memset(dst, 0, size_t(padded) * 4);
      continue;
    }
    const uint8_t* src = row0 + r * row_bytes + k0 / 32 * Dec::kBytes;
    for (int64_t t = 0; t < full; t += 32, src += Dec::kBytes) {
      __m512 lo, hi;
      Dec::decode(src, lo, hi);
      _mm512_store_ps(dst + t, lo);
      _mm512_store_ps(dst + t + 16, hi);
    }
    int64_t t = full;
    if constexpr (Dec::kPlain) {
      for (; t < len; ++t) dst[t] = Dec::scalar(row0 + r * row_bytes, k0 + t);
    }
    for (; t < padded; ++t) dst[t] = 0.0f;
  }
}

// y[i, r] (+)= Σ_t x[i, t] · buf[r, t] for i < MR, r < nr.
template <int MR>
void micro(const float* x, int64_t ldx, const float* buf, int64_t len, float* y, int64_t ldy,
           int nr, bool accumulate) {
  __m512 acc[MR][kNR];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kNR; ++r) acc[i][r] = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + 16 <= len; t += 16) {
    __m512 wv[kNR];
    for (int r = 0; r < kNR; ++r) wv[r] = _mm512_load_ps(buf + r * kLdb + t);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * ldx + t);
      for (int r = 0; r < kNR; ++r) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  if (t < len) {
    // Masked loads: x rows are not padded, and reading past a row could pull a NaN from the
    // next row into this one.
    const __mmask16 mask = __mmask16((1u << (len - t)) - 1);
    __m512 wv[kNR];
    for (int r = 0; r < kNR; ++r) wv[r] = _mm512_load_ps(buf + r * kLdb + t);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * ldx + t);
      for (int r = 0; r < kNR; ++r) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < nr; ++r) {
      const float s = hsum512(acc[i][r]);
      y[i * ldy + r] = accumulate ? y[i * ldy + r] + s : s;
    }
}

template <class Dec>
void gemm(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t tiles = (w.n + kNR - 1) / kNR;
#pragma omp parallel if (w.n * w.k * m > (int64_t(1) << 16))
  {
    alignas(64) float buf[kNR * kLdb];
    for (int64_t i0 = 0; i0 < m; i0 += kMC) {
      const int64_t mc = std::min(kMC, m - i0);
      for (int64_t k0 = 0; k0 < w.k; k0 += kKC) {
        const int64_t len = std::min(kKC, w.k - k0);
        // Same trip count every time, so static scheduling gives each thread the same
        // contiguous tiles (and the same y entries) in every k0 pass: no race, no barrier.
#pragma omp for schedule(static) nowait
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int64_t r0 = tile * kNR;
          const int nr = int(std::min<int64_t>(kNR, w.n - r0));
          decode_tile<Dec>(base + size_t(r0) * row_bytes, row_bytes, nr, k0, len, buf);
          const bool acc = k0 > 0;
          int64_t i = 0;
          for (; i + 4 <= mc; i += 4)
            micro<4>(x + (i0 + i) * w.k + k0, w.k, buf, len, y + (i0 + i) * w.n + r0, w.n, nr, acc);
          const float* xr = x + (i0 + i) * w.k + k0;
          float* yr = y + (i0 + i) * w.n + r0;
          switch (mc - i) {
            case 3:
              micro<3>(xr, w.k, buf, len, yr, w.n, nr, acc);
              break;
            case 2:
              micro<2>(xr, w.k, buf, len, yr, w.n, nr, acc);
              break;
            case 1:
              micro<1>(xr, w.k, buf, len, yr, w.n, nr, acc);
              break;
            default:
              break;
          }
        }
      }
    }
  }
}

template <class Dec>
void run(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  if (m == 1) {
    matvec<Dec>(w, x, y);
  } else {
    gemm<Dec>(w, x, m, y);
  }
}

template <class Dec>
void decode_row(const WeightMatrix& w, int64_t row, float* out) {
  const auto* p =
      static_cast<const uint8_t*>(w.data) + size_t(row) * *dtype_bytes(w.dtype, uint64_t(w.k));
  const int64_t full = w.k / 32 * 32;
  for (int64_t t = 0; t < full; t += 32) {
    __m512 lo, hi;
    Dec::decode(p + t / 32 * Dec::kBytes, lo, hi);
    _mm512_storeu_ps(out + t, lo);
    _mm512_storeu_ps(out + t + 16, hi);
  }
  if constexpr (Dec::kPlain) {
    for (int64_t t = full; t < w.k; ++t) out[t] = Dec::scalar(p, t);
  }
}

// Calls F<Decoder>(args...) for w.dtype (validated by the caller).
#define LOWBIT_DISPATCH(fn, dtype, ...)                  \
  switch (dtype) {                                       \
    case DType::F32:                                     \
      return fn<DecF32>(__VA_ARGS__);                    \
    case DType::F16:                                     \
      return fn<DecF16>(__VA_ARGS__);                    \
    case DType::BF16:                                    \
      return fn<DecBF16>(__VA_ARGS__);                   \
    case DType::Q8_0:                                    \
      return fn<DecQ8_0>(__VA_ARGS__);                   \
    case DType::Q4_0:                                    \
      return fn<DecQ4_0>(__VA_ARGS__);                   \
    case DType::Q4_1:                                    \
      return fn<DecQ4_1>(__VA_ARGS__);                   \
    case DType::Q5_0:                                    \
      return fn<DecQ5_0>(__VA_ARGS__);                   \
    case DType::Q5_1:                                    \
      return fn<DecQ5_1>(__VA_ARGS__);                   \
    default:                                             \
      return dequantize_ref(dtype, nullptr, 0, nullptr); \
  }

}  // namespace

void linear(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  LOWBIT_DISPATCH(run, w.dtype, w, x, m, y)
}

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  LOWBIT_DISPATCH(decode_row, w.dtype, w, row, out)
}

#undef LOWBIT_DISPATCH

}  // namespace lowbit::kernels::cpu::avx512
