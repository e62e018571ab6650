// Internal: the entry points each SIMD variant (x86/*_avx2.cpp, x86/*_avx512.cpp) provides.
// Callers have already validated the WeightMatrix (supported dtype, k a multiple of the block
// size, n/k/m >= 0) and checked that the CPU runs the variant.
#pragma once

#include <cstdint>

#include "kernels/cpu/linear.h"

namespace lowbit::kernels::cpu {

// The size / block / data checks every WeightMatrix entry point shares (after its own dtype
// check); errors start with `op` ("linear", "linear_q8", ...).
void check_weight_matrix(const WeightMatrix& w, int64_t m, const char* op);

#define LOWBIT_DECLARE_ISA_KERNELS(ns)                                            \
  namespace ns {                                                                  \
  void linear(const WeightMatrix& w, const float* x, int64_t m, float* y);        \
  void dequantize_row(const WeightMatrix& w, int64_t row, float* out);            \
  float dot_f32(const float* a, const float* b, int64_t n);                       \
  void axpy_f32(float a, const float* x, float* y, int64_t n);                    \
  double sum_squares_f64(const float* x, int64_t n);                              \
  void scale_f32(const float* x, const float* w, float s, float* out, int64_t n); \
  float max_f32(const float* x, int64_t n);                                       \
  }

LOWBIT_DECLARE_ISA_KERNELS(avx2)
LOWBIT_DECLARE_ISA_KERNELS(avx512)
#undef LOWBIT_DECLARE_ISA_KERNELS

}  // namespace lowbit::kernels::cpu
