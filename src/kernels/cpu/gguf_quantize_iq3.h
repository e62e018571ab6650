// Internal to the GGUF quantizers: IQ3_XXS and IQ3_S rows (256-element super-blocks, 3.06 and
// 3.44 bits per weight), with ggml's arithmetic (quantize_iq3_xxs / quantize_iq3_s, what
// llama-quantize runs), so the bytes equal llama.cpp's. Called by quantize_rows()
// (gguf_quantize.h); qw is null or the row's n importance weights. ggml's IQ3 quantizers also
// run without an importance matrix (weights x² then).
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu::gguf_detail {

void quantize_row_iq3_xxs(const float* x, BlockIQ3_XXS* y, int64_t n, const float* qw);
void quantize_row_iq3_s(const float* x, BlockIQ3_S* y, int64_t n, const float* qw);

}  // namespace lowbit::kernels::cpu::gguf_detail
