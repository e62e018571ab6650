// attend_f16_online(): ggml's CPU flash attention with F16 K/V, against (1) a plain restatement
// of ggml_compute_forward_flash_attn_ext_f16_one_chunk's F16 arithmetic (the same up to the
// order of the score sums) and (2) exact softmax attention in double (within F16 accumulation
// error), on random non-zero data and odd lengths / head sizes.
#include "kernels/cpu/flash_attn_f16.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/half.h"

namespace lowbit::kernels::cpu {
namespace {

float h(float x) { return f16_to_f32(f32_to_f16(x)); }

// ggml's loop, written out: Q to F16, F16 dot in fp32, online softmax, F16 VKQ accumulator.
std::vector<float> restated(const std::vector<float>& q, const std::vector<float>& k,
                            const std::vector<float>& v, int64_t len, int64_t hd, float scale) {
  std::vector<float> vkq(size_t(hd), 0.0f);
  float M = -INFINITY, S = 0;
  for (int64_t p = 0; p < len; ++p) {
    float s = 0;
    for (int64_t d = 0; d < hd; ++d) s += h(q[size_t(d)]) * k[size_t(p * hd + d)];
    s *= scale;
    float ms = 1, vs = 1;
    if (s > M) {
      const float old = M;
      M = s;
      ms = std::exp(old - M);
      for (auto& a : vkq) a = h(a * ms);
    } else {
      vs = std::exp(s - M);
    }
    for (int64_t d = 0; d < hd; ++d)
      vkq[size_t(d)] = h(std::fma(v[size_t(p * hd + d)], vs, vkq[size_t(d)]));
    S = S * ms + vs;
  }
  for (auto& a : vkq) a *= 1.0f / S;
  return vkq;
}

TEST(FlashAttnF16, MatchesGgmlRestatementAndExactAttention) {
  std::mt19937_64 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto [len, hd] : {std::pair<int64_t, int64_t>{1, 64}, {7, 13}, {33, 64}, {300, 48}}) {
    SCOPED_TRACE(::testing::Message() << "len=" << len << " hd=" << hd);
    std::vector<float> q(static_cast<size_t>(hd)), k(static_cast<size_t>(len * hd)), v(k.size());
    for (auto& x : q) x = 2.0f * normal(rng);
    for (auto& x : k) x = h(normal(rng));  // an f16 cache holds F16 values
    for (auto& x : v) x = h(normal(rng));
    const float scale = 1.0f / std::sqrt(float(hd));
    std::vector<float> out(static_cast<size_t>(hd));
    attend_f16_online(q.data(), k.data(), v.data(), len, hd, scale, out.data());
    const auto want = restated(q, k, v, len, hd, scale);
    // Exact attention (double softmax over the F16 values and the unrounded query).
    std::vector<double> w(static_cast<size_t>(len));
    double mx = -INFINITY, sum = 0;
    for (int64_t p = 0; p < len; ++p) {
      double s = 0;
      for (int64_t d = 0; d < hd; ++d) s += double(q[size_t(d)]) * k[size_t(p * hd + d)];
      w[size_t(p)] = s * scale;
      mx = std::max(mx, w[size_t(p)]);
    }
    for (auto& x : w) sum += (x = std::exp(x - mx));
    for (int64_t d = 0; d < hd; ++d) {
      double exact = 0;
      for (int64_t p = 0; p < len; ++p) exact += w[size_t(p)] / sum * v[size_t(p * hd + d)];
      // Same arithmetic up to the score sum's order (dot_f32's SIMD order): a last-bit change
      // of a score may move an F16 rounding of the accumulator, so allow two F16 ulps.
      ASSERT_NEAR(out[size_t(d)], want[size_t(d)], 2e-3 * std::fabs(want[size_t(d)]) + 1e-6)
          << "d=" << d;
      // F16 accumulation: a few F16 ulps of the running sum (values ~1, sum of weights ≥ 1).
      EXPECT_NEAR(out[size_t(d)], exact, 4e-3 * std::sqrt(double(len)) + 2e-3) << "d=" << d;
    }
  }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
