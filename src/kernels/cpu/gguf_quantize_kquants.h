// Internal to the GGUF quantizers: the K-quant row quantizers (Q2_K .. Q6_K), called by
// quantize_rows() (gguf_quantize.h). `k` elements (a whole number of 256-element super-blocks);
// qw null (ggml's reference quantizer) or per-element importance weights (the imatrix path).
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu::gguf_detail {

void quantize_row_q2_K(const float* x, BlockQ2_K* y, int64_t k, const float* qw);
void quantize_row_q3_K(const float* x, BlockQ3_K* y, int64_t k, const float* qw);
void quantize_row_q4_K(const float* x, BlockQ4_K* y, int64_t k, const float* qw);
void quantize_row_q5_K(const float* x, BlockQ5_K* y, int64_t k, const float* qw);
void quantize_row_q6_K(const float* x, BlockQ6_K* y, int64_t k, const float* qw);

}  // namespace lowbit::kernels::cpu::gguf_detail
