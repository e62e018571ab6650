// The GGUF quantizers against llama.cpp's own bytes (tests/fixtures/quantizer, made by
// tools/gen_gguf_quantize_fixtures.py through ggml_quantize_chunk): every supported type, with
// and without an importance matrix, on rows of mixed distributions (outliers, one-signed,
// tiny, huge, all-zero blocks, ties). Plus: round-trip error bounds on random odd shapes,
// results independent of the thread count, and the errors for unsupported input.
#include "kernels/cpu/gguf_quantize.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <fstream>
#include <random>

#include "core/error.h"
#include "kernels/cpu/dequantize.h"
#include "test_paths.h"

namespace lowbit::kernels::cpu {
namespace {

constexpr int64_t kRows = 12, kCols = 512;

std::vector<uint8_t> read_bytes(const std::string& rel) {
  const std::string path = testing::source_path("tests/fixtures/quantizer/" + rel);
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing fixture " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> read_floats(const std::string& rel) {
  auto b = read_bytes(rel);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, int64_t rows, int64_t cols,
                              const float* imatrix) {
  std::vector<uint8_t> out(size_t(rows) * *dtype_bytes(t, uint64_t(cols)));
  quantize_rows(t, x.data(), rows, cols, imatrix, out.data());
  return out;
}

// Names the first differing row and byte, so a mismatch says which distribution broke.
void expect_same_bytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const size_t row_bytes = want.size() / kRows;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      ADD_FAILURE() << what << ": first difference in row " << i / row_bytes << " at byte "
                    << i % row_bytes << " (got " << int(got[i]) << ", llama.cpp " << int(want[i])
                    << ")";
      return;
    }
  }
}

struct Case {
  DType type;
  bool imatrix;
};

class LlamaCppBytes : public ::testing::TestWithParam<Case> {};

TEST_P(LlamaCppBytes, MatchesGgmlQuantizeChunk) {
  const Case c = GetParam();
  const auto x = read_floats("input.f32");
  const auto im = read_floats("imatrix.f32");
  ASSERT_EQ(x.size(), size_t(kRows * kCols));
  const std::string file = std::string(name(c.type)) + (c.imatrix ? ".imatrix.bin" : ".bin");
  expect_same_bytes(quantize(c.type, x, kRows, kCols, c.imatrix ? im.data() : nullptr),
                    read_bytes(file), file);
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (DType t :
       {DType::Q4_0,  DType::Q4_1,    DType::Q5_0,   DType::Q5_1,  DType::Q8_0,   DType::Q2_K,
        DType::Q3_K,  DType::Q4_K,    DType::Q5_K,   DType::Q6_K,  DType::IQ4_NL, DType::IQ4_XS,
        DType::TQ1_0, DType::TQ2_0,   DType::MXFP4,  DType::F16,   DType::BF16,   DType::IQ3_XXS,
        DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ1_S,  DType::IQ1_M}) {
    // IQ2_XXS, IQ2_XS and IQ1_S cannot be made without an importance matrix (as in ggml).
    if (!gguf_quantize_requires_imatrix(t)) v.push_back({t, false});
    // These ignore an importance matrix in ggml (and so in lowbit; checked below).
    const bool no_imatrix = t == DType::Q8_0 || t == DType::F16 || t == DType::BF16 ||
                            t == DType::TQ1_0 || t == DType::TQ2_0 || t == DType::MXFP4;
    if (!no_imatrix) v.push_back({t, true});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, LlamaCppBytes, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           return std::string(name(info.param.type)) +
                                  (info.param.imatrix ? "_imatrix" : "");
                         });

// Relative RMS error of quantize -> dequantize on gaussian rows: a loose per-type bound that
// catches a wrong layout (which gives errors near 1) on shapes the fixtures do not cover.
TEST(GgufQuantize, RoundTripErrorOnOddShapes) {
  struct Bound {
    DType t;
    double max_rel_rms;
  };
  const Bound bounds[] = {
      {DType::Q8_0, 0.01},   {DType::Q5_0, 0.05},   {DType::Q5_1, 0.05},   {DType::Q4_0, 0.12},
      {DType::Q4_1, 0.1},    {DType::IQ4_NL, 0.1},  {DType::Q6_K, 0.03},   {DType::Q5_K, 0.05},
      {DType::Q4_K, 0.1},    {DType::IQ4_XS, 0.1},  {DType::Q3_K, 0.2},    {DType::Q2_K, 0.4},
      {DType::MXFP4, 0.2},   {DType::TQ2_0, 0.95},  {DType::TQ1_0, 0.95},  {DType::F16, 1e-3},
      {DType::BF16, 1e-2},   {DType::IQ3_S, 0.25},  {DType::IQ3_XXS, 0.3}, {DType::IQ2_S, 0.4},
      {DType::IQ2_XS, 0.45}, {DType::IQ2_XXS, 0.5}, {DType::IQ1_M, 0.6},   {DType::IQ1_S, 0.65}};
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.f, 1.f);
  for (const Bound& b : bounds) {
    const int64_t block = traits(b.t).block_elems;
    for (int64_t rows : {1, 3, 7}) {
      const int64_t cols = block * (block == 256 ? 3 : 5);
      std::vector<float> x(size_t(rows * cols));
      for (auto& v : x) v = g(rng) * 0.3f + 0.05f;
      std::vector<float> im(static_cast<size_t>(cols));
      for (auto& v : im) v = std::fabs(g(rng)) + 0.01f;
      for (const float* imatrix : {(const float*)nullptr, (const float*)im.data()}) {
        if (!imatrix && gguf_quantize_requires_imatrix(b.t)) continue;
        auto q = quantize(b.t, x, rows, cols, imatrix);
        std::vector<float> y(x.size());
        dequantize_ref(b.t, q.data(), int64_t(x.size()), y.data());
        double err = 0, ref = 0;
        for (size_t i = 0; i < x.size(); ++i) {
          err += double(y[i] - x[i]) * (y[i] - x[i]);
          ref += double(x[i]) * x[i];
        }
        EXPECT_LT(std::sqrt(err / ref), b.max_rel_rms)
            << name(b.t) << " rows " << rows << " cols " << cols << (imatrix ? " imatrix" : "");
      }
    }
  }
}

// ggml's ternary and MXFP4 quantizers take no importance matrix; lowbit's ignore it too.
TEST(GgufQuantize, TernaryAndMxfp4IgnoreTheImatrix) {
  const auto x = read_floats("input.f32");
  const auto im = read_floats("imatrix.f32");
  for (DType t : {DType::TQ1_0, DType::TQ2_0, DType::MXFP4})
    EXPECT_EQ(quantize(t, x, kRows, kCols, im.data()), quantize(t, x, kRows, kCols, nullptr))
        << name(t);
}

TEST(GgufQuantize, SameBytesForAnyThreadCount) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.f, 1.f);
  const int64_t rows = 300, cols = 512;  // above the parallel threshold
  std::vector<float> x(size_t(rows * cols));
  for (auto& v : x) v = g(rng);
  for (DType t : {DType::Q4_K, DType::IQ4_XS, DType::Q5_0, DType::IQ3_S, DType::IQ1_M}) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    auto one = quantize(t, x, rows, cols, nullptr);
    omp_set_num_threads(4);
    auto four = quantize(t, x, rows, cols, nullptr);
    omp_set_num_threads(saved);
    EXPECT_EQ(one, four) << name(t);
  }
}

TEST(GgufQuantize, RejectsUnsupportedTypesAndRowLengths) {
  std::vector<float> x(512, 1.f);
  std::vector<uint8_t> out(4096);
  EXPECT_THROW(quantize_rows(DType::Q8_K, x.data(), 1, 256, nullptr, out.data()), Error);
  try {
    quantize_rows(DType::Q4_K, x.data(), 2, 160, nullptr, out.data());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_rows(DType::Q4_0, x.data(), 1, 48, nullptr, out.data()), Error);
  EXPECT_TRUE(gguf_quantize_supports(DType::IQ4_XS));
  EXPECT_TRUE(gguf_quantize_supports(DType::TQ1_0));
  EXPECT_TRUE(gguf_quantize_supports(DType::IQ1_S));
  EXPECT_FALSE(gguf_quantize_supports(DType::Q8_K));
}

// IQ2_XXS, IQ2_XS and IQ1_S need an importance matrix (ggml asserts one): a clear error.
TEST(GgufQuantize, LowBitIQuantsNeedAnImatrix) {
  std::vector<float> x(256, 0.5f);
  std::vector<uint8_t> out(4096);
  for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ1_S}) {
    EXPECT_TRUE(gguf_quantize_requires_imatrix(t));
    try {
      quantize_rows(t, x.data(), 1, 256, nullptr, out.data());
      ADD_FAILURE() << name(t);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("importance matrix"), std::string::npos) << e.what();
    }
  }
  for (DType t : {DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_S, DType::IQ1_M})
    EXPECT_FALSE(gguf_quantize_requires_imatrix(t)) << name(t);
}

}  // namespace
}  // namespace lowbit::kernels::cpu
