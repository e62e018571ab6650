#include "kernels/cpu/vec.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/isa_kernels.h"

namespace lowbit::kernels::cpu {
namespace {

// Scalar references. Four lanes keep the summation order close to the SIMD variants'.
float dot_scalar(const float* a, const float* b, int64_t n) {
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) s[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

double sum_squares_scalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

void scale_scalar(const float* x, const float* w, float s, float* out, int64_t n) {
  if (w) {
    for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * s);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * s;
  }
}

float max_scalar(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

double sum_squares_at(Isa isa, const float* x, int64_t n) {
  switch (isa) {
    case Isa::kAvx512:
      return avx512::sum_squares_f64(x, n);
    case Isa::kAvx2:
      return avx2::sum_squares_f64(x, n);
    default:
      return sum_squares_scalar(x, n);
  }
}

void scale_at(Isa isa, const float* x, const float* w, float s, float* out, int64_t n) {
  switch (isa) {
    case Isa::kAvx512:
      return avx512::scale_f32(x, w, s, out, n);
    case Isa::kAvx2:
      return avx2::scale_f32(x, w, s, out, n);
    default:
      return scale_scalar(x, w, s, out, n);
  }
}

float max_at(Isa isa, const float* x, int64_t n) {
  switch (isa) {
    case Isa::kAvx512:
      return avx512::max_f32(x, n);
    case Isa::kAvx2:
      return avx2::max_f32(x, n);
    default:
      return max_scalar(x, n);
  }
}

}  // namespace

float dot_f32_isa(Isa isa, const float* a, const float* b, int64_t n) {
  require_isa(isa);
  switch (isa) {
    case Isa::kAvx512:
      return avx512::dot_f32(a, b, n);
    case Isa::kAvx2:
      return avx2::dot_f32(a, b, n);
    default:
      return dot_scalar(a, b, n);
  }
}

void axpy_f32_isa(Isa isa, float a, const float* x, float* y, int64_t n) {
  require_isa(isa);
  switch (isa) {
    case Isa::kAvx512:
      return avx512::axpy_f32(a, x, y, n);
    case Isa::kAvx2:
      return avx2::axpy_f32(a, x, y, n);
    default:
      return axpy_scalar(a, x, y, n);
  }
}

void rms_norm_f32_isa(Isa isa, const float* x, const float* w, float eps, float* out, int64_t n) {
  require_isa(isa);
  if (n <= 0) return;
  const double mean = sum_squares_at(isa, x, n) / double(n);
  // PyTorch: torch.rsqrt(variance + eps) on fp32 values; both roundings are reproduced.
  const float var = float(mean);
  const float inv = float(1.0 / std::sqrt(double(var + eps)));
  scale_at(isa, x, w, inv, out, n);
}

void softmax_f32_isa(Isa isa, float* x, int64_t n) {
  require_isa(isa);
  if (n <= 0) return;
  const float mx = max_at(isa, x, n);
  if (std::isinf(mx) && mx < 0) {
    // Every entry is −inf (fully masked): PyTorch gives NaN; a uniform distribution would
    // invent attention, so follow PyTorch.
    for (int64_t i = 0; i < n; ++i) x[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);  // expf: correctly rounded in glibc ≥ 2.28 for most inputs
    sum += x[i];
  }
  const float s = float(sum);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / s;
}

DotF32Fn dot_f32_kernel() {
  static const DotF32Fn fn = [] {
    switch (active_isa()) {
      case Isa::kAvx512:
        return &avx512::dot_f32;
      case Isa::kAvx2:
        return &avx2::dot_f32;
      default:
        return &dot_scalar;
    }
  }();
  return fn;
}

AxpyF32Fn axpy_f32_kernel() {
  static const AxpyF32Fn fn = [] {
    switch (active_isa()) {
      case Isa::kAvx512:
        return &avx512::axpy_f32;
      case Isa::kAvx2:
        return &avx2::axpy_f32;
      default:
        return &axpy_scalar;
    }
  }();
  return fn;
}

float dot_f32(const float* a, const float* b, int64_t n) { return dot_f32_kernel()(a, b, n); }
void axpy_f32(float a, const float* x, float* y, int64_t n) { axpy_f32_kernel()(a, x, y, n); }
void rms_norm_f32(const float* x, const float* w, float eps, float* out, int64_t n) {
  rms_norm_f32_isa(active_isa(), x, w, eps, out, n);
}
void softmax_f32(float* x, int64_t n) { softmax_f32_isa(active_isa(), x, n); }

}  // namespace lowbit::kernels::cpu
