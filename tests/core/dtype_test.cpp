#include "core/dtype.h"

#include <gtest/gtest.h>

#include "core/checked_math.h"
#include "core/half.h"

namespace lowbit {
namespace {

TEST(DType, GgufIdsRoundTrip) {
  for (int i = 0; i < int(DType::kCount); ++i) {
    const auto& t = traits(DType(i));
    if (t.gguf_id < 0) continue;
    auto back = dtype_from_gguf_id(uint32_t(t.gguf_id));
    ASSERT_TRUE(back.has_value()) << t.name;
    EXPECT_EQ(*back, DType(i));
  }
  EXPECT_FALSE(dtype_from_gguf_id(4).has_value());  // removed Q4_2
  EXPECT_FALSE(dtype_from_gguf_id(1000).has_value());
}

TEST(DType, BytesRejectPartialBlocksAndOverflow) {
  EXPECT_EQ(dtype_bytes(DType::Q4_0, 64), 36u);
  EXPECT_FALSE(dtype_bytes(DType::Q4_0, 33).has_value());
  EXPECT_FALSE(dtype_bytes(DType::F32, uint64_t(1) << 63).has_value());
  EXPECT_FALSE(checked_align_up(~uint64_t(0) - 3, 32).has_value());
  EXPECT_EQ(checked_align_up(33, 32), 64u);
}

TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << h;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), f32_to_f16(1.0f));  // tie -> even
  EXPECT_EQ(f16_to_f32(f32_to_f16(65520.0f)), INFINITY);
  EXPECT_EQ(f16_to_f32(f32_to_f16(65519.0f)), 65504.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(1e-8f)), 0.0f);
}

TEST(Half, Bf16AndFp8) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.00390625f)), 1.0f);  // tie -> even
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7f)));
  EXPECT_EQ(fp8_e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

}  // namespace
}  // namespace lowbit
