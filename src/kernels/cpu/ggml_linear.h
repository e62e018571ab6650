// linear() with ggml's CPU arithmetic for the `gguf` method: ggml converts the activations to
// its weight type's `vec_dot_type` before every dot product. For the block formats linear()
// already does that (Q8_0 / Q8_1 / Q8_K blocks, q8_activation.h / kquant_dot.h); for F16 and
// BF16 weights ggml rounds each activation to F16 / BF16 (round to nearest even, as ggml's
// fp32 -> fp16 / bf16 conversion), multiplies (exact in fp32: the product of two 11- or 8-bit
// mantissas fits in 24 bits) and accumulates in fp32 — which the fp32 kernels do on the
// rounded copy. F32 weights stay fp32 (ggml's vec_dot_type for F32 is F32).
// The `unquantized` method keeps plain linear(): HF checkpoints are compared with fp32
// transformers.
//   x: [m, k] fp32, y: [m, n] fp32 (as linear()).
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/cpu/linear.h"
#include "kernels/cpu/q8_gemm.h"

namespace lowbit::kernels::cpu {

// Rounds n fp32 values to `dtype` (F16 or BF16) and back, round to nearest even; other
// dtypes: a plain copy.
void round_activations_to(DType dtype, const float* x, int64_t n, float* out);

// y[m, n] = x[m, k] · Wᵀ as ggml's CPU backend computes it (see above). With
// exact_activations() set (tests, LOWBIT_EXACT_ACTIVATIONS=1) this is linear() unchanged.
void linear_ggml(const WeightMatrix& w, const float* x, int64_t m, float* y);

// What a layer prepares once at load so that linear_ggml_prepared() can run the repacked GEMM
// (q8_gemm.h) — W in the GEMM layout when W's format uses it (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// IQ4_NL, IQ4_XS, Q4_K, Q5_K, Q6_K) and the active SIMD level has its kernel (AVX-512 VNNI);
// null otherwise (then nothing is copied), and always null with LOWBIT_PROMPT_GEMM=0 in the
// environment.
std::shared_ptr<const PackedGemmWeights> prepare_linear_ggml(const WeightMatrix& w);

// linear_ggml() with the prepared layout: every product goes through the GEMM when `packed` is
// set, generation (m = 1) included — from the L3 cache 2-3.6x the row-wise kernels, from DRAM
// equal (bench/q8_gemm_bench.cpp) — so the original blocks are no longer read; except Q4_1 /
// Q5_1 prompts (m > 1), which keep the row-wise kernels unless LOWBIT_PROMPT_GEMM=all (parity
// tolerance, ggml_linear.cpp). Its outputs are
// the scalar int8 reference's bits (the row-wise AVX-512 kernels differ from those only in fp32
// summation order). exact_activations() and a lower SIMD level keep linear_ggml().
void linear_ggml_prepared(const WeightMatrix& w, const PackedGemmWeights* packed, const float* x,
                          int64_t m, float* y);

}  // namespace lowbit::kernels::cpu
