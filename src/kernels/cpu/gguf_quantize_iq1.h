// Internal to the GGUF quantizers: IQ1_S and IQ1_M rows (256-element super-blocks; 1.56 and
// 1.75 bits per weight), with ggml's arithmetic (quantize_iq1_s / quantize_iq1_m, what
// llama-quantize runs), so the bytes equal llama.cpp's. Called by quantize_rows()
// (gguf_quantize.h). IQ1_S needs importance weights qw (ggml asserts them; the dispatcher
// refuses a null imatrix); IQ1_M takes null (weights x² then).
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu::gguf_detail {

void quantize_row_iq1_s(const float* x, BlockIQ1_S* y, int64_t n, const float* qw);
void quantize_row_iq1_m(const float* x, BlockIQ1_M* y, int64_t n, const float* qw);

}  // namespace lowbit::kernels::cpu::gguf_detail
