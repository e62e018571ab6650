#include "kernels/cpu/flash_attn_f16.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lowbit::kernels::cpu {
namespace {

inline float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

// acc = f16(acc · ms) and acc = f16(fma(v, vs, acc)), element by element (the F16 rounding is
// round to nearest even, as ggml's F16C conversions and core/half.h).
void scale_round(float* acc, int64_t n, float ms) {
  for (int64_t d = 0; d < n; ++d) acc[d] = round_f16(acc[d] * ms);
}
void mad_round(float* acc, const float* v, int64_t n, float vs) {
  for (int64_t d = 0; d < n; ++d) acc[d] = round_f16(std::fma(v[d], vs, acc[d]));
}

// ggml_vec_dot_f16 as built for AVX-512 (GGML_F16_STEP 64, 16 lanes × 4 accumulators, fp32
// fused multiply-adds of exact F16 products; accumulators reduced pairwise, then the lanes as
// _mm512_reduce_add_ps: halves, quarters, ...), leftover elements summed in double, the result
// rounded to float. Head sizes below 64 (stories260K: 8) are all leftover.
float dot_f16_ggml(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t(63);
  double sum = 0.0;
  if (np > 0) {
    float acc[4][16] = {};
    for (int64_t i = 0; i < np; i += 64)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 16; ++l)
          acc[j][l] = std::fma(a[i + 16 * j + l], b[i + 16 * j + l], acc[j][l]);
    float r[16];
    for (int l = 0; l < 16; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) r[l] = r[l] + r[l + w];
    sum = double(r[0]);
  }
  for (int64_t i = np; i < n; ++i) sum += double(a[i] * b[i]);
  return float(sum);
}

#if defined(__x86_64__)
// The same with F16C: vcvtps2ph (nearest even) and back, 8 lanes; the tail as above.
__attribute__((target("avx2,f16c,fma"))) inline __m256 round_f16_x8(__m256 x) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
__attribute__((target("avx2,f16c,fma"))) void scale_round_f16c(float* acc, int64_t n, float ms) {
  const __m256 m = _mm256_set1_ps(ms);
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    _mm256_storeu_ps(acc + d, round_f16_x8(_mm256_mul_ps(_mm256_loadu_ps(acc + d), m)));
  scale_round(acc + d, n - d, ms);
}
__attribute__((target("avx2,f16c,fma"))) void mad_round_f16c(float* acc, const float* v, int64_t n,
                                                             float vs) {
  const __m256 s = _mm256_set1_ps(vs);
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    _mm256_storeu_ps(acc + d, round_f16_x8(_mm256_fmadd_ps(_mm256_loadu_ps(v + d), s,
                                                           _mm256_loadu_ps(acc + d))));
  mad_round(acc + d, v + d, n - d, vs);
}
#endif

}  // namespace

void attend_f16_online(const float* q, const float* keys, const float* vals, int64_t len,
                       int64_t hd, float scale, float* out) {
#if defined(__x86_64__)
  static const bool f16c = isa_supported(Isa::kAvx2);  // every AVX2 CPU lowbit runs has F16C/FMA
  auto* scale_fn = f16c ? scale_round_f16c : scale_round;
  auto* mad_fn = f16c ? mad_round_f16c : mad_round;
#else
  auto* scale_fn = scale_round;
  auto* mad_fn = mad_round;
#endif
  thread_local std::vector<float> q16, acc;
  q16.resize(size_t(hd));
  acc.assign(size_t(hd), 0.0f);  // VKQ16: F16 values held in fp32
  for (int64_t d = 0; d < hd; ++d) q16[size_t(d)] = round_f16(q[d]);
  float M = -std::numeric_limits<float>::infinity(), S = 0.0f;
  for (int64_t p = 0; p < len; ++p) {
    // F16 · F16 products are exact in fp32; summed in ggml's order (a last-bit change of a
    // score can move an F16 rounding of the accumulator, and perplexity notices).
    const float s = dot_f16_ggml(q16.data(), keys + p * hd, hd) * scale;
    float ms = 1.0f, vs = 1.0f;
    if (s > M) {  // new maximum: rescale the accumulator, this position weighs expf(0) = 1
      const float m_old = M;
      M = s;
      ms = std::exp(m_old - M);
      scale_fn(acc.data(), hd, ms);
    } else {
      vs = std::exp(s - M);
    }
    mad_fn(acc.data(), vals + p * hd, hd, vs);
    S = S * ms + vs;
  }
  const float s_inv = S == 0.0f ? 0.0f : 1.0f / S;
  for (int64_t d = 0; d < hd; ++d) out[d] = acc[size_t(d)] * s_inv;
}

}  // namespace lowbit::kernels::cpu
