// One enum for every element or block format lowbit stores (DESIGN.md §1, "Format").
// Plain element types (F32, BF16, I8, ...) have block_elems == 1; packed block formats
// (GGUF Q4_0, Q8_0, ...) list how many elements one block holds and its byte size.
// The reference codec of each format lives in kernels/cpu/dequantize.*; this table is pure
// metadata so that loaders can validate byte sizes without knowing any codec.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace lowbit {

enum class DType : uint8_t {
  // Plain element types.
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  I64,
  I32,
  I16,
  I8,
  U8,
  BOOL,
  // GGUF block formats (ggml-common.h).
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q8_0,
  Q8_1,
  Q2_K,
  Q3_K,
  Q4_K,
  Q5_K,
  Q6_K,
  Q8_K,
  IQ2_XXS,
  IQ2_XS,
  IQ3_XXS,
  IQ1_S,
  IQ4_NL,
  IQ3_S,
  IQ2_S,
  IQ4_XS,
  IQ1_M,
  TQ1_0,
  TQ2_0,
  MXFP4,
  kCount
};

struct DTypeTraits {
  DType dtype;
  std::string_view name;              // as printed in messages: "F32", "BF16", "Q4_0", ...
  uint32_t block_elems;               // elements per block (1 for plain types)
  uint32_t block_bytes;               // bytes per block
  int32_t gguf_id;                    // ggml_type id, -1 when GGUF cannot store it
  std::string_view safetensors_name;  // "F32", "F8_E4M3", ... empty when not a safetensors dtype
  bool is_float;                      // plain floating-point element type
};

const DTypeTraits& traits(DType t);
inline std::string_view name(DType t) { return traits(t).name; }

std::optional<DType> dtype_from_gguf_id(uint32_t id);
std::optional<DType> dtype_from_safetensors_name(std::string_view name);

// Bytes needed for `elems` elements laid out as whole blocks; nullopt when `elems` is not a
// multiple of the block size or the product overflows.
std::optional<uint64_t> dtype_bytes(DType t, uint64_t elems);

}  // namespace lowbit
