// fp32 -> GGUF ternary (TQ1_0, TQ2_0) and MXFP4 blocks, with the same arithmetic as ggml's
// quantize_row_{tq1_0,tq2_0,mxfp4}_ref (which llama-quantize uses for these types; neither
// takes an importance matrix), so the bytes equal llama.cpp's. Called by quantize_rows()
// (gguf_quantize.h); k is a multiple of the block size (256 for TQ, 32 for MXFP4).
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu {

// Ternary: d = max|x| of the 256-block (fp16), trits t = round(x / d) + 1 in {0, 1, 2}.
// TQ2_0 stores 2 bits per trit; TQ1_0 packs 5 trits per byte as a base-3 fraction of 256.
void quantize_row_tq1_0(const float* x, BlockTQ1_0* y, int64_t k);
void quantize_row_tq2_0(const float* x, BlockTQ2_0* y, int64_t k);

// MXFP4 (OCP microscaling): per 32 elements an E8M0 exponent e = floor(log2(amax)) - 2 + 127
// and each element the nearest of the 16 e2m1 values times 2^(e-127).
void quantize_row_mxfp4(const float* x, BlockMXFP4* y, int64_t k);

}  // namespace lowbit::kernels::cpu
