// fp32 vector helpers (vec.h) at every SIMD level against float64 references, odd lengths.
#include "kernels/cpu/vec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernel_test_util.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;

const int64_t kLengths[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 127, 1025, 4099};

TEST(Vec, Dot) {
  std::mt19937_64 rng(1);
  for (int64_t n : kLengths) {
    auto a = random_floats(size_t(n), rng), b = random_floats(size_t(n), rng);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += double(a[size_t(i)]) * b[size_t(i)];
      mag += std::abs(double(a[size_t(i)]) * b[size_t(i)]);
    }
    for (Isa isa : available_isas())
      EXPECT_NEAR(dot_f32_isa(isa, a.data(), b.data(), n), ref, 1e-6 * mag + 1e-30)
          << isa_name(isa) << " n=" << n;
  }
}

TEST(Vec, AxpyTouchesOnlyN) {
  std::mt19937_64 rng(2);
  for (int64_t n : kLengths) {
    auto x = random_floats(size_t(n), rng), y0 = random_floats(size_t(n) + 1, rng);
    for (Isa isa : available_isas()) {
      auto y = y0;
      axpy_f32_isa(isa, 0.37f, x.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = double(y0[size_t(i)]) + double(0.37f) * x[size_t(i)];
        EXPECT_NEAR(y[size_t(i)], ref, 1e-6 * (std::abs(ref) + std::abs(x[size_t(i)])))
            << isa_name(isa) << " n=" << n << " i=" << i;
      }
      EXPECT_EQ(y[size_t(n)], y0[size_t(n)]) << "wrote past n";
    }
  }
}

TEST(Vec, RmsNorm) {
  std::mt19937_64 rng(3);
  for (int64_t n : kLengths) {
    auto x = random_floats(size_t(n), rng, 3.0f), w = random_floats(size_t(n), rng);
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / double(n) + 1e-6);
    for (Isa isa : available_isas()) {
      for (bool with_w : {true, false}) {
        std::vector<float> out(size_t(n) + 1, 99.0f);
        rms_norm_f32_isa(isa, x.data(), with_w ? w.data() : nullptr, 1e-6f, out.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const double ref = double(x[size_t(i)]) * inv * (with_w ? double(w[size_t(i)]) : 1.0);
          EXPECT_NEAR(out[size_t(i)], ref, 1e-6 * std::abs(ref) + 1e-30)
              << isa_name(isa) << " n=" << n << " i=" << i;
        }
        EXPECT_EQ(out[size_t(n)], 99.0f);
      }
      // In place.
      auto y = x;
      rms_norm_f32_isa(isa, y.data(), w.data(), 1e-6f, y.data(), n);
      std::vector<float> z(static_cast<size_t>(n));
      rms_norm_f32_isa(isa, x.data(), w.data(), 1e-6f, z.data(), n);
      EXPECT_EQ(y, z);
    }
  }
}

TEST(Vec, Softmax) {
  std::mt19937_64 rng(4);
  for (int64_t n : kLengths) {
    auto x0 = random_floats(size_t(n), rng, 4.0f);
    if (n > 2) x0[1] = -std::numeric_limits<float>::infinity();  // a masked position
    double mx = -INFINITY, sum = 0;
    for (float v : x0) mx = std::max(mx, double(v));
    // x − max is rounded to fp32 first, as PyTorch (and any fp32 softmax) does; for the
    // far tail that rounding alone is worth |x − max|·2^-24 relative.
    auto shifted = [&](float v) { return double(v - float(mx)); };
    for (float v : x0) sum += std::exp(shifted(v));
    for (Isa isa : available_isas()) {
      auto x = x0;
      softmax_f32_isa(isa, x.data(), n);
      double total = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double ref = std::exp(shifted(x0[size_t(i)])) / sum;
        EXPECT_NEAR(x[size_t(i)], ref, 1e-6 * ref + 1e-30) << isa_name(isa) << " n=" << n;
        total += x[size_t(i)];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
      if (n > 2) EXPECT_EQ(x[1], 0.0f);
    }
  }
  // A fully masked row gives NaN (as PyTorch) rather than inventing a distribution.
  std::vector<float> masked(5, -std::numeric_limits<float>::infinity());
  softmax_f32(masked.data(), 5);
  for (float v : masked) EXPECT_TRUE(std::isnan(v));
  softmax_f32(masked.data(), 0);  // no-op
}

}  // namespace
}  // namespace lowbit::kernels::cpu
