// Reference (plain scalar) codecs of the weight formats the CPU kernels compute with
// (FORMATS.md §8.5; block structs in gguf_blocks.h, the K/IQ/TQ/MXFP4 decoders in
// gguf_dequantize.h).
// These are the ground truth the SIMD variants are tested against: every decoded value is
// computed exactly as ggml's dequantize_row_* does in fp32, so results are bit-exact.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "kernels/cpu/gguf_blocks.h"  // the block structs

namespace lowbit::kernels::cpu {

// Whether the CPU kernels handle `t`: F32, F16, BF16 and every GGUF block format (Q4_0..Q8_1,
// Q2_K..Q8_K, IQ1_S..IQ4_XS, TQ1_0, TQ2_0, MXFP4).
bool cpu_kernel_supports(DType t);

// A comma-separated list of the supported formats, for messages.
std::string cpu_kernel_supported_list();

// Decodes `k` elements (a whole number of blocks) of format `t` starting at `src` into
// out[0..k). Precondition: cpu_kernel_supports(t) and k is a multiple of the block size.
void dequantize_ref(DType t, const void* src, int64_t k, float* out);

}  // namespace lowbit::kernels::cpu
