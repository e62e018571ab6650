#include "kernels/cpu/ggml_linear.h"

#include <algorithm>
#include <vector>

#include "core/half.h"

namespace lowbit::kernels::cpu {

void round_activations_to(DType dtype, const float* x, int64_t n, float* out) {
  switch (dtype) {
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(f32_to_f16(x[i]));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    default:
      std::copy_n(x, n, out);
  }
}

void linear_ggml(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  const bool rounds = w.dtype == DType::F16 || w.dtype == DType::BF16;
  if (!rounds || exact_activations() || m <= 0 || w.k <= 0) return linear(w, x, m, y);
  // One rounded copy of the activations per product ([m, k] fp32), as ggml converts src1 once
  // into its work buffer.
  thread_local std::vector<float> rounded;
  rounded.resize(size_t(m * w.k));
  round_activations_to(w.dtype, x, m * w.k, rounded.data());
  linear(w, rounded.data(), m, y);
}

}  // namespace lowbit::kernels::cpu
