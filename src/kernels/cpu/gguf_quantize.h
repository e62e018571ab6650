// fp32 -> GGUF block quantizers, the inverse of gguf_dequantize.h / dequantize.h. Each one
// makes the same fp32 operations in the same order as ggml's quantizer for that type (as
// llama-quantize runs it through ggml_quantize_chunk), so the output bytes equal llama.cpp's:
//   * without an importance matrix: the reference quantizers quantize_row_*_ref (Q4_0, Q4_1,
//     Q5_0, Q5_1, Q8_0, Q2_K..Q6_K) and quantize_iq4_nl / quantize_iq4_xs (7 scale tries);
//   * with one (`imatrix`: n_per_row non-negative weights, the mean squared activation of each
//     input column): the weighted searches quantize_row_*_impl of the same types (Q8_0 ignores
//     the weights, as ggml does).
//   * the i-quants IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M
//     (gguf_quantize_iq{1,2,3}.h) repeat ggml's lattice searches quantize_iq*; some of them
//     need an importance matrix;
//   * TQ1_0, TQ2_0 and MXFP4 (gguf_quantize_tq_mxfp4.h) never use an importance matrix.
// F32 / F16 / BF16 are plain conversions (fp16 and bf16 round to nearest even, NaN kept quiet).
//
// Must be compiled without FMA contraction (the default for files not named *_avx2/avx512):
// a fused multiply-add changes roundings and so the chosen quants.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace lowbit::kernels::cpu {

// Whether quantize_rows() can produce `t`.
bool gguf_quantize_supports(DType t);
// A comma-separated list of those types, for messages.
std::string gguf_quantize_supported_list();
// Whether quantizing to `t` needs an importance matrix: IQ2_XXS, IQ2_XS and IQ1_S (ggml's
// quantizers assert one; ggml_quantize_requires_imatrix). llama-quantize demands one for more
// tensors of its IQ file types (see io::tensor_requires_imatrix), but the quantizers of IQ3_*,
// IQ2_S and IQ1_M run without one.
bool gguf_quantize_requires_imatrix(DType t);

// Quantizes `nrows` rows of `n_per_row` floats (row-major) into `t`, writing
// nrows × dtype_bytes(t, n_per_row) bytes to dst. n_per_row must be a multiple of t's block
// size; imatrix is null or n_per_row weights. Rows are quantized in parallel (OpenMP) when
// there are many; the bytes do not depend on the thread count.
// Throws lowbit::Error for an unsupported type or a bad row length.
void quantize_rows(DType t, const float* src, int64_t nrows, int64_t n_per_row,
                   const float* imatrix, void* dst);

}  // namespace lowbit::kernels::cpu
