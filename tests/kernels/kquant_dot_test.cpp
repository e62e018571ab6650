// K-quant / IQ4 / MXFP4 int8-activation products (kquant_dot.h): Q8_K activation quantization
// against hand-checked answers of ggml's quantize_row_q8_K_ref and identical bytes at every SIMD
// level; every SIMD level against the scalar integer reference (odd n, k = 256·odd or 32·odd,
// m = 1, 3, 17, 67); the integer path against the exact fp32 path (dequantize + float64) within
// the bound the activation rounding allows; NaN isolation; dispatch from linear(); bad input.
#include "kernels/cpu/kquant_dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/dequantize.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;
using testing::random_weights;

const DType kFormats[] = {DType::Q4_K,   DType::Q6_K, DType::Q5_K, DType::IQ4_XS,
                          DType::IQ4_NL, DType::Q3_K, DType::Q2_K, DType::MXFP4};

int64_t block_elems(DType t) { return traits(t).block_elems; }

// Restores the process-wide activation setting at scope exit.
struct ExactScope {
  bool saved = exact_activations();
  explicit ExactScope(bool v) { set_exact_activations(v); }
  ~ExactScope() { set_exact_activations(saved); }
};

// x̂ = d·q of the quantized activations (what the integer path multiplies the weights with).
std::vector<double> dequantized(const KQuantActivations& a) {
  std::vector<double> out(size_t(a.m * a.k));
  const int64_t be = a.k / std::max<int64_t>(a.nb, 1);
  for (int64_t i = 0; i < a.m; ++i)
    for (int64_t e = 0; e < a.k; ++e)
      out[size_t(i * a.k + e)] = double(a.d[size_t(i * a.nb + e / be)]) * a.qs[size_t(i * a.k + e)];
  return out;
}

std::vector<float> weight_rows(DType t, const std::vector<uint8_t>& w, int64_t n, int64_t k) {
  std::vector<float> out(size_t(n * k));
  const size_t row_bytes = *dtype_bytes(t, uint64_t(k));
  for (int64_t j = 0; j < n; ++j) dequantize_ref(t, w.data() + j * row_bytes, k, &out[j * k]);
  return out;
}

TEST(KQuantDot, Q8KKnownAnswers) {
  // Block 0: max |x| is −127 at element 0, so iscale = 1 and d = 1; q = rint(x) with halves to
  // even (2.5 → 2, 3.5 → 4, −0.5 → 0). Block 1: equal |x| of both signs, the first (+2) wins:
  // iscale = −63.5, d = −1/63.5. Block 2: all zeros -> d = 0.
  std::vector<float> x(768, 0.0f);
  x[0] = -127.0f;
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -0.5f;
  x[17] = 100.25f;
  x[256] = 2.0f;
  x[257] = -2.0f;
  x[258] = 1.0f;
  x[259] = 0.25f;
  std::vector<BlockQ8_K> ref(3);
  quantize_row_q8_K_ref(x.data(), 768, ref.data());
  EXPECT_EQ(ref[0].d, 1.0f);
  EXPECT_EQ(ref[0].qs[0], -127);
  EXPECT_EQ(ref[0].qs[1], 2);
  EXPECT_EQ(ref[0].qs[2], 4);
  EXPECT_EQ(ref[0].qs[3], 0);
  EXPECT_EQ(ref[0].qs[17], 100);
  EXPECT_EQ(ref[0].bsums[0], -127 + 2 + 4);
  EXPECT_EQ(ref[0].bsums[1], 100);
  EXPECT_EQ(ref[1].d, 1.0f / (-127.0f / 2.0f));
  EXPECT_EQ(ref[1].qs[0], -127);
  EXPECT_EQ(ref[1].qs[1], 127);
  EXPECT_EQ(ref[1].qs[2], -64);  // −63.5 → −64 (half to even)
  EXPECT_EQ(ref[1].qs[3], -16);  // −15.875
  EXPECT_EQ(ref[2].d, 0.0f);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(ref[2].qs[j], 0);

  for (Isa isa : available_isas()) {
    KQuantActivations a;
    quantize_kquant_activations(isa, DType::Q4_K, x.data(), 1, 768, &a);
    for (int b = 0; b < 3; ++b) {
      EXPECT_EQ(a.d[b], ref[b].d) << isa_name(isa);
      EXPECT_EQ(0, std::memcmp(&a.qs[256 * b], ref[b].qs, 256)) << isa_name(isa);
      if (b < 2) EXPECT_EQ(0, std::memcmp(&a.bsums[16 * b], ref[b].bsums, 32)) << isa_name(isa);
    }
  }
}

TEST(KQuantDot, ActivationBytesIdenticalAtEveryLevel) {
  std::mt19937_64 rng(11);
  for (DType t : {DType::Q4_K, DType::IQ4_NL}) {
    const int64_t m = 5, k = 256 * 3;
    std::vector<float> x = random_floats(size_t(m * k), rng, 3.0f);
    for (size_t i = 0; i < x.size(); i += 7) x[i] = std::round(x[i] * 8.0f) / 8.0f;  // ties
    KQuantActivations ref;
    quantize_kquant_activations(Isa::kScalar, t, x.data(), m, k, &ref);
    for (Isa isa : available_isas()) {
      KQuantActivations a;
      quantize_kquant_activations(isa, t, x.data(), m, k, &a);
      EXPECT_EQ(a.qs, ref.qs) << name(t) << " " << isa_name(isa);
      EXPECT_EQ(a.d, ref.d) << name(t) << " " << isa_name(isa);
      EXPECT_EQ(a.bsums, ref.bsums) << name(t) << " " << isa_name(isa);
    }
  }
}

// Every SIMD level against the scalar reference on the same quantized activations, and the
// integer result against the exact product within |Σ w·(x − x̂)| ≤ Σ |w|·|x − x̂|.
TEST(KQuantDot, SimdMatchesScalarAndExactWithinActivationError) {
  std::mt19937_64 rng(7);
  for (DType t : kFormats) {
    const int64_t be = block_elems(t);
    for (int64_t kb : {1, 3, 5}) {
      const int64_t k = be == 256 ? 256 * kb : 32 * (2 * kb + 11);  // 32-blocks: odd counts
      for (int64_t m : {1, 3, 17}) {
        const int64_t n = kb == 1 ? 11 : kb == 3 ? 13 : 15;  // groups of 8 rows: 4+4 | 3, 4+1, 4+3
        const std::vector<uint8_t> wbytes = random_weights(t, n, k, rng);
        const WeightMatrix w{t, wbytes.data(), n, k};
        const std::vector<float> x = random_floats(size_t(m * k), rng);
        KQuantActivations a;
        quantize_kquant_activations(Isa::kScalar, t, x.data(), m, k, &a);
        std::vector<float> ref(size_t(m * n)), exact(size_t(m * n));
        linear_kquant_prequantized(Isa::kScalar, w, a, ref.data());
        linear_reference(w, x.data(), m, exact.data());
        const std::vector<float> wf = weight_rows(t, wbytes, n, k);
        const std::vector<double> xh = dequantized(a);
        std::vector<double> mag(size_t(m * n)), bound(size_t(m * n));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0, b = 0;
            for (int64_t e = 0; e < k; ++e) {
              const double wv = wf[size_t(j * k + e)];
              s += std::fabs(wv * xh[size_t(i * k + e)]);
              b += std::fabs(wv) * std::fabs(double(x[size_t(i * k + e)]) - xh[size_t(i * k + e)]);
            }
            mag[size_t(i * n + j)] = s;
            bound[size_t(i * n + j)] = b;
          }
        for (size_t o = 0; o < ref.size(); ++o) {
          ASSERT_TRUE(std::isfinite(ref[o]));
          ASSERT_LE(std::fabs(double(ref[o]) - exact[o]), bound[o] + 1e-5 * mag[o] + 1e-30)
              << name(t) << " k=" << k << " m=" << m << " out " << o;
        }
        for (Isa isa : available_isas()) {
          if (isa == Isa::kScalar) continue;
          std::vector<float> y(size_t(m * n), -1.0f);
          linear_kquant_prequantized(isa, w, a, y.data());
          for (size_t o = 0; o < y.size(); ++o)
            ASSERT_NEAR(y[o], ref[o], 1e-5 * mag[o] + 1e-30)
                << name(t) << " " << isa_name(isa) << " k=" << k << " m=" << m << " out " << o;
        }
      }
    }
  }
}

// m past one panel of activation rows (64) and an odd tile remainder.
TEST(KQuantDot, ManyActivationRows) {
  std::mt19937_64 rng(3);
  for (DType t : {DType::Q4_K, DType::IQ4_NL}) {
    const int64_t m = 67, n = 5, k = block_elems(t) == 256 ? 512 : 96;
    const std::vector<uint8_t> wbytes = random_weights(t, n, k, rng);
    const WeightMatrix w{t, wbytes.data(), n, k};
    const std::vector<float> x = random_floats(size_t(m * k), rng);
    KQuantActivations a;
    quantize_kquant_activations(Isa::kScalar, t, x.data(), m, k, &a);
    std::vector<float> ref(size_t(m * n));
    linear_kquant_prequantized(Isa::kScalar, w, a, ref.data());
    for (Isa isa : available_isas()) {
      std::vector<float> y(size_t(m * n), -1.0f);
      linear_kquant_isa(isa, w, x.data(), m, y.data());
      for (size_t o = 0; o < y.size(); ++o)
        ASSERT_NEAR(y[o], ref[o], 1e-4 * (std::fabs(ref[o]) + 1.0f)) << isa_name(isa) << " " << o;
    }
  }
}

// Rows longer than one k-chunk of the blocked prompt path (16 super-blocks / 64 block pairs),
// with an odd remainder, so partial sums of several passes add up.
TEST(KQuantDot, LongRowsAcrossChunks) {
  std::mt19937_64 rng(13);
  for (DType t : {DType::Q6_K, DType::IQ4_NL}) {
    const int64_t m = 6, n = 10, k = block_elems(t) == 256 ? 256 * 17 : 32 * 131;  // 8 + 2 rows
    const std::vector<uint8_t> wbytes = random_weights(t, n, k, rng);
    const WeightMatrix w{t, wbytes.data(), n, k};
    const std::vector<float> x = random_floats(size_t(m * k), rng);
    KQuantActivations a;
    quantize_kquant_activations(Isa::kScalar, t, x.data(), m, k, &a);
    std::vector<float> ref(size_t(m * n));
    linear_kquant_prequantized(Isa::kScalar, w, a, ref.data());
    for (Isa isa : available_isas()) {
      std::vector<float> y(size_t(m * n), -1.0f);
      linear_kquant_prequantized(isa, w, a, y.data());
      for (size_t o = 0; o < y.size(); ++o)
        ASSERT_NEAR(y[o], ref[o], 2e-4 * (std::fabs(ref[o]) + 1.0f)) << isa_name(isa) << " " << o;
    }
  }
}

TEST(KQuantDot, NanStaysInItsRow) {
  std::mt19937_64 rng(5);
  for (DType t : {DType::Q6_K, DType::IQ4_NL}) {
    const int64_t m = 3, n = 4, k = block_elems(t) == 256 ? 512 : 64;
    const std::vector<uint8_t> wbytes = random_weights(t, n, k, rng);
    const WeightMatrix w{t, wbytes.data(), n, k};
    std::vector<float> x = random_floats(size_t(m * k), rng);
    x[size_t(k + 5)] = std::numeric_limits<float>::quiet_NaN();
    for (Isa isa : available_isas()) {
      std::vector<float> y(size_t(m * n));
      linear_kquant_isa(isa, w, x.data(), m, y.data());
      for (int64_t j = 0; j < n; ++j) {
        EXPECT_TRUE(std::isfinite(y[size_t(j)])) << isa_name(isa);
        EXPECT_TRUE(std::isnan(y[size_t(n + j)])) << isa_name(isa);
        EXPECT_TRUE(std::isfinite(y[size_t(2 * n + j)])) << isa_name(isa);
      }
    }
  }
}

TEST(KQuantDot, LinearDispatchesUnlessExact) {
  std::mt19937_64 rng(9);
  const int64_t m = 2, n = 3, k = 256;
  const std::vector<uint8_t> wbytes = random_weights(DType::Q4_K, n, k, rng);
  const WeightMatrix w{DType::Q4_K, wbytes.data(), n, k};
  const std::vector<float> x = random_floats(size_t(m * k), rng);
  std::vector<float> y(size_t(m * n)), want(size_t(m * n));
  {
    ExactScope scope(false);
    linear(w, x.data(), m, y.data());
    linear_kquant_isa(active_isa(), w, x.data(), m, want.data());
    EXPECT_EQ(y, want);
  }
  {
    ExactScope scope(true);
    linear(w, x.data(), m, y.data());
    linear_isa(active_isa(), w, x.data(), m, want.data());
    EXPECT_EQ(y, want);
  }
}

TEST(KQuantDot, BadInputFails) {
  std::vector<uint8_t> wbytes(sizeof(BlockQ4_K) * 2);
  const std::vector<float> x(512, 1.0f);
  std::vector<float> y(4);
  EXPECT_THROW(
      linear_kquant_isa(Isa::kScalar, {DType::Q4_K, wbytes.data(), 1, 384}, x.data(), 1, y.data()),
      Error);  // k not a multiple of 256
  EXPECT_THROW(
      linear_kquant_isa(Isa::kScalar, {DType::Q4_0, wbytes.data(), 1, 256}, x.data(), 1, y.data()),
      Error);  // not a K-quant
  KQuantActivations a;
  quantize_kquant_activations(Isa::kScalar, DType::Q6_K, x.data(), 1, 256, &a);
  EXPECT_THROW(
      linear_kquant_prequantized(Isa::kScalar, {DType::Q4_K, wbytes.data(), 1, 256}, a, y.data()),
      Error);  // quantized for another weight format
}

}  // namespace
}  // namespace lowbit::kernels::cpu
