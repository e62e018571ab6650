// The CPU KV cache's storage dtypes (engine/kv_cache.h): the fp32 -> FP8 encoder against its
// definition over every code, and the cache's rounding and per-layer FP8 calibration.
#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
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

TEST(KvCache, RoundsThroughItsDtypeAndCalibratesFp8PerLayer) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 2.0f);
  const int64_t layers = 2, heads = 3, hd = 8, n = 5;
  std::vector<float> k(size_t(n * heads * hd)), v(k.size());
  for (auto& x : k) x = g(rng);
  for (auto& x : v) x = 0.01f * g(rng);
  for (KvCacheDtype d :
       {KvCacheDtype::kF32, KvCacheDtype::kBf16, KvCacheDtype::kFp8E4M3, KvCacheDtype::kFp8E5M2}) {
    KvCache cache(layers, heads, hd, 16, d);
    cache.write(1, 2, n, k.data(), v.data());
    auto [ks, vs] = cache.scales(1);
    float kmax = 0, vmax = 0;
    for (float x : k) kmax = std::max(kmax, std::fabs(x));
    for (float x : v) vmax = std::max(vmax, std::fabs(x));
    const bool fp8 = d == KvCacheDtype::kFp8E4M3 || d == KvCacheDtype::kFp8E5M2;
    const float fmax = d == KvCacheDtype::kFp8E4M3 ? 448.0f : 57344.0f;
    if (fp8) {
      EXPECT_FLOAT_EQ(ks, kmax / fmax);
      EXPECT_FLOAT_EQ(vs, vmax / fmax);
      EXPECT_EQ(cache.scales(0).first, 0.0f);  // layer 0 not written yet
    } else {
      EXPECT_EQ(ks, 1.0f);
    }
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd; ++i) {
          const float x = k[size_t((t * heads + h) * hd + i)];
          const float got = cache.keys(1, h)[(2 + t) * hd + i];
          float want = x;
          if (d == KvCacheDtype::kBf16) want = bf16_to_f32(f32_to_bf16(x));
          if (fp8) {
            const bool e4m3 = d == KvCacheDtype::kFp8E4M3;
            want = decode(f32_to_fp8(x / ks, e4m3), e4m3) * ks;
          }
          EXPECT_EQ(got, want) << kv_cache_dtype_name(d) << " t " << t << " h " << h;
          // Relative error of the type: 2^-8 (bf16), 2^-4 (e4m3), 2^-3 (e5m2), plus the
          // subnormal range of FP8 near zero.
          const float tol = d == KvCacheDtype::kF32    ? 0.0f
                            : d == KvCacheDtype::kBf16 ? std::fabs(x) / 256
                            : d == KvCacheDtype::kFp8E4M3
                                ? std::fabs(x) / 16 + ks * std::ldexp(1.0f, -9)
                                : std::fabs(x) / 8 + ks * std::ldexp(1.0f, -16);
          EXPECT_LE(std::fabs(got - x), tol) << kv_cache_dtype_name(d);
        }
    // Later writes keep the layer's scales.
    std::vector<float> big(k.size(), 1000.0f);
    cache.write(1, 7, n, big.data(), big.data());
    EXPECT_EQ(cache.scales(1).first, ks);
    if (fp8) EXPECT_FLOAT_EQ(cache.keys(1, 0)[7 * hd], ks * fmax);  // saturated
  }
  EXPECT_EQ(cpu_kv_cache_dtype("auto"), KvCacheDtype::kF32);
  EXPECT_EQ(cpu_kv_cache_dtype("fp8"), KvCacheDtype::kFp8E4M3);
  EXPECT_THROW(cpu_kv_cache_dtype("int4"), Error);
}

}  // namespace
}  // namespace lowbit::engine
