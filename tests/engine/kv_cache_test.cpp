// The CPU KV cache's storage dtypes (engine/kv_cache.h): the fp32 -> FP8 encoder against its
// definition over every code, and the cache's rounding and FP8 calibration per head or layer.
#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"

namespace lowbit::engine {
namespace {

float decode(uint8_t c, bool e4m3) { return e4m3 ? fp8_e4m3_to_f32(c) : fp8_e5m2_to_f32(c); }

TEST(Fp8Encode, RoundsToNearestEvenAndSaturates) {
  for (bool e4m3 : {true, false}) {
    const int max_code = e4m3 ? 0x7e : 0x7b;
    for (int c = 0; c <= max_code; ++c) {
      const float v = decode(uint8_t(c), e4m3);
      EXPECT_EQ(f32_to_fp8(v, e4m3), c) << "exact value " << v;
      EXPECT_EQ(f32_to_fp8(-v, e4m3), c | 0x80) << "exact value " << -v;
      if (c == max_code) continue;
      const float next = decode(uint8_t(c + 1), e4m3);
      const float mid = 0.5f * (v + next);  // exact in fp32 for these small formats
      EXPECT_EQ(f32_to_fp8(mid, e4m3), c % 2 == 0 ? c : c + 1) << "tie " << mid;
      EXPECT_EQ(f32_to_fp8(std::nextafter(mid, 0.0f), e4m3), c) << "below tie " << mid;
      EXPECT_EQ(f32_to_fp8(std::nextafter(mid, INFINITY), e4m3), c + 1) << "above tie " << mid;
    }
    const float max = decode(uint8_t(max_code), e4m3);
    EXPECT_EQ(f32_to_fp8(max * 4, e4m3), max_code);
    EXPECT_EQ(f32_to_fp8(-INFINITY, e4m3), max_code | 0x80);
    EXPECT_TRUE(std::isnan(decode(f32_to_fp8(NAN, e4m3), e4m3)));
  }
}

// max |x| of kv head h over rows [n, heads, hd].
float head_amax(const std::vector<float>& x, int64_t n, int64_t heads, int64_t hd, int64_t h) {
  float m = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hd; ++i)
      m = std::max(m, std::fabs(x[size_t((t * heads + h) * hd + i)]));
  return m;
}

TEST(KvCache, RoundsThroughItsDtypeAndCalibratesFp8PerHeadOrLayer) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 2.0f);
  const int64_t layers = 2, heads = 3, hd = 8, n = 5;
  std::vector<float> k(size_t(n * heads * hd)), v(k.size());
  // Heads of different ranges (as in real models), so per-head and per-layer scales differ.
  for (size_t i = 0; i < k.size(); ++i) {
    const float head_range = 1.0f + 3.0f * float((i / hd) % heads);
    k[i] = g(rng) * head_range;
    v[i] = 0.01f * g(rng) / head_range;
  }
  for (KvScaleGranularity gran : {KvScaleGranularity::kHead, KvScaleGranularity::kTensor})
    for (KvCacheDtype d : {KvCacheDtype::kF32, KvCacheDtype::kBf16, KvCacheDtype::kFp8E4M3,
                           KvCacheDtype::kFp8E5M2}) {
      const std::string what =
          std::string(kv_cache_dtype_name(d)) + " per " + kv_scale_granularity_name(gran);
      KvCache cache(layers, heads, hd, 16, d, std::make_shared<KvScales>(layers, heads, gran));
      cache.write(1, 2, n, k.data(), v.data());
      const bool fp8 = d == KvCacheDtype::kFp8E4M3 || d == KvCacheDtype::kFp8E5M2;
      const float fmax = d == KvCacheDtype::kFp8E4M3 ? 448.0f : 57344.0f;
      float kall = 0, vall = 0;
      for (int64_t h = 0; h < heads; ++h) {
        kall = std::max(kall, head_amax(k, n, heads, hd, h));
        vall = std::max(vall, head_amax(v, n, heads, hd, h));
      }
      for (int64_t h = 0; h < heads; ++h) {
        auto [ks, vs] = cache.scales(1, h);
        if (!fp8) {
          EXPECT_EQ(ks, 1.0f) << what;
          continue;
        }
        const bool per_head = gran == KvScaleGranularity::kHead;
        EXPECT_FLOAT_EQ(ks, (per_head ? head_amax(k, n, heads, hd, h) : kall) / fmax) << what;
        EXPECT_FLOAT_EQ(vs, (per_head ? head_amax(v, n, heads, hd, h) : vall) / fmax) << what;
        EXPECT_EQ(cache.scales(0, h).first, 0.0f);  // layer 0 not written yet
      }
      for (int64_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < hd; ++i) {
            const float ks = cache.scales(1, h).first;
            const float x = k[size_t((t * heads + h) * hd + i)];
            const float got = cache.keys(1, h)[(2 + t) * hd + i];
            float want = x;
            if (d == KvCacheDtype::kBf16) want = bf16_to_f32(f32_to_bf16(x));
            if (fp8) {
              const bool e4m3 = d == KvCacheDtype::kFp8E4M3;
              want = decode(f32_to_fp8(x / ks, e4m3), e4m3) * ks;
            }
            EXPECT_EQ(got, want) << what << " t " << t << " h " << h;
            // Relative error of the type: 2^-8 (bf16), 2^-4 (e4m3), 2^-3 (e5m2), plus the
            // subnormal range of FP8 near zero.
            const float tol = d == KvCacheDtype::kF32    ? 0.0f
                              : d == KvCacheDtype::kBf16 ? std::fabs(x) / 256
                              : d == KvCacheDtype::kFp8E4M3
                                  ? std::fabs(x) / 16 + ks * std::ldexp(1.0f, -9)
                                  : std::fabs(x) / 8 + ks * std::ldexp(1.0f, -16);
            EXPECT_LE(std::fabs(got - x), tol) << what;
          }
      // Later writes keep the layer's scales.
      const float ks0 = cache.scales(1, 0).first;
      std::vector<float> big(k.size(), 1000.0f);
      cache.write(1, 7, n, big.data(), big.data());
      EXPECT_EQ(cache.scales(1, 0).first, ks0);
      if (fp8) EXPECT_FLOAT_EQ(cache.keys(1, 0)[7 * hd], ks0 * fmax) << what;  // saturated
    }
  EXPECT_EQ(cpu_kv_cache_dtype("auto"), KvCacheDtype::kF32);
  EXPECT_EQ(cpu_kv_cache_dtype("fp8"), KvCacheDtype::kFp8E4M3);
  EXPECT_THROW(cpu_kv_cache_dtype("int4"), Error);
  EXPECT_EQ(kv_scale_granularity("auto"), KvScaleGranularity::kTensor);
  EXPECT_EQ(kv_scale_granularity("head"), KvScaleGranularity::kHead);
  EXPECT_EQ(kv_scale_granularity("tensor"), KvScaleGranularity::kTensor);
  EXPECT_THROW(kv_scale_granularity("channel"), Error);
}

// Caches sharing one KvScales (a model's) keep the first cache's calibration; given scales
// (a checkpoint's) are used as they are, never recalibrated.
TEST(KvCache, SharedScalesAreKeptAcrossCaches) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  const int64_t layers = 1, heads = 2, hd = 4, n = 3;
  std::vector<float> k(size_t(n * heads * hd)), v(k.size());
  for (auto& x : k) x = u(rng);
  for (auto& x : v) x = u(rng);
  auto shared = std::make_shared<KvScales>(layers, heads, KvScaleGranularity::kHead);
  KvCache first(layers, heads, hd, 8, KvCacheDtype::kFp8E4M3, shared);
  first.write(0, 0, n, k.data(), v.data());
  const auto calibrated = first.scales(0, 1);
  std::vector<float> other(k.size());
  for (auto& x : other) x = 10.0f * u(rng);
  KvCache second(layers, heads, hd, 8, KvCacheDtype::kFp8E4M3, shared);
  second.write(0, 0, n, other.data(), other.data());
  EXPECT_EQ(second.scales(0, 1), calibrated);

  auto given = std::make_shared<KvScales>(layers, heads, KvScaleGranularity::kHead);
  given->k = {0.5f, 0.25f};
  given->v = {0.125f, 2.0f};
  given->from_checkpoint = true;
  KvCache third(layers, heads, hd, 8, KvCacheDtype::kFp8E4M3, given);
  third.write(0, 0, n, k.data(), v.data());
  EXPECT_EQ(third.scales(0, 0), std::make_pair(0.5f, 0.125f));
  EXPECT_EQ(third.scales(0, 1), std::make_pair(0.25f, 2.0f));
  const float x = k[size_t(hd + 1)];  // t 0, head 1, dim 1
  EXPECT_EQ(third.keys(0, 1)[1], fp8_e4m3_to_f32(f32_to_fp8(x / 0.25f, true)) * 0.25f);
}

}  // namespace
}  // namespace lowbit::engine
