// CPU matrix products y = x · Wᵀ with W stored in its checkpoint format (row-major [n, k],
// block formats packed along k) and fp32 activations / outputs.
//   x: [m, k] fp32 (row stride k), y: [m, n] fp32 (row stride n).
// Rows of W are split across threads (OpenMP); for m > 1 each row of W is decoded once and
// used for all m activations, so prompt processing reads the weights once.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "kernels/cpu/cpu_features.h"

namespace lowbit::kernels::cpu {

struct WeightMatrix {
  DType dtype;
  const void* data;  // n rows of dtype_bytes(dtype, k) bytes each
  int64_t n;         // output features (rows)
  int64_t k;         // input features (row length; a multiple of the block size)
};

// Whether the CPU kernels can compute with `dtype` weights; an empty string means yes,
// otherwise the reason (e.g. "Q4_K: no CPU kernel yet").
std::string cannot_implement(DType dtype);

// y[m, n] = x[m, k] · Wᵀ. Uses AVX-512 / AVX2 variants when the CPU has them.
void linear(const WeightMatrix& w, const float* x, int64_t m, float* y);

// q8act: activation precision for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights (process-wide). By default
// linear() quantizes each activation row to 8-bit blocks once and uses integer dot products,
// like llama.cpp (q8_activation.h); exact = fp32 activations times the exact dequantized
// weights (linear_isa()). The default is exact iff LOWBIT_EXACT_ACTIVATIONS=1 (read once);
// tests comparing against fp32 references call set_exact_activations(true).
// F32/F16/BF16 weights always use fp32 activations.
void set_exact_activations(bool exact);
bool exact_activations();

// Decodes row `row` of W into fp32 (k values): embedding lookup and tests use it.
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

// Plain scalar reference of linear() (double accumulation), for tests.
void linear_reference(const WeightMatrix& w, const float* x, int64_t m, float* y);

// linear() / dequantize_row() at a given SIMD level, always with exact fp32 activations (tests and benchmarks compare levels).
// Throws lowbit::Error when this CPU cannot run `isa` (see isa_supported()).
void linear_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y);
void dequantize_row_isa(Isa isa, const WeightMatrix& w, int64_t row, float* out);

}  // namespace lowbit::kernels::cpu
