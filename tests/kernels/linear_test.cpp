// linear(): every supported format × every SIMD level this CPU runs, on odd shapes, against
// a float64 product of the reference-dequantized weights.
#include "kernels/cpu/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/dequantize.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;
using testing::random_weights;
using testing::supported_dtypes;

// y_ref[m, n] in double from the reference codec.
std::vector<double> reference(const WeightMatrix& w, const std::vector<float>& x, int64_t m) {
  std::vector<double> y(size_t(m * w.n));
  std::vector<float> row(size_t(w.k));
  for (int64_t j = 0; j < w.n; ++j) {
    dequantize_ref(w.dtype,
                   static_cast<const uint8_t*>(w.data) + j * *dtype_bytes(w.dtype, uint64_t(w.k)),
                   w.k, row.data());
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t t = 0; t < w.k; ++t)
        s += double(row[size_t(t)]) * double(x[size_t(i * w.k + t)]);
      y[size_t(i * w.n + j)] = s;
    }
  }
  return y;
}

double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_err = std::max(max_err, std::abs(double(y[i]) - ref[i]));
    if (!std::isfinite(y[i])) return std::numeric_limits<double>::infinity();
  }
  return max_err / max_ref;
}

struct Shape {
  int64_t n, k, m;
};

std::vector<Shape> shapes_for(DType t) {
  const int64_t ns[] = {1, 3, 17, 33, 1025};
  std::vector<int64_t> ks = {32, 64, 96, 4096 + 32};
  if (traits(t).block_elems == 1) ks.insert(ks.end(), {1, 17, 1025});
  const int64_t ms[] = {1, 2, 3, 7, 16, 33};
  std::vector<Shape> out;
  int idx = 0;
  for (int64_t n : ns)
    for (int64_t k : ks) {
      int64_t m = ms[idx++ % 6];
      if (n * k * m > 40'000'000) m = 2;  // keeps the float64 reference fast
      out.push_back({n, k, m});
    }
  // Every m on a shape with a tile remainder in every direction.
  for (int64_t m : ms) out.push_back({33, traits(t).block_elems == 1 ? 1025 : 96, m});
  out.push_back({1025, 4096 + 32, 1});  // the big m == 1 case takes the threaded path
  return out;
}

TEST(Linear, AllFormatsAllIsasOddShapes) {
  std::mt19937_64 rng(42);
  for (DType t : supported_dtypes()) {
    for (const Shape& s : shapes_for(t)) {
      auto wb = random_weights(t, s.n, s.k, rng);
      WeightMatrix w{t, wb.data(), s.n, s.k};
      auto x = random_floats(size_t(s.m * s.k), rng);
      auto ref = reference(w, x, s.m);
      for (Isa isa : available_isas()) {
        std::vector<float> y(size_t(s.m * s.n), -12345.0f);
        linear_isa(isa, w, x.data(), s.m, y.data());
        EXPECT_LE(rel_error(y, ref), 1e-5)
            << name(t) << " " << isa_name(isa) << " n=" << s.n << " k=" << s.k << " m=" << s.m;
      }
      // linear_reference is the double-accumulating scalar path.
      std::vector<float> yr(size_t(s.m * s.n));
      linear_reference(w, x.data(), s.m, yr.data());
      EXPECT_LE(rel_error(yr, ref), 1e-7) << name(t) << " reference";
    }
  }
}

TEST(Linear, DefaultEntryPointMatchesActiveIsa) {
  std::mt19937_64 rng(7);
  auto wb = random_weights(DType::Q4_0, 40, 128, rng);
  WeightMatrix w{DType::Q4_0, wb.data(), 40, 128};
  auto x = random_floats(3 * 128, rng);
  std::vector<float> a(3 * 40), b(3 * 40);
  // q8act: linear() defaults to int8 activations for block formats; this test is about the
  // exact path (q8_activation_test.cpp covers the other).
  const bool saved = exact_activations();
  set_exact_activations(true);
  linear(w, x.data(), 3, a.data());
  set_exact_activations(saved);
  linear_isa(active_isa(), w, x.data(), 3, b.data());
  EXPECT_EQ(a, b);
}

// A NaN in one activation row must not reach any other output row, on every path (m = 2
// hits the micro-kernel tails, odd k the masked loads).
TEST(Linear, NanInOneRowDoesNotLeak) {
  std::mt19937_64 rng(3);
  for (DType t : supported_dtypes()) {
    const int64_t k = traits(t).block_elems == 1 ? 17 : 64, n = 9;
    auto wb = random_weights(t, n, k, rng);
    WeightMatrix w{t, wb.data(), n, k};
    for (int64_t m : {2, 3, 5, 33}) {
      auto x = random_floats(size_t(m * k), rng);
      auto clean = x;
      x[size_t(k - 1)] = std::numeric_limits<float>::quiet_NaN();  // last element of row 0
      for (Isa isa : available_isas()) {
        std::vector<float> y(size_t(m * n)), yc(size_t(m * n));
        linear_isa(isa, w, x.data(), m, y.data());
        linear_isa(isa, w, clean.data(), m, yc.data());
        for (int64_t j = 0; j < n; ++j) EXPECT_TRUE(std::isnan(y[size_t(j)]));
        for (int64_t i = n; i < m * n; ++i)
          ASSERT_EQ(y[size_t(i)], yc[size_t(i)])
              << name(t) << " " << isa_name(isa) << " m=" << m << " index " << i;
      }
    }
  }
}

TEST(Linear, DequantizeRowMatchesReferenceBitExact) {
  std::mt19937_64 rng(11);
  for (DType t : supported_dtypes()) {
    for (int64_t k : {32, 96, 4096 + 32}) {
      const int64_t n = 5;
      auto wb = random_weights(t, n, k, rng);
      WeightMatrix w{t, wb.data(), n, k};
      std::vector<float> ref(static_cast<size_t>(k));
      for (int64_t r = 0; r < n; ++r) {
        dequantize_ref(t, wb.data() + r * *dtype_bytes(t, uint64_t(k)), k, ref.data());
        for (Isa isa : available_isas()) {
          std::vector<float> out(static_cast<size_t>(k), -1.0f);
          dequantize_row_isa(isa, w, r, out.data());
          ASSERT_EQ(0, std::memcmp(out.data(), ref.data(), size_t(k) * 4))
              << name(t) << " " << isa_name(isa) << " k=" << k << " row " << r;
        }
      }
    }
  }
}

TEST(Linear, CannotImplementGivesReasons) {
  for (DType t : supported_dtypes()) EXPECT_EQ(cannot_implement(t), "") << name(t);
  // Every GGUF block type has a kernel (gguf_types_test.cpp); plain non-float types do not.
  for (DType t : {DType::F64, DType::I8, DType::I32, DType::F8_E4M3, DType::BOOL}) {
    std::string r = cannot_implement(t);
    EXPECT_NE(r.find(std::string(name(t))), std::string::npos) << r;
    EXPECT_NE(r.find("Q4_0"), std::string::npos) << r;  // lists what is supported
  }
}

TEST(Linear, BadInputThrows) {
  std::vector<uint8_t> data(4096, 1);
  std::vector<float> x(256, 1.0f), y(256);
  EXPECT_THROW(linear({DType::F64, data.data(), 1, 256}, x.data(), 1, y.data()), Error);
  EXPECT_THROW(linear({DType::Q4_0, data.data(), 2, 48}, x.data(), 1, y.data()), Error);
  EXPECT_THROW(linear({DType::F32, data.data(), -1, 4}, x.data(), 1, y.data()), Error);
  EXPECT_THROW(linear({DType::F32, nullptr, 2, 4}, x.data(), 1, y.data()), Error);
  EXPECT_THROW(dequantize_row({DType::Q8_0, data.data(), 2, 32}, 2, y.data()), Error);
  EXPECT_THROW(dequantize_row({DType::Q8_0, data.data(), 2, 32}, -1, y.data()), Error);
  // Empty problems are fine: m = 0 writes nothing, k = 0 gives zeros.
  linear({DType::F32, data.data(), 2, 4}, x.data(), 0, y.data());
  y[0] = y[1] = 5.0f;
  linear({DType::F32, nullptr, 2, 0}, x.data(), 1, y.data());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(CpuFeatures, LevelsAreConsistent) {
  EXPECT_LE(int(active_isa()), int(max_isa()));
  EXPECT_TRUE(isa_supported(Isa::kScalar));
  const auto& f = cpu_features();
  if (isa_supported(Isa::kAvx2)) EXPECT_TRUE(f.avx2 && f.fma && f.f16c);
  if (isa_supported(Isa::kAvx512)) EXPECT_TRUE(f.avx512);
  EXPECT_STREQ(isa_name(Isa::kAvx512), "avx512");
}

}  // namespace
}  // namespace lowbit::kernels::cpu
