// linear_ggml(): F16 / BF16 weights with activations rounded to the weight type (ggml's CPU
// arithmetic for the `gguf` method), against a plain double-accumulated product of the
// rounded activations, on odd shapes and random non-zero data; F32 weights keep fp32.
#include "kernels/cpu/ggml_linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/half.h"
#include "kernel_test_util.h"
#include "kernels/cpu/dequantize.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::random_floats;
using testing::random_weights;

// Plain reference: each activation rounded through `t` by the scalar codec (core/half.h), then
// a double-accumulated product with the reference-decoded weights. Also returns Σ|w·x| per
// output for the tolerance.
void reference(const WeightMatrix& w, const std::vector<float>& x, int64_t m,
               std::vector<double>& y, std::vector<double>& magnitude) {
  y.assign(size_t(m * w.n), 0.0);
  magnitude.assign(y.size(), 0.0);
  std::vector<float> row(size_t(w.k));
  for (int64_t j = 0; j < w.n; ++j) {
    dequantize_ref(w.dtype,
                   static_cast<const uint8_t*>(w.data) + j * *dtype_bytes(w.dtype, uint64_t(w.k)),
                   w.k, row.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t t = 0; t < w.k; ++t) {
        const float xv = x[size_t(i * w.k + t)];
        const double xr = w.dtype == DType::F16    ? f16_to_f32(f32_to_f16(xv))
                          : w.dtype == DType::BF16 ? bf16_to_f32(f32_to_bf16(xv))
                                                   : xv;
        y[size_t(i * w.n + j)] += double(row[size_t(t)]) * xr;
        magnitude[size_t(i * w.n + j)] += std::fabs(double(row[size_t(t)]) * xr);
      }
  }
}

class GgmlLinear : public ::testing::TestWithParam<DType> {};

TEST_P(GgmlLinear, MatchesRoundedActivationReferenceOnOddShapes) {
  const DType t = GetParam();
  std::mt19937_64 rng(17 + uint64_t(t));
  // (n, k, m): k = 172 is stories260K's ffn_down row; odd k / n; m = 1 (generation) and > 1.
  for (auto [n, k, m] : {std::tuple<int64_t, int64_t, int64_t>{13, 172, 1},
                         {7, 37, 5},
                         {33, 576, 3},
                         {5, 1, 2},
                         {19, 103, 9}}) {
    SCOPED_TRACE(::testing::Message() << name(t) << " n=" << n << " k=" << k << " m=" << m);
    const auto wbytes = random_weights(t, n, k, rng);
    // sd 3: many activations are not representable in BF16 / F16, so rounding matters.
    const auto x = random_floats(size_t(m * k), rng, 3.0f);
    const WeightMatrix w{t, wbytes.data(), n, k};
    std::vector<float> y(size_t(m * n));
    linear_ggml(w, x.data(), m, y.data());
    std::vector<double> ref, mag;
    reference(w, x, m, ref, mag);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], ref[i], 2e-6 * mag[i] + 1e-30) << "output " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GgmlLinear, ::testing::Values(DType::F16, DType::BF16, DType::F32),
                         [](const auto& info) { return std::string(name(info.param)); });

// The rounding differs measurably from fp32 activations (so the test above can tell them
// apart): with k = 172 and activations of sd 3, fp32 and rounded products disagree by more
// than the tolerance for some output.
TEST(GgmlLinear, RoundingIsVisibleForF16AndBf16) {
  for (DType t : {DType::F16, DType::BF16}) {
    std::mt19937_64 rng(5);
    const int64_t n = 11, k = 172, m = 2;
    const auto wbytes = random_weights(t, n, k, rng);
    const auto x = random_floats(size_t(m * k), rng, 3.0f);
    const WeightMatrix w{t, wbytes.data(), n, k};
    std::vector<float> rounded(size_t(m * n)), plain(size_t(m * n));
    linear_ggml(w, x.data(), m, rounded.data());
    linear(w, x.data(), m, plain.data());
    double worst = 0;
    for (size_t i = 0; i < plain.size(); ++i)
      worst = std::max(
          worst, std::fabs(double(rounded[i]) - plain[i]) / (std::fabs(double(plain[i])) + 1.0));
    EXPECT_GT(worst, 1e-5) << name(t);
  }
}

// Round to nearest, ties to even, as ggml's fp32 -> fp16 (F16C, rounding mode 0) and
// fp32 -> bf16 conversions.
TEST(GgmlLinear, RoundsToNearestEven) {
  const float in[] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, -(1.0f + 0x1p-8f), 1.0f + 3 * 0x1p-8f,
                      1.0f + 0x1p-9f};
  float f16[5], bf16[5];
  round_activations_to(DType::F16, in, 5, f16);
  round_activations_to(DType::BF16, in, 5, bf16);
  EXPECT_EQ(f16[0], 1.0f);
  EXPECT_EQ(f16[1], 1.0f + 0x1p-9f);
  EXPECT_EQ(f16[4], 1.0f + 0x1p-9f);
  EXPECT_EQ(bf16[2], -1.0f);
  EXPECT_EQ(bf16[3], 1.0f + 0x1p-6f);
  EXPECT_EQ(bf16[4], 1.0f);
}

}  // namespace
}  // namespace lowbit::kernels::cpu
