#include "core/dtype.h"

#include <array>

#include "core/checked_math.h"

namespace lowbit {
namespace {

// Order follows the DType enum; checked once at start-up below.
constexpr std::array<DTypeTraits, size_t(DType::kCount)> kTable = {{
    {DType::F64, "F64", 1, 8, 28, "F64", true},
    {DType::F32, "F32", 1, 4, 0, "F32", true},
    {DType::F16, "F16", 1, 2, 1, "F16", true},
    {DType::BF16, "BF16", 1, 2, 30, "BF16", true},
    {DType::F8_E4M3, "F8_E4M3", 1, 1, -1, "F8_E4M3", true},
    {DType::F8_E5M2, "F8_E5M2", 1, 1, -1, "F8_E5M2", true},
    {DType::I64, "I64", 1, 8, 27, "I64", false},
    {DType::I32, "I32", 1, 4, 26, "I32", false},
    {DType::I16, "I16", 1, 2, 25, "I16", false},
    {DType::I8, "I8", 1, 1, 24, "I8", false},
    {DType::U8, "U8", 1, 1, -1, "U8", false},
    {DType::BOOL, "BOOL", 1, 1, -1, "BOOL", false},
    {DType::Q4_0, "Q4_0", 32, 18, 2, "", false},
    {DType::Q4_1, "Q4_1", 32, 20, 3, "", false},
    {DType::Q5_0, "Q5_0", 32, 22, 6, "", false},
    {DType::Q5_1, "Q5_1", 32, 24, 7, "", false},
    {DType::Q8_0, "Q8_0", 32, 34, 8, "", false},
    {DType::Q8_1, "Q8_1", 32, 36, 9, "", false},
    {DType::Q2_K, "Q2_K", 256, 84, 10, "", false},
    {DType::Q3_K, "Q3_K", 256, 110, 11, "", false},
    {DType::Q4_K, "Q4_K", 256, 144, 12, "", false},
    {DType::Q5_K, "Q5_K", 256, 176, 13, "", false},
    {DType::Q6_K, "Q6_K", 256, 210, 14, "", false},
    {DType::Q8_K, "Q8_K", 256, 292, 15, "", false},
    {DType::IQ2_XXS, "IQ2_XXS", 256, 66, 16, "", false},
    {DType::IQ2_XS, "IQ2_XS", 256, 74, 17, "", false},
    {DType::IQ3_XXS, "IQ3_XXS", 256, 98, 18, "", false},
    {DType::IQ1_S, "IQ1_S", 256, 50, 19, "", false},
    {DType::IQ4_NL, "IQ4_NL", 32, 18, 20, "", false},
    {DType::IQ3_S, "IQ3_S", 256, 110, 21, "", false},
    {DType::IQ2_S, "IQ2_S", 256, 82, 22, "", false},
    {DType::IQ4_XS, "IQ4_XS", 256, 136, 23, "", false},
    {DType::IQ1_M, "IQ1_M", 256, 56, 29, "", false},
    {DType::TQ1_0, "TQ1_0", 256, 54, 34, "", false},
    {DType::TQ2_0, "TQ2_0", 256, 66, 35, "", false},
    {DType::MXFP4, "MXFP4", 32, 17, 39, "", false},
}};

constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < kTable.size(); ++i)
    if (size_t(kTable[i].dtype) != i) return false;
  return true;
}
static_assert(table_in_enum_order(), "kTable rows must follow the DType enum order");

}  // namespace

const DTypeTraits& traits(DType t) { return kTable[size_t(t)]; }

std::optional<DType> dtype_from_gguf_id(uint32_t id) {
  for (const auto& row : kTable)
    if (row.gguf_id >= 0 && uint32_t(row.gguf_id) == id) return row.dtype;
  return std::nullopt;
}

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
  for (const auto& row : kTable)
    if (!row.safetensors_name.empty() && row.safetensors_name == name) return row.dtype;
  return std::nullopt;
}

std::optional<uint64_t> dtype_bytes(DType t, uint64_t elems) {
  const auto& tr = traits(t);
  if (elems % tr.block_elems != 0) return std::nullopt;
  return checked_mul(elems / tr.block_elems, tr.block_bytes);
}

}  // namespace lowbit
