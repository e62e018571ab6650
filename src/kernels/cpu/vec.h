// fp32 vector helpers for model code (attention, norms), SIMD-dispatched like linear():
// AVX-512 / AVX2 variants when the CPU has them, LOWBIT_CPU_ISA lowers the level.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_features.h"

namespace lowbit::kernels::cpu {

// Σ a[i]·b[i] (fp32 accumulation in several independent lanes).
float dot_f32(const float* a, const float* b, int64_t n);

// y[i] += a·x[i]
void axpy_f32(float a, const float* x, float* y, int64_t n);

// The active level's dot_f32 / axpy_f32 themselves, for loops that call them per cached
// position (attention at head_dim 64: the per-call dispatch was ~7% of prompt time).
using DotF32Fn = float (*)(const float*, const float*, int64_t);
using AxpyF32Fn = void (*)(float, const float*, float*, int64_t);
DotF32Fn dot_f32_kernel();
AxpyF32Fn axpy_f32_kernel();

// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i]   (w == nullptr: no weight).
// The mean of squares is accumulated in double, then the inverse RMS is rounded to fp32 and
// applied as PyTorch / HF do (x · rsqrt(var + eps), then · w), so results match to ~1 ulp.
// `out` may alias `x`.
void rms_norm_f32(const float* x, const float* w, float eps, float* out, int64_t n);

// In place: x[i] = exp(x[i] − max) / Σ exp(x[j] − max). −inf entries become 0; a row that is
// all −inf becomes NaN (as in PyTorch); n == 0 is a no-op. The sum is accumulated in double.
void softmax_f32(float* x, int64_t n);

// The same at an explicit level (tests); throws lowbit::Error when the CPU lacks `isa`.
float dot_f32_isa(Isa isa, const float* a, const float* b, int64_t n);
void axpy_f32_isa(Isa isa, float a, const float* x, float* y, int64_t n);
void rms_norm_f32_isa(Isa isa, const float* x, const float* w, float eps, float* out, int64_t n);
void softmax_f32_isa(Isa isa, float* x, int64_t n);

}  // namespace lowbit::kernels::cpu
