// Internal to the GGUF quantizers: IQ2_XXS, IQ2_XS and IQ2_S rows (256-element super-blocks;
// 2.06, 2.31 and 2.56 bits per weight), with ggml's arithmetic (quantize_iq2_{xxs,xs,s}, what
// llama-quantize runs), so the bytes equal llama.cpp's. Called by quantize_rows()
// (gguf_quantize.h). IQ2_XXS and IQ2_XS need importance weights qw (ggml asserts them; the
// dispatcher refuses a null imatrix); IQ2_S takes null (weights sigma²/4 + x² then).
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu::gguf_detail {

void quantize_row_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t n, const float* qw);
void quantize_row_iq2_xs(const float* x, BlockIQ2_XS* y, int64_t n, const float* qw);
void quantize_row_iq2_s(const float* x, BlockIQ2_S* y, int64_t n, const float* qw);

}  // namespace lowbit::kernels::cpu::gguf_detail
