// dequantize_row() against the PyPI `gguf` package's decoder (tools/gen_kernel_fixtures.py
// wrote the blocks and its fp32 output under tests/fixtures/kernels/): bit-exact, every
// SIMD level.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/linear.h"
#include "test_paths.h"

namespace lowbit::kernels::cpu {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST(DequantizeFixtures, MatchGgufPythonBitExact) {
  constexpr int64_t kRows = 3, kK = 256;  // as written by the generator
  for (DType t :
       {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::F16, DType::BF16}) {
    const std::string base =
        lowbit::testing::source_path("tests/fixtures/kernels/") + std::string(name(t));
    auto raw = read_file(base + ".bin");
    auto expected_bytes = read_file(base + ".f32");
    ASSERT_EQ(raw.size(), kRows * *dtype_bytes(t, kK)) << name(t);
    ASSERT_EQ(expected_bytes.size(), size_t(kRows * kK * 4)) << name(t);
    WeightMatrix w{t, raw.data(), kRows, kK};
    for (Isa isa : testing::available_isas()) {
      for (int64_t r = 0; r < kRows; ++r) {
        std::vector<float> out(kK);
        dequantize_row_isa(isa, w, r, out.data());
        const uint8_t* want = expected_bytes.data() + r * kK * 4;
        for (int64_t i = 0; i < kK; ++i) {
          uint32_t got_bits, want_bits;
          std::memcpy(&got_bits, &out[size_t(i)], 4);
          std::memcpy(&want_bits, want + 4 * i, 4);
          ASSERT_EQ(got_bits, want_bits)
              << name(t) << " " << isa_name(isa) << " row " << r << " element " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace lowbit::kernels::cpu
