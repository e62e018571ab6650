// The statistics of `lowbit eval` against an independent long-double implementation on random
// logits: KL(P_ref || P_q), per-position NLL, top-1 agreement, percentiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "engine/eval.h"

namespace lowbit::testing {
namespace {

std::vector<float> random_logits(size_t n, std::mt19937& rng, float scale, float offset) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = offset + dist(rng);
  return v;
}

// Probabilities by the textbook formula in long double: p_v = exp(x_v) / Σ exp(x_u), with
// the shift by the mean (not the max) so no intermediate is shared with the code under test.
std::vector<long double> softmax_ld(const std::vector<float>& x) {
  long double mean = 0;
  for (float v : x) mean += v;
  mean /= (long double)x.size();
  std::vector<long double> p(x.size());
  long double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += p[i] = std::exp((long double)x[i] - mean);
  for (auto& v : p) v /= sum;
  return p;
}

long double kl_ld(const std::vector<float>& ref, const std::vector<float>& q) {
  auto p = softmax_ld(ref), r = softmax_ld(q);
  long double kl = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) kl += p[i] * (std::log(p[i]) - std::log(r[i]));
  return kl;
}

size_t first_argmax(const std::vector<float>& x) {
  return size_t(std::max_element(x.begin(), x.end()) - x.begin());
}

TEST(EvalStats, KlDivergenceMatchesLongDoubleOnRandomLogits) {
  std::mt19937 rng(7);
  for (size_t vocab : {1, 2, 3, 17, 300, 1025, 32001}) {
    for (float scale : {0.5f, 3.0f, 12.0f}) {
      auto ref = random_logits(vocab, rng, scale, 1.5f);
      // A perturbed copy, as quantization would give, and an unrelated distribution.
      auto near = ref;
      std::normal_distribution<float> noise(0.0f, 0.05f * scale);
      for (auto& x : near) x += noise(rng);
      auto far = random_logits(vocab, rng, scale, -4.0f);
      for (const auto* q : {&near, &far}) {
        double got = engine::kl_divergence(ref, *q);
        long double want = kl_ld(ref, *q);
        EXPECT_NEAR(got, double(want), 1e-11 * std::max(1.0, double(want)) + 1e-14)
            << "vocab " << vocab << " scale " << scale;
        EXPECT_GE(got, -1e-13);
      }
    }
  }
}

TEST(EvalStats, KlDivergenceOfIdenticalLogitsIsExactlyZero) {
  std::mt19937 rng(11);
  auto x = random_logits(4099, rng, 4.0f, 0.0f);
  EXPECT_EQ(engine::kl_divergence(x, x), 0.0);
  // Softmax ignores a common shift; large offsets must not overflow.
  auto shifted = x;
  for (auto& v : shifted) v += 2000.0f;
  EXPECT_NEAR(engine::kl_divergence(x, shifted), 0.0, 1e-9);
  EXPECT_TRUE(std::isfinite(engine::kl_divergence(shifted, x)));
}

TEST(EvalStats, MaskedLogitsAddNothing) {
  std::vector<float> ref = {1.0f, -INFINITY, 0.5f, 2.0f}, q = {1.1f, -INFINITY, 0.4f, 2.0f};
  std::vector<float> ref3 = {1.0f, 0.5f, 2.0f}, q3 = {1.1f, 0.4f, 2.0f};
  EXPECT_NEAR(engine::kl_divergence(ref, q), engine::kl_divergence(ref3, q3), 1e-15);
  // The quantized model ruling out a token the reference allows: infinite divergence.
  std::vector<float> q_masked = {1.1f, 0.4f, -INFINITY, 2.0f};
  EXPECT_EQ(engine::kl_divergence(ref, q_masked), INFINITY);
}

TEST(EvalStats, KlDivergenceRejectsMismatchedSizes) {
  std::vector<float> a(5, 1.0f), b(6, 1.0f);
  EXPECT_THROW(engine::kl_divergence(a, b), Error);
  EXPECT_THROW(engine::kl_divergence({}, {}), Error);
}

TEST(EvalStats, ComparisonAccumulatesNllKldAndTop1) {
  std::mt19937 rng(3);
  const size_t vocab = 257, positions = 41;
  engine::DistributionComparison stats;
  long double nll = 0, nll_ref = 0, kld_sum = 0;
  int same = 0;
  std::vector<double> klds;
  std::uniform_int_distribution<int32_t> token(0, int32_t(vocab) - 1);
  for (size_t i = 0; i < positions; ++i) {
    auto ref = random_logits(vocab, rng, 2.0f, 0.3f);
    auto q = ref;
    std::normal_distribution<float> noise(0.0f, i % 3 == 0 ? 1.0f : 0.1f);
    for (auto& x : q) x += noise(rng);
    int32_t target = token(rng);
    stats.add(q, ref, target);
    nll -= std::log(softmax_ld(q)[size_t(target)]);
    nll_ref -= std::log(softmax_ld(ref)[size_t(target)]);
    long double kl = kl_ld(ref, q);
    kld_sum += kl;
    klds.push_back(double(kl));
    same += first_argmax(q) == first_argmax(ref);
  }
  ASSERT_EQ(stats.positions(), int64_t(positions));
  // The NLL subtracts the max logit in float, as engine::perplexity does (~1e-7 relative).
  EXPECT_NEAR(stats.nll_mean(), double(nll / positions), 1e-6);
  EXPECT_NEAR(stats.nll_mean_reference(), double(nll_ref / positions), 1e-6);
  EXPECT_NEAR(stats.ppl(), std::exp(double(nll / positions)), 1e-6 * stats.ppl());
  EXPECT_NEAR(stats.kld_mean(), double(kld_sum / positions), 1e-12);
  EXPECT_DOUBLE_EQ(stats.top1(), double(same) / positions);
  EXPECT_GT(same, 0);
  EXPECT_LT(same, int(positions));  // the noisy rows must disagree somewhere
  EXPECT_NEAR(stats.kld_percentile(0.99), engine::percentile(klds, 0.99), 1e-10);
}

TEST(EvalStats, ComparisonRejectsBadInput) {
  engine::DistributionComparison stats;
  std::vector<float> a(10, 0.5f), b(11, 0.5f);
  EXPECT_THROW(stats.add(a, b, 0), Error);
  EXPECT_THROW(stats.add(a, a, 10), Error);
  EXPECT_THROW(stats.add(a, a, -1), Error);
  std::vector<float> nan_row(10, 0.5f), inf_row(10, 0.5f);
  nan_row[3] = std::nanf("");
  inf_row[7] = INFINITY;
  EXPECT_THROW(stats.add(nan_row, a, 0), Error);
  EXPECT_THROW(stats.add(a, inf_row, 0), Error);
  EXPECT_EQ(stats.positions(), 0);
  EXPECT_EQ(stats.kld_mean(), 0.0);
  EXPECT_EQ(stats.top1(), 0.0);
}

TEST(EvalStats, PercentileInterpolatesBetweenOrderStatistics) {
  EXPECT_EQ(engine::percentile({}, 0.5), 0.0);
  EXPECT_EQ(engine::percentile({7.0}, 0.99), 7.0);
  std::vector<double> v = {5, 1, 4, 2, 3};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(engine::percentile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(engine::percentile(v, 0.5), 3.0);
  EXPECT_DOUBLE_EQ(engine::percentile(v, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(engine::percentile(v, 0.99), 4.96);  // 4 + 0.96 × (5 - 4)
  EXPECT_DOUBLE_EQ(engine::percentile(v, 0.3), 2.2);
  EXPECT_DOUBLE_EQ(engine::percentile(v, 1.5), 5.0);  // clamped
}

}  // namespace
}  // namespace lowbit::testing
