#include "kernels/cpu/ggml_linear.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/error.h"
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

namespace {

// LOWBIT_PROMPT_GEMM=0 turns the repacked GEMM off (read once): A/B benchmarks, and a way back
// to the row-wise kernels without a rebuild.
bool prompt_gemm_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("LOWBIT_PROMPT_GEMM");
    return !(v && std::string_view(v) == "0");
  }();
  return enabled;
}

}  // namespace

std::shared_ptr<const PackedGemmWeights> prepare_linear_ggml(const WeightMatrix& w) {
  if (!gemm_supports(w.dtype) || active_isa() < Isa::kAvx512 || !prompt_gemm_enabled())
    return nullptr;
  return std::make_shared<const PackedGemmWeights>(pack_gemm_weights(w));
}

void linear_ggml_prepared(const WeightMatrix& w, const PackedGemmWeights* packed, const float* x,
                          int64_t m, float* y) {
  if (packed && m >= 2 && !exact_activations() && active_isa() == Isa::kAvx512) {
    if (packed->dtype != w.dtype || packed->n != w.n || packed->k != w.k)
      fail("linear_ggml_prepared: packed {} [{}, {}] does not belong to the {} weight [{}, {}]",
           name(packed->dtype), packed->n, packed->k, name(w.dtype), w.n, w.k);
    return linear_gemm_isa(Isa::kAvx512, *packed, x, m, y);
  }
  linear_ggml(w, x, m, y);
}

}  // namespace lowbit::kernels::cpu
