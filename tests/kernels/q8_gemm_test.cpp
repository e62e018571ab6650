// Prompt GEMM on repacked weights (q8_gemm.h): bit-identical to the scalar int8 references
// (linear_q8_isa / linear_kquant_isa at Isa::kScalar) on random weights and activations with odd
// shapes, the same activation bytes at every SIMD level, NaN isolation, the dispatch of
// linear_ggml_prepared, and clear errors.
#include "kernels/cpu/q8_gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/ggml_linear.h"
#include "kernels/cpu/kquant_dot.h"
#include "kernels/cpu/q8_activation.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;
using testing::random_weights;

const DType kFormats[] = {DType::Q4_0,   DType::Q4_1,   DType::Q5_0, DType::Q5_1, DType::Q8_0,
                          DType::IQ4_NL, DType::IQ4_XS, DType::Q4_K, DType::Q5_K, DType::Q6_K};

int64_t block_elems(DType t) { return traits(t).block_elems; }

// The scalar int8 reference the GEMM must reproduce bit for bit.
void reference(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  if (kquant_supports(w.dtype))
    linear_kquant_isa(Isa::kScalar, w, x, m, y);
  else
    linear_q8_isa(Isa::kScalar, w, x, m, y);
}

// Bitwise equality of two fp32 arrays (NaN == NaN), reporting the first mismatch.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    ASSERT_EQ(a, b) << what << " element " << i << ": " << got[i] << " vs " << want[i];
  }
}

struct Shape {
  int64_t m, n, k;
};

TEST(Q8Gemm, MatchesScalarReferenceBitForBit) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 VNNI";
  const Shape shapes[] = {{1, 16, 32},   {3, 33, 96},   {5, 50, 576},  {17, 7, 576}, {64, 40, 96},
                          {9, 24, 1536}, {64, 17, 576}, {2, 1, 64},    {1, 16, 256}, {3, 33, 256},
                          {5, 50, 1536}, {17, 7, 512},  {64, 40, 256}, {2, 1, 768}};
  std::mt19937_64 rng(20261124);
  for (DType t : kFormats)
    for (const Shape& s : shapes) {
      if (s.k % block_elems(t) != 0) continue;
      const auto bytes = random_weights(t, s.n, s.k, rng);
      const WeightMatrix w{t, bytes.data(), s.n, s.k};
      // Activations with a few large values per row, as transformer hidden states.
      auto x = random_floats(size_t(s.m * s.k), rng);
      for (size_t i = 0; i < x.size(); i += 37) x[i] *= 20.0f;
      std::vector<float> want(size_t(s.m * s.n)), got(size_t(s.m * s.n), -1.0f);
      reference(w, x.data(), s.m, want.data());
      const PackedGemmWeights p = pack_gemm_weights(w);
      linear_gemm_isa(Isa::kAvx512, p, x.data(), s.m, got.data());
      expect_same_bits(got, want, fmt::format("{} m={} n={} k={}", name(t), s.m, s.n, s.k));
    }
}

// One activation row (generation) takes its own path: each thread's tiles walked as two parts side
// by side, a leftover tile alone. Tile counts odd and even per thread, a partial last tile, the
// serial case (n·k ≤ 2^16), on 1, 2 and 3 threads.
TEST(Q8Gemm, OneRowMatchesScalarReferenceOnAnyThreadCount) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 VNNI";
  const Shape shapes[] = {{1, 117, 576},  {1, 600, 1536}, {1, 40, 96}, {1, 83, 256},
                          {1, 300, 1024}, {1, 16, 2048},  {1, 49, 512}};
  std::mt19937_64 rng(20261125);
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (DType t : kFormats)
      for (const Shape& s : shapes) {
        if (s.k % block_elems(t) != 0) continue;
        const auto bytes = random_weights(t, s.n, s.k, rng);
        const WeightMatrix w{t, bytes.data(), s.n, s.k};
        auto x = random_floats(size_t(s.k), rng);
        for (size_t i = 0; i < x.size(); i += 37) x[i] *= 20.0f;
        std::vector<float> want(size_t(s.n)), got(size_t(s.n), -1.0f);
        reference(w, x.data(), 1, want.data());
        linear_gemm_isa(Isa::kAvx512, pack_gemm_weights(w), x.data(), 1, got.data());
        expect_same_bits(got, want,
                         fmt::format("{} n={} k={} threads={}", name(t), s.n, s.k, threads));
      }
  }
  omp_set_num_threads(threads_before);
}

TEST(Q8Gemm, ActivationBytesAgreeAcrossIsas) {
  std::mt19937_64 rng(7);
  const int64_t m = 5, k = 512;
  auto x = random_floats(size_t(m * k), rng, 3.0f);
  x[300] = std::numeric_limits<float>::quiet_NaN();  // row 0, block 9 (super-block 1)
  for (DType t : kFormats) {
    GemmActivations want;
    quantize_gemm_activations(Isa::kScalar, t, x.data(), m, k, &want);
    EXPECT_TRUE(std::isnan(want.d[size_t(300 / block_elems(t))])) << name(t);
    for (Isa isa : available_isas()) {
      GemmActivations a;
      quantize_gemm_activations(isa, t, x.data(), m, k, &a);
      EXPECT_EQ(a.qs, want.qs) << name(t) << " " << isa_name(isa);
      EXPECT_EQ(a.bias, want.bias) << name(t) << " " << isa_name(isa);
      EXPECT_EQ(a.sub, want.sub) << name(t) << " " << isa_name(isa);
      expect_same_bits(a.d, want.d, fmt::format("{} {} d", name(t), isa_name(isa)));
      expect_same_bits(a.s, want.s, fmt::format("{} {} s", name(t), isa_name(isa)));
    }
  }
}

TEST(Q8Gemm, NaNStaysInItsRow) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 VNNI";
  std::mt19937_64 rng(11);
  const int64_t m = 6, n = 21, k = 512;
  for (DType t : kFormats) {
    const auto bytes = random_weights(t, n, k, rng);
    const WeightMatrix w{t, bytes.data(), n, k};
    auto x = random_floats(size_t(m * k), rng);
    x[size_t(3 * k + 300)] = std::numeric_limits<float>::infinity();
    std::vector<float> want(size_t(m * n)), got(size_t(m * n));
    reference(w, x.data(), m, want.data());
    linear_gemm_isa(Isa::kAvx512, pack_gemm_weights(w), x.data(), m, got.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        EXPECT_EQ(std::isnan(got[size_t(i * n + j)]), i == 3) << name(t) << " " << i << "," << j;
    expect_same_bits(got, want, std::string(name(t)));
  }
}

TEST(Q8Gemm, LinearGgmlPreparedUsesTheGemm) {
  std::mt19937_64 rng(3);
  const int64_t n = 40, k = 768;
  for (DType t : kFormats) {
    const auto bytes = random_weights(t, n, k, rng);
    const WeightMatrix w{t, bytes.data(), n, k};
    // Every format packs; Q4_1 / Q5_1 prompts (m > 1) keep the row-wise kernels unless
    // LOWBIT_PROMPT_GEMM=all (the parity tolerance, ggml_linear.cpp).
    const bool with_min = t == DType::Q4_1 || t == DType::Q5_1;
    const char* env = std::getenv("LOWBIT_PROMPT_GEMM");
    const bool all = env && std::string(env) == "all";
    const auto packed = prepare_linear_ggml(w);
    if (!env) EXPECT_EQ(packed != nullptr, active_isa() == Isa::kAvx512) << name(t);
    for (int64_t m : {1, 4, 13}) {
      const auto x = random_floats(size_t(m * k), rng);
      std::vector<float> got(size_t(m * n)), want(size_t(m * n));
      linear_ggml_prepared(w, packed.get(), x.data(), m, got.data());
      if (packed && !exact_activations() && (m == 1 || !with_min || all))
        reference(w, x.data(), m, want.data());  // the GEMM: the scalar reference's bits
      else
        linear_ggml(w, x.data(), m, want.data());
      expect_same_bits(got, want, fmt::format("{} m={}", name(t), m));
    }
  }
  const auto f16 = random_weights(DType::F16, 4, 64, rng);
  EXPECT_EQ(prepare_linear_ggml({DType::F16, f16.data(), 4, 64}), nullptr);
}

TEST(Q8Gemm, ErrorsNameWhatWasFound) {
  std::mt19937_64 rng(5);
  const auto bytes = random_weights(DType::Q4_1, 4, 64, rng);
  try {
    pack_gemm_weights({DType::Q3_K, bytes.data(), 1, 256});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q3_K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pack_gemm_weights({DType::Q4_1, bytes.data(), 4, 48}), Error);  // k % 32
  if (!isa_supported(Isa::kAvx512)) return;
  const PackedGemmWeights p = pack_gemm_weights({DType::Q4_1, bytes.data(), 4, 64});
  GemmActivations a;
  const auto x = random_floats(2 * 96, rng);
  quantize_gemm_activations(Isa::kAvx512, DType::Q4_1, x.data(), 2, 96, &a);
  std::vector<float> y(8);
  try {
    linear_gemm_prequantized(Isa::kAvx512, p, a, y.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("k=96"), std::string::npos) << e.what();
  }
  // Same k, activations of another format (Q4_0's have no s = d·Σ q for Q4_1's mins).
  quantize_gemm_activations(Isa::kAvx512, DType::Q4_0, x.data(), 1, 64, &a);
  try {
    linear_gemm_prequantized(Isa::kAvx512, p, a, y.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not quantized for Q4_1"), std::string::npos) << e.what();
  }
  if (isa_supported(Isa::kAvx2)) {
    EXPECT_THROW(linear_gemm_isa(Isa::kAvx2, p, x.data(), 1, y.data()), Error);
  }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
