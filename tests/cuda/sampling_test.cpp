// GPU sampling (kernels/cuda/ops/sampling.h) against its definition computed on the CPU in
// double: the kept set (top-k with ties, then the top-p prefix of the sorted probabilities) and
// the draw (first token in vocabulary order whose running mass passes u·Z). Uniforms are put in
// the middle of a token's interval so fp32 summation order cannot change the answer.
#include "kernels/cuda/ops/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "cuda_test_util.h"

namespace lowbit::test {
namespace {

struct Expected {
  std::vector<double> mass;  // per token: exp((x - max) / T) if kept, else 0
  double total = 0;
};

Expected kept_mass(const std::vector<float>& x, const kc::SamplingConfig& c) {
  const size_t v = x.size();
  std::vector<float> sorted(x);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  float floor = -INFINITY;
  if (c.top_k > 0 && size_t(c.top_k) < v) floor = sorted[size_t(c.top_k) - 1];
  const double m = sorted[0];
  auto p = [&](float t) { return std::exp((double(t) - m) / c.temperature); };
  if (c.top_p < 1.0f) {
    double z = 0;
    for (float t : sorted)
      if (t >= floor) z += p(t);
    double acc = 0;
    for (float t : sorted) {  // descending: the first value where the mass reaches top_p · Z
      if (t < floor) break;
      acc += p(t);
      if (acc >= c.top_p * z) {
        floor = t;
        break;
      }
    }
  }
  Expected e;
  e.mass.assign(v, 0.0);
  for (size_t i = 0; i < v; ++i)
    if (x[i] >= floor) e.mass[i] = p(x[i]), e.total += e.mass[i];
  return e;
}

// A uniform that lands in the middle of token `pick`'s interval.
float uniform_for(const Expected& e, size_t pick) {
  double before = 0;
  for (size_t i = 0; i < pick; ++i) before += e.mass[i];
  return float((before + 0.5 * e.mass[pick]) / e.total);
}

std::vector<int32_t> run(const std::vector<float>& logits, int64_t rows, int64_t vocab,
                         const kc::SamplingConfig& c, const std::vector<float>& u) {
  auto dl = upload(logits);
  auto du = upload(u);
  kc::DeviceBuffer ids(size_t(rows) * 4, "ids");
  kc::sample_rows(dl.get<float>(), vocab, rows, vocab, c, du.get<float>(), ids.get<int32_t>(),
                  nullptr);
  return download<int32_t>(ids, size_t(rows));
}

TEST(CudaSampling, DrawsTheTokenItsUniformSelects) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(5);
  const kc::SamplingConfig configs[] = {{1.0f, 0, 1.0f},   {0.7f, 40, 1.0f},     {1.3f, 0, 0.9f},
                                        {0.8f, 50, 0.95f}, {1.0f, 100000, 0.5f}, {2.0f, 1, 1.0f}};
  for (int64_t vocab : {1, 7, 1000, 32003, 151936}) {
    for (const auto& c : configs) {
      const int64_t rows = 5;
      std::vector<float> logits = random_floats(size_t(rows * vocab), rng, -8.0f, 8.0f);
      std::vector<float> u(static_cast<size_t>(rows));
      std::vector<int32_t> want(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        Expected e = kept_mass(row, c);
        std::vector<size_t> kept;
        for (size_t i = 0; i < row.size(); ++i)
          if (e.mass[i] > 0) kept.push_back(i);
        ASSERT_FALSE(kept.empty());
        // Only tokens with a visible share: an interval of a few ulps could move.
        std::vector<size_t> visible;
        for (size_t i : kept)
          if (e.mass[i] / e.total > 1e-4) visible.push_back(i);
        if (visible.empty()) visible = kept;
        const size_t pick =
            visible[std::uniform_int_distribution<size_t>(0, visible.size() - 1)(rng)];
        want[size_t(r)] = int32_t(pick);
        u[size_t(r)] = uniform_for(e, pick);
      }
      EXPECT_EQ(run(logits, rows, vocab, c, u), want)
          << "vocab " << vocab << " T " << c.temperature << " k " << c.top_k << " p " << c.top_p;
    }
  }
}

TEST(CudaSampling, FrequenciesFollowTheKeptDistribution) {
  LOWBIT_REQUIRE_GPU();
  const std::vector<float> row = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f, 3.0f, -4.0f, 1.0f, 2.5f, -0.5f};
  const kc::SamplingConfig c{0.9f, 6, 0.9f};
  const int64_t rows = 8192, vocab = int64_t(row.size());
  std::vector<float> logits, u;
  for (int64_t r = 0; r < rows; ++r) {
    logits.insert(logits.end(), row.begin(), row.end());
    u.push_back((float(r) + 0.5f) / float(rows));  // an even grid over [0, 1)
  }
  auto ids = run(logits, rows, vocab, c, u);
  Expected e = kept_mass(row, c);
  std::vector<int> count(row.size(), 0);
  for (int32_t id : ids) ++count[size_t(id)];
  for (size_t i = 0; i < row.size(); ++i)
    EXPECT_NEAR(count[i] / double(rows), e.mass[i] / e.total, 2.0 / rows) << "token " << i;
}

TEST(CudaSampling, NeverDrawsNaNAndRejectsBadConfig) {
  LOWBIT_REQUIRE_GPU();
  std::vector<float> row(300, NAN);
  row[17] = 1.0f;
  row[250] = 1.0f;
  auto ids = run(row, 1, 300, {1.0f, 0, 1.0f}, {0.99f});
  EXPECT_TRUE(ids[0] == 17 || ids[0] == 250) << ids[0];
  auto d = upload(row);
  kc::DeviceBuffer out(4, "ids");
  EXPECT_THROW(kc::sample_rows(d.get<float>(), 300, 1, 300, {0.0f, 0, 1.0f}, d.get<float>(),
                               out.get<int32_t>(), nullptr),
               Error);
  EXPECT_THROW(kc::sample_rows(d.get<float>(), 300, 1, 300, {1.0f, 0, 1.5f}, d.get<float>(),
                               out.get<int32_t>(), nullptr),
               Error);
}

}  // namespace
}  // namespace lowbit::test
