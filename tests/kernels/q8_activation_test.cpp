// Int8-activation products (q8_activation.h): activation quantization bit-exact against
// llama.cpp's definition (gguf-py fixture + a scalar re-statement), every SIMD level against the
// scalar int8 reference, the int8 path against the exact fp32 path, NaN isolation, dispatch.
#include "kernels/cpu/q8_activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "kernel_test_util.h"
#include "test_paths.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;
using testing::random_weights;

const DType kFormats[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};

// Restores the process-wide activation setting at scope exit.
struct ExactScope {
  bool saved = exact_activations();
  explicit ExactScope(bool v) { set_exact_activations(v); }
  ~ExactScope() { set_exact_activations(saved); }
};

// quantize_row_q8_0_ref restated independently (llama.cpp ggml-quants.c), finite inputs; with
// ggml_cpu, ggml's x86 quantize_row_q8_0 (AVX2: id = 127/amax, _mm256_round_ps nearest even).
void restated_q8(const float* x, int8_t* q, float* d, int32_t* sum, bool ggml_cpu = false) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  *d = amax / 127;
  const float id = ggml_cpu ? (amax ? 127.0f / amax : 0.0f) : (*d ? 1.0f / *d : 0.0f);
  *sum = 0;
  for (int j = 0; j < 32; ++j) {
    q[j] = int8_t(ggml_cpu ? std::nearbyint(x[j] * id) : std::roundf(x[j] * id));
    *sum += q[j];
  }
}

TEST(Q8Activation, MatchesGgufPyFixture) {
  std::ifstream f(lowbit::testing::source_path("tests/fixtures/kernels/q8_activation.bin"),
                  std::ios::binary);
  ASSERT_TRUE(f) << "missing fixture; rerun tools/gen_q8_activation_fixture.py";
  int32_t rows, k;
  f.read(reinterpret_cast<char*>(&rows), 4);
  f.read(reinterpret_cast<char*>(&k), 4);
  ASSERT_EQ(k % 32, 0);
  const int64_t nb = int64_t(rows) * k / 32;
  std::vector<float> x(size_t(rows) * size_t(k));
  std::vector<BlockQ8_0> q80(static_cast<size_t>(nb)), mine0(static_cast<size_t>(nb));
  std::vector<BlockQ8_1> q81(static_cast<size_t>(nb)), mine1(static_cast<size_t>(nb));
  f.read(reinterpret_cast<char*>(x.data()), std::streamsize(x.size() * 4));
  f.read(reinterpret_cast<char*>(q80.data()), std::streamsize(nb * 34));
  f.read(reinterpret_cast<char*>(q81.data()), std::streamsize(nb * 36));
  ASSERT_TRUE(f);
  quantize_row_q8_0_ref(x.data(), int64_t(rows) * k, mine0.data());
  quantize_row_q8_1_ref(x.data(), int64_t(rows) * k, mine1.data());
  EXPECT_EQ(std::memcmp(q80.data(), mine0.data(), size_t(nb) * 34), 0);
  EXPECT_EQ(std::memcmp(q81.data(), mine1.data(), size_t(nb) * 36), 0);
  // The kernels quantize as ggml's x86 CPU backend (quantize_row_q8_1_ggml_cpu), which may
  // differ from the reference bytes where x·id is within an ulp of a half.
  quantize_row_q8_1_ggml_cpu(x.data(), int64_t(rows) * k, q81.data());
  // Every SIMD quantizer gives the same values in the kernel layout.
  for (Isa isa : available_isas()) {
    Q8Activations a;
    quantize_activations(isa, DType::Q4_1, x.data(), rows, k, &a);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t b = 0; b < k / 32; ++b) {
        const BlockQ8_1& r = q81[size_t(i * k / 32 + b)];
        int64_t lo, hi;
        q8_half_offsets(b, k / 32, &lo, &hi);
        const int8_t* qs = a.qs.data() + i * k;
        ASSERT_EQ(std::memcmp(qs + lo, r.qs, 16), 0) << isa_name(isa) << " row " << i << " b " << b;
        ASSERT_EQ(std::memcmp(qs + hi, r.qs + 16, 16), 0) << isa_name(isa);
        const float* ds = a.ds.data() + i * a.pairs * 4 + 4 * (b / 2);
        EXPECT_EQ(ds[b & 1], f16_to_f32(r.d));
        EXPECT_EQ(ds[2 + (b & 1)], f16_to_f32(r.s));
      }
  }
}

TEST(Q8Activation, QuantizerBitExactOnRandomRows) {
  std::mt19937_64 rng(11);
  for (int64_t k : {32, 96, 576, 1536, 4096 + 32}) {
    for (float sd : {1e-4f, 1.0f, 300.0f}) {
      const auto x = random_floats(size_t(k) * 2, rng, sd);
      std::vector<BlockQ8_0> ref0(size_t(2 * k / 32));
      std::vector<BlockQ8_1> ref1(size_t(2 * k / 32));
      quantize_row_q8_0_ref(x.data(), 2 * k, ref0.data());
      quantize_row_q8_1_ref(x.data(), 2 * k, ref1.data());
      for (size_t b = 0; b < ref0.size(); ++b) {
        int8_t q[32];
        float d;
        int32_t sum;
        restated_q8(x.data() + 32 * b, q, &d, &sum);
        ASSERT_EQ(std::memcmp(q, ref0[b].qs, 32), 0);
        ASSERT_EQ(ref0[b].d, f32_to_f16(d));
        ASSERT_EQ(ref1[b].s, f32_to_f16(float(sum) * d));
        ASSERT_EQ(std::memcmp(ref1[b].qs, ref0[b].qs, 32), 0);
      }
      std::vector<BlockQ8_0> cpu0(ref0.size());
      std::vector<BlockQ8_1> cpu1(ref1.size());
      quantize_row_q8_0_ggml_cpu(x.data(), 2 * k, cpu0.data());
      quantize_row_q8_1_ggml_cpu(x.data(), 2 * k, cpu1.data());
      for (size_t b = 0; b < cpu0.size(); ++b) {
        int8_t q[32];
        float d;
        int32_t sum;
        restated_q8(x.data() + 32 * b, q, &d, &sum, /*ggml_cpu=*/true);
        ASSERT_EQ(std::memcmp(q, cpu0[b].qs, 32), 0);
        ASSERT_EQ(cpu0[b].d, f32_to_f16(d));
        ASSERT_EQ(cpu1[b].s, f32_to_f16(float(sum) * d));
      }
      Q8Activations base;
      quantize_activations(Isa::kScalar, DType::Q5_1, x.data(), 2, k, &base);
      for (int64_t i = 0; i < 2; ++i)  // the kernels' activations are ggml's x86 blocks
        for (int64_t b = 0; b < k / 32; ++b) {
          int64_t lo, hi;
          q8_half_offsets(b, k / 32, &lo, &hi);
          const int8_t* qs = base.qs.data() + i * k;
          const BlockQ8_1& c = cpu1[size_t(i * k / 32 + b)];
          ASSERT_EQ(std::memcmp(qs + lo, c.qs, 16), 0) << "k=" << k << " row " << i << " b " << b;
          ASSERT_EQ(std::memcmp(qs + hi, c.qs + 16, 16), 0);
        }
      for (Isa isa : available_isas()) {
        Q8Activations a;
        quantize_activations(isa, DType::Q5_1, x.data(), 2, k, &a);
        EXPECT_EQ(a.qs, base.qs) << isa_name(isa) << " k=" << k;
        EXPECT_EQ(a.ds, base.ds) << isa_name(isa);
        EXPECT_EQ(a.sums, base.sums) << isa_name(isa);
      }
    }
  }
}

// Int8 reference in double (exact block integers from the reference codec) plus Σ|products|
// per output, for the bound on an fp32 reordering.
void int8_reference(const WeightMatrix& w, const std::vector<float>& x, int64_t m,
                    std::vector<double>& y, std::vector<double>& mag) {
  const size_t rb = *dtype_bytes(w.dtype, uint64_t(w.k));
  std::vector<BlockQ8_0> q0(size_t(w.k / 32));
  std::vector<BlockQ8_1> q1(size_t(w.k / 32));
  std::vector<float> wrow(size_t(w.k));
  y.assign(size_t(m * w.n), 0);
  mag.assign(size_t(m * w.n), 0);
  const bool has_min = w.dtype == DType::Q4_1 || w.dtype == DType::Q5_1;
  for (int64_t i = 0; i < m; ++i) {
    quantize_row_q8_0_ggml_cpu(x.data() + i * w.k, w.k, q0.data());
    quantize_row_q8_1_ggml_cpu(x.data() + i * w.k, w.k, q1.data());
    for (int64_t j = 0; j < w.n; ++j) {
      const auto* row = static_cast<const uint8_t*>(w.data) + size_t(j) * rb;
      const size_t bb = traits(w.dtype).block_bytes;
      for (int64_t b = 0; b < w.k / 32; ++b) {
        // Integer weights: dequantize with d = 1 (and m = 0) through the reference codec.
        std::vector<uint8_t> blk(row + b * bb, row + (b + 1) * bb);
        const uint16_t one = f32_to_f16(1.0f), zero = 0;
        std::memcpy(blk.data(), &one, 2);
        if (has_min) std::memcpy(blk.data() + 2, &zero, 2);
        float v[32];
        dequantize_ref(w.dtype, blk.data(), 32, v);
        int64_t isum = 0, iabs = 0;
        for (int t = 0; t < 32; ++t) {
          isum += int64_t(v[t]) * q0[size_t(b)].qs[t];
          iabs += std::abs(int64_t(v[t]) * q0[size_t(b)].qs[t]);
        }
        uint16_t dw, mw;
        std::memcpy(&dw, row + b * bb, 2);
        std::memcpy(&mw, row + b * bb + 2, 2);
        const double dx = f16_to_f32(has_min ? q1[size_t(b)].d : q0[size_t(b)].d);
        double term = double(f16_to_f32(dw)) * dx * double(isum);
        double mterm = has_min ? double(f16_to_f32(mw)) * f16_to_f32(q1[size_t(b)].s) : 0.0;
        y[size_t(i * w.n + j)] += term + mterm;
        // Σ |products| bounds any fp32 summation order of the per-element terms.
        mag[size_t(i * w.n + j)] +=
            std::abs(double(f16_to_f32(dw)) * dx) * double(iabs) + std::abs(mterm);
      }
    }
  }
}

TEST(Q8Activation, EveryIsaMatchesScalarInt8Reference) {
  std::mt19937_64 rng(5);
  for (DType t : kFormats)
    for (int64_t n : {1, 3, 17, 1025})
      for (int64_t k : {32, 96, 576, 1536, 4096 + 32})
        for (int64_t m : {1, 2, 7}) {
          if (n == 1025 && k > 1536 && m > 1) continue;  // keep the test fast
          auto wb = random_weights(t, n, k, rng);
          WeightMatrix w{t, wb.data(), n, k};
          auto x = random_floats(size_t(m * k), rng);
          std::vector<double> ref, mag;
          int8_reference(w, x, m, ref, mag);
          for (Isa isa : available_isas()) {
            std::vector<float> y(size_t(m * n), -1.0f);
            linear_q8_isa(isa, w, x.data(), m, y.data());
            for (size_t e = 0; e < y.size(); ++e)
              ASSERT_LE(std::abs(double(y[e]) - ref[e]), 1e-5 * mag[e] + 1e-30)
                  << name(t) << " " << isa_name(isa) << " n=" << n << " k=" << k << " m=" << m
                  << " at " << e << ": " << y[e] << " vs " << ref[e];
          }
        }
}

TEST(Q8Activation, CloseToExactFp32Path) {
  std::mt19937_64 rng(9);
  for (DType t : kFormats)
    for (int64_t k : {96, 576, 1536}) {
      const int64_t n = 33, m = 3;
      auto wb = random_weights(t, n, k, rng);
      WeightMatrix w{t, wb.data(), n, k};
      auto x = random_floats(size_t(m * k), rng);
      std::vector<float> exact(size_t(m * n)), y(size_t(m * n));
      linear_reference(w, x.data(), m, exact.data());
      for (Isa isa : available_isas()) {
        linear_q8_isa(isa, w, x.data(), m, y.data());
        double num = 0, den = 0;
        for (size_t e = 0; e < y.size(); ++e) {
          num += (double(y[e]) - exact[e]) * (double(y[e]) - exact[e]);
          den += double(exact[e]) * exact[e];
        }
        EXPECT_LE(std::sqrt(num / den), 1e-2) << name(t) << " " << isa_name(isa) << " k=" << k;
      }
    }
}

TEST(Q8Activation, NanInOneRowDoesNotLeak) {
  std::mt19937_64 rng(3);
  for (DType t : kFormats)
    for (int64_t k : {32, 96}) {
      const int64_t n = 9, m = 3;
      auto wb = random_weights(t, n, k, rng);
      WeightMatrix w{t, wb.data(), n, k};
      auto x = random_floats(size_t(m * k), rng);
      for (float bad :
           {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        x[size_t(k + k - 1)] = bad;  // row 1, last block
        for (Isa isa : available_isas()) {
          std::vector<float> y(size_t(m * n));
          linear_q8_isa(isa, w, x.data(), m, y.data());
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              const float v = y[size_t(i * n + j)];
              if (i == 1)
                EXPECT_TRUE(std::isnan(v)) << name(t) << " " << isa_name(isa);
              else
                EXPECT_TRUE(std::isfinite(v)) << name(t) << " " << isa_name(isa);
            }
        }
      }
    }
}

TEST(Q8Activation, LinearDispatchFollowsSetting) {
  std::mt19937_64 rng(13);
  auto wb = random_weights(DType::Q4_1, 21, 96, rng);
  WeightMatrix w{DType::Q4_1, wb.data(), 21, 96};
  auto x = random_floats(2 * 96, rng);
  std::vector<float> a(42), b(42), c(42), d(42);
  {
    ExactScope scope(false);
    linear(w, x.data(), 2, a.data());
  }
  linear_q8_isa(active_isa(), w, x.data(), 2, b.data());
  EXPECT_EQ(a, b);
  {
    ExactScope scope(true);
    EXPECT_TRUE(exact_activations());
    linear(w, x.data(), 2, c.data());
  }
  linear_isa(active_isa(), w, x.data(), 2, d.data());
  EXPECT_EQ(c, d);
  // Dense weights never take the int8 path.
  auto fb = random_weights(DType::F32, 5, 17, rng);
  WeightMatrix wf{DType::F32, fb.data(), 5, 17};
  std::vector<float> e(5), g(5);
  ExactScope scope(false);
  linear(wf, x.data(), 1, e.data());
  linear_isa(active_isa(), wf, x.data(), 1, g.data());
  EXPECT_EQ(e, g);
}

TEST(Q8Activation, BadInputThrows) {
  std::vector<uint8_t> data(4096, 1);
  std::vector<float> x(256, 1.0f), y(256);
  EXPECT_THROW(linear_q8_isa(Isa::kScalar, {DType::F32, data.data(), 1, 32}, x.data(), 1, y.data()),
               Error);
  EXPECT_THROW(
      linear_q8_isa(Isa::kScalar, {DType::Q4_0, data.data(), 2, 48}, x.data(), 1, y.data()), Error);
  EXPECT_THROW(linear_q8_isa(Isa::kScalar, {DType::Q4_0, nullptr, 2, 32}, x.data(), 1, y.data()),
               Error);
  Q8Activations a;
  quantize_activations(Isa::kScalar, DType::Q4_0, x.data(), 1, 64, &a);
  EXPECT_THROW(linear_q8_prequantized(Isa::kScalar, {DType::Q4_1, data.data(), 2, 64}, a, y.data()),
               Error);
}

}  // namespace
}  // namespace lowbit::kernels::cpu
