// AVX2 + FMA + F16C variant of linear(); same structure as linear_avx512.cpp with 8-wide
// vectors and 16 registers:
//   m == 1: rows_dot streams 2 weight rows at a time, each 32-element block decoded into four
//           ymm registers (8 independent accumulators).
//   m  > 1: 4 weight rows × kKC columns decoded once into an L1 buffer, then a 2×4
//           register-blocked micro-kernel over all activation rows.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/half.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/isa_kernels.h"

namespace lowbit::kernels::cpu::avx2 {
namespace {

// ---- Block decoders: 32 elements -> v[0..3] (8 elements each, in order). ---------------

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline __m128i load128(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m256 i32_to_ps(__m256i v) { return _mm256_cvtepi32_ps(v); }

// 16 bytes of nibbles -> the 32 4-bit values as 4 × 8 int32 (low nibbles first).
inline void nibbles(const uint8_t* qs, __m256i q[4]) {
  const __m128i b = load128(qs), mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  q[0] = _mm256_cvtepu8_epi32(lo);
  q[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
  q[2] = _mm256_cvtepu8_epi32(hi);
  q[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}
// Adds 16 to element j where bit j of qh (u32 LE) is set.
inline void add_fifth_bit(const uint8_t* qh_p, __m256i q[4]) {
  uint32_t qh;
  std::memcpy(&qh, qh_p, 4);
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (int g = 0; g < 4; ++g) {
    const __m256i v = _mm256_and_si256(_mm256_set1_epi32(int((qh >> (8 * g)) & 0xFF)), bits);
    const __m256i set = _mm256_cmpeq_epi32(v, bits);
    q[g] = _mm256_or_si256(q[g], _mm256_and_si256(set, _mm256_set1_epi32(16)));
  }
}

struct DecF32 {
  static constexpr int kBytes = 128;
  static constexpr bool kPlain = true;
  static void decode(const uint8_t* p, __m256 v[4]) {
    for (int g = 0; g < 4; ++g) v[g] = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8 * g);
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
  static void decode(const uint8_t* p, __m256 v[4]) {
    for (int g = 0; g < 4; ++g) v[g] = _mm256_cvtph_ps(load128(p + 16 * g));
  }
  static float scalar(const uint8_t* row, int64_t i) { return load_f16(row + 2 * i); }
};
struct DecBF16 {
  static constexpr int kBytes = 64;
  static constexpr bool kPlain = true;
  static void decode(const uint8_t* p, __m256 v[4]) {
    for (int g = 0; g < 4; ++g)
      v[g] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p + 16 * g)), 16));
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
  static void decode(const uint8_t* p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_f16(p));
    for (int g = 0; g < 4; ++g) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + 8 * g));
      v[g] = _mm256_mul_ps(i32_to_ps(_mm256_cvtepi8_epi32(q)), d);
    }
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ4_0 {
  static constexpr int kBytes = 18;
  static constexpr bool kPlain = false;
  static void decode(const uint8_t* p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_f16(p));
    __m256i q[4];
    nibbles(p + 2, q);
    for (int g = 0; g < 4; ++g)
      v[g] = _mm256_mul_ps(i32_to_ps(_mm256_sub_epi32(q[g], _mm256_set1_epi32(8))), d);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ4_1 {
  static constexpr int kBytes = 20;
  static constexpr bool kPlain = false;
  static void decode(const uint8_t* p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_f16(p)), m = _mm256_set1_ps(load_f16(p + 2));
    __m256i q[4];
    nibbles(p + 4, q);
    // q·d is exact, so the fused q·d + m rounds once, like ggml's separate mul and add.
    for (int g = 0; g < 4; ++g) v[g] = _mm256_fmadd_ps(i32_to_ps(q[g]), d, m);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ5_0 {
  static constexpr int kBytes = 22;
  static constexpr bool kPlain = false;
  static void decode(const uint8_t* p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_f16(p));
    __m256i q[4];
    nibbles(p + 6, q);
    add_fifth_bit(p + 2, q);
    for (int g = 0; g < 4; ++g)
      v[g] = _mm256_mul_ps(i32_to_ps(_mm256_sub_epi32(q[g], _mm256_set1_epi32(16))), d);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};
struct DecQ5_1 {
  static constexpr int kBytes = 24;
  static constexpr bool kPlain = false;
  static void decode(const uint8_t* p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_f16(p)), m = _mm256_set1_ps(load_f16(p + 2));
    __m256i q[4];
    nibbles(p + 8, q);
    add_fifth_bit(p + 4, q);
    for (int g = 0; g < 4; ++g) v[g] = _mm256_fmadd_ps(i32_to_ps(q[g]), d, m);
  }
  static float scalar(const uint8_t*, int64_t) { return 0; }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- m == 1 ---------------------------------------------------------------------------

template <class Dec, int R>
void rows_dot(const uint8_t* w0, size_t row_bytes, const float* x, int64_t k, float* out) {
  const int64_t nb = k / 32;
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < 4; ++g) acc[r][g] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w0 + r * row_bytes + b * Dec::kBytes;
      // Low byte rate per row stream: prefetch hides DRAM latency (see linear_avx512.cpp).
      if constexpr (!Dec::kPlain)
        _mm_prefetch(reinterpret_cast<const char*>(blk) + 1024, _MM_HINT_T0);
      __m256 v[4];
      Dec::decode(blk, v);
      for (int g = 0; g < 4; ++g)
        acc[r][g] = _mm256_fmadd_ps(v[g], _mm256_loadu_ps(x + 32 * b + 8 * g), acc[r][g]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(
        _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
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
  const int64_t groups = (w.n + 1) / 2;
#pragma omp parallel for schedule(static) if (w.n * w.k > (int64_t(1) << 16))
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = 2 * g;
    const uint8_t* p = base + size_t(r0) * row_bytes;
    if (w.n - r0 >= 2) {
      rows_dot<Dec, 2>(p, row_bytes, x, w.k, y + r0);
    } else {
      rows_dot<Dec, 1>(p, row_bytes, x, w.k, y + r0);
    }
  }
}

// ---- m > 1 ----------------------------------------------------------------------------

constexpr int kNR = 4;
constexpr int64_t kKC = 1024;  // 4 × 1024 × 4 B = 16 KiB tile (L1)
constexpr int64_t kMC = 64;    // 64 × 1024 × 4 B = 256 KiB activation panel (L2)
constexpr int64_t kLdb = kKC + 8;

template <class Dec>
void decode_tile(const uint8_t* row0, size_t row_bytes, int rows, int64_t k0, int64_t len,
                 float* buf) {
  const int64_t full = len / 32 * 32, padded = (len + 7) / 8 * 8;
  for (int r = 0; r < kNR; ++r) {
    float* dst = buf + r * kLdb;
    if (r >= rows) {
      std::memset(dst, 0, size_t(padded) * 4);
      continue;
    }
    const uint8_t* src = row0 + r * row_bytes + k0 / 32 * Dec::kBytes;
    for (int64_t t = 0; t < full; t += 32, src += Dec::kBytes) {
      __m256 v[4];
      Dec::decode(src, v);
      for (int g = 0; g < 4; ++g) _mm256_store_ps(dst + t + 8 * g, v[g]);
    }
    int64_t t = full;
    if constexpr (Dec::kPlain) {
      for (; t < len; ++t) dst[t] = Dec::scalar(row0 + r * row_bytes, k0 + t);
    }
    for (; t < padded; ++t) dst[t] = 0.0f;
  }
}

template <int MR>
void micro(const float* x, int64_t ldx, const float* buf, int64_t len, float* y, int64_t ldy,
           int nr, bool accumulate) {
  __m256 acc[MR][kNR];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kNR; ++r) acc[i][r] = _mm256_setzero_ps();
  int64_t t = 0;
  for (; t + 8 <= len; t += 8) {
    __m256 wv[kNR];
    for (int r = 0; r < kNR; ++r) wv[r] = _mm256_load_ps(buf + r * kLdb + t);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * ldx + t);
      for (int r = 0; r < kNR; ++r) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  if (t < len) {
    // Masked loads: never read past the end of an activation row (a NaN there would leak).
    const int left = int(len - t);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 wv[kNR];
    for (int r = 0; r < kNR; ++r) wv[r] = _mm256_load_ps(buf + r * kLdb + t);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_maskload_ps(x + i * ldx + t, mask);
      for (int r = 0; r < kNR; ++r) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < nr; ++r) {
      const float s = hsum(acc[i][r]);
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
    alignas(32) float buf[kNR * kLdb];
    for (int64_t i0 = 0; i0 < m; i0 += kMC) {
      const int64_t mc = std::min(kMC, m - i0);
      for (int64_t k0 = 0; k0 < w.k; k0 += kKC) {
        const int64_t len = std::min(kKC, w.k - k0);
        // Same trip count each pass: static scheduling keeps each thread on the same tiles.
#pragma omp for schedule(static) nowait
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int64_t r0 = tile * kNR;
          const int nr = int(std::min<int64_t>(kNR, w.n - r0));
          decode_tile<Dec>(base + size_t(r0) * row_bytes, row_bytes, nr, k0, len, buf);
          const bool acc = k0 > 0;
          int64_t i = 0;
          for (; i + 2 <= mc; i += 2)
            micro<2>(x + (i0 + i) * w.k + k0, w.k, buf, len, y + (i0 + i) * w.n + r0, w.n, nr, acc);
          if (i < mc)
            micro<1>(x + (i0 + i) * w.k + k0, w.k, buf, len, y + (i0 + i) * w.n + r0, w.n, nr, acc);
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
    __m256 v[4];
    Dec::decode(p + t / 32 * Dec::kBytes, v);
    for (int g = 0; g < 4; ++g) _mm256_storeu_ps(out + t + 8 * g, v[g]);
  }
  if constexpr (Dec::kPlain) {
    for (int64_t t = full; t < w.k; ++t) out[t] = Dec::scalar(p, t);
  }
}

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

}  // namespace lowbit::kernels::cpu::avx2
