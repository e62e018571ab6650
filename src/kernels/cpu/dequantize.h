// Reference (plain scalar) codecs of the weight formats the CPU kernels compute with, and the
// GGUF block structs they read (FORMATS.md §8.5; d and m are IEEE fp16, little-endian).
// These are the ground truth the SIMD variants are tested against: every decoded value is
// computed exactly as ggml's dequantize_row_* does in fp32, so results are bit-exact.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace lowbit::kernels::cpu {

// 32-element GGUF blocks. Packed so that sizeof matches the on-disk layout; fields are only
// read through memcpy'd copies or byte pointers (the blocks of a row are not aligned).
#pragma pack(push, 1)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
#pragma pack(pop)
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);

// Whether the CPU kernels handle `t` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1).
bool cpu_kernel_supports(DType t);

// A comma-separated list of the supported formats, for messages.
std::string cpu_kernel_supported_list();

// Decodes `k` elements (a whole number of blocks) of format `t` starting at `src` into
// out[0..k). Precondition: cpu_kernel_supports(t) and k is a multiple of the block size.
void dequantize_ref(DType t, const void* src, int64_t k, float* out);

}  // namespace lowbit::kernels::cpu
