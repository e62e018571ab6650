// Every GGUF block format beyond Q4_0..Q8_0 (Q8_1, Q2_K..Q8_K, IQ1_S..IQ4_XS, TQ1_0, TQ2_0,
// MXFP4): block struct sizes, decoding bit-exact against the PyPI `gguf` package
// (tools/gen_gguf_type_fixtures.py wrote tests/fixtures/kernels/gguf/), and linear() /
// dequantize_row() at every SIMD level against a float64 reference on odd shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/gguf_blocks.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/linear.h"
#include "test_paths.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;

const std::vector<DType> kNewTypes = {DType::Q8_1,   DType::Q2_K,  DType::Q3_K,    DType::Q4_K,
                                      DType::Q5_K,   DType::Q6_K,  DType::Q8_K,    DType::IQ2_XXS,
                                      DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S,
                                      DType::IQ1_S,  DType::IQ1_M, DType::IQ4_NL,  DType::IQ4_XS,
                                      DType::TQ1_0,  DType::TQ2_0, DType::MXFP4};

template <DType T>
void expect_block_size() {
  EXPECT_EQ(sizeof(typename BlockOf<T>::type), traits(T).block_bytes) << name(T);
}

TEST(GgufTypes, BlockStructsMatchTheDTypeTable) {
  expect_block_size<DType::Q4_0>();
  expect_block_size<DType::Q4_1>();
  expect_block_size<DType::Q5_0>();
  expect_block_size<DType::Q5_1>();
  expect_block_size<DType::Q8_0>();
  expect_block_size<DType::Q8_1>();
  expect_block_size<DType::Q2_K>();
  expect_block_size<DType::Q3_K>();
  expect_block_size<DType::Q4_K>();
  expect_block_size<DType::Q5_K>();
  expect_block_size<DType::Q6_K>();
  expect_block_size<DType::Q8_K>();
  expect_block_size<DType::IQ2_XXS>();
  expect_block_size<DType::IQ2_XS>();
  expect_block_size<DType::IQ2_S>();
  expect_block_size<DType::IQ3_XXS>();
  expect_block_size<DType::IQ3_S>();
  expect_block_size<DType::IQ1_S>();
  expect_block_size<DType::IQ1_M>();
  expect_block_size<DType::IQ4_NL>();
  expect_block_size<DType::IQ4_XS>();
  expect_block_size<DType::TQ1_0>();
  expect_block_size<DType::TQ2_0>();
  expect_block_size<DType::MXFP4>();
}

TEST(GgufTypes, EveryTypeHasAKernel) {
  for (DType t : testing::gguf_block_dtypes()) {
    EXPECT_TRUE(cpu_kernel_supports(t)) << name(t);
    EXPECT_EQ(cannot_implement(t), "") << name(t);
  }
}

// Bit patterns, not values: -0.0 vs 0.0 and NaN payloads count.
TEST(GgufTypes, DecodeMatchesGgufPythonBitExact) {
  constexpr int64_t kRows = 2, kBlocksPerRow = 8;  // as written by the generator
  for (DType t : kNewTypes) {
    const int64_t k = kBlocksPerRow * traits(t).block_elems;
    const std::string base =
        lowbit::testing::source_path("tests/fixtures/kernels/gguf/") + std::string(name(t));
    const auto raw = testing::read_binary_file(base + ".bin");
    const auto want = testing::read_binary_file(base + ".f32");
    ASSERT_EQ(raw.size(), kRows * *dtype_bytes(t, uint64_t(k))) << base;
    ASSERT_EQ(want.size(), size_t(kRows * k * 4)) << base;
    const WeightMatrix w{t, raw.data(), kRows, k};
    for (Isa isa : available_isas()) {
      for (int64_t r = 0; r < kRows; ++r) {
        std::vector<float> out(size_t(k), -1.0f);
        dequantize_row_isa(isa, w, r, out.data());
        int mismatches = 0;
        for (int64_t i = 0; i < k; ++i) {
          if (std::memcmp(&out[size_t(i)], want.data() + 4 * (r * k + i), 4) != 0 &&
              mismatches++ == 0) {
            float expected;
            std::memcpy(&expected, want.data() + 4 * (r * k + i), 4);
            ADD_FAILURE() << name(t) << " " << isa_name(isa) << " row " << r << " element " << i
                          << ": got " << out[size_t(i)] << ", gguf-py " << expected;
          }
        }
        EXPECT_EQ(mismatches, 0) << name(t) << " " << isa_name(isa) << " row " << r;
      }
    }
  }
}

// linear_isa() (fp32 activations; for types without fp32 SIMD kernels: decode each weight row
// once, SIMD dot) for every type and SIMD level against a float64 product of the decoded
// weights. linear()'s int8-activation paths are tested with their kernels.
TEST(GgufTypes, LinearMatchesDecodedReference) {
  std::mt19937_64 rng(99);
  for (DType t : kNewTypes) {
    const int64_t be = traits(t).block_elems;
    for (int64_t k : {be, 3 * be}) {
      for (int64_t n : {1, 7, 33}) {
        const auto wb = testing::random_weights(t, n, k, rng);
        const WeightMatrix w{t, wb.data(), n, k};
        std::vector<float> dec(size_t(n * k));
        for (int64_t j = 0; j < n; ++j)
          dequantize_ref(t, wb.data() + j * *dtype_bytes(t, uint64_t(k)), k, &dec[size_t(j * k)]);
        for (int64_t m : {1, 2, 5}) {
          const auto x = testing::random_floats(size_t(m * k), rng);
          std::vector<double> ref(size_t(m * n));
          double max_ref = 0;
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = 0;
              for (int64_t e = 0; e < k; ++e)
                s += double(dec[size_t(j * k + e)]) * double(x[size_t(i * k + e)]);
              ref[size_t(i * n + j)] = s;
              max_ref = std::max(max_ref, std::abs(s));
            }
          ASSERT_GT(max_ref, 0.0) << name(t);
          for (Isa isa : available_isas()) {
            std::vector<float> y(size_t(m * n), NAN);
            linear_isa(isa, w, x.data(), m, y.data());
            double max_err = 0;
            for (size_t i = 0; i < y.size(); ++i)
              max_err = std::max(max_err, std::abs(double(y[i]) - ref[i]));
            EXPECT_LT(max_err / max_ref, 1e-5)
                << name(t) << " " << isa_name(isa) << " n=" << n << " k=" << k << " m=" << m;
          }
        }
      }
    }
  }
}

TEST(GgufTypes, RowLengthMustBeWholeBlocks) {
  std::mt19937_64 rng(5);
  const auto wb = testing::random_weights(DType::Q4_K, 1, 256, rng);
  const WeightMatrix w{DType::Q4_K, wb.data(), 1, 128};
  std::vector<float> x(128, 1.0f), y(1);
  EXPECT_THROW(linear(w, x.data(), 1, y.data()), Error);
  EXPECT_THROW(dequantize_row(w, 0, y.data()), Error);
}

}  // namespace
}  // namespace lowbit::kernels::cpu
