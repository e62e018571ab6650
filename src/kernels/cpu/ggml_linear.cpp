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

// LOWBIT_PROMPT_GEMM (read once): unset = the repacked GEMM for every format it has, except
// that Q4_1 / Q5_1 prompts (m > 1) keep the row-wise kernels; "all" uses it for their prompts
// too; "0" turns it off (A/B benchmarks, and a way back to the row-wise kernels without a
// rebuild). Why Q4_1 / Q5_1 prompts wait for a decision on the parity tolerance: their GEMM
// moves SmolLM2-135M Q4_1's WikiText-2 perplexity (20 chunks) from 27.9374 to 27.9221, 0.060
// from llama.cpp's 27.9819 where LlamaCppParity.SmolLM2Perplexity allows 0.05 (that file moves
// by 0.02-0.04 on any last-bit change; see llama_cpp_parity_test.cpp). Generation (m = 1) takes
// the GEMM for them as for the other formats (SmolLM2 Q4_1, 2 threads: see docs/benchmarks.md).
enum class GemmUse { kOff, kDefault, kAll };
GemmUse prompt_gemm_use() {
  static const GemmUse use = [] {
    const char* v = std::getenv("LOWBIT_PROMPT_GEMM");
    const std::string_view s = v ? v : "";
    return s == "0" ? GemmUse::kOff : s == "all" ? GemmUse::kAll : GemmUse::kDefault;
  }();
  return use;
}

}  // namespace

std::shared_ptr<const PackedGemmWeights> prepare_linear_ggml(const WeightMatrix& w) {
  const GemmUse use = prompt_gemm_use();
  if (!gemm_supports(w.dtype) || active_isa() < Isa::kAvx512 || use == GemmUse::kOff)
    return nullptr;
  return std::make_shared<const PackedGemmWeights>(pack_gemm_weights(w));
}

void linear_ggml_prepared(const WeightMatrix& w, const PackedGemmWeights* packed, const float* x,
                          int64_t m, float* y) {
  const bool with_min = w.dtype == DType::Q4_1 || w.dtype == DType::Q5_1;
  if (packed && !exact_activations() && active_isa() == Isa::kAvx512 &&
      (m == 1 || !with_min || prompt_gemm_use() == GemmUse::kAll)) {
    if (packed->dtype != w.dtype || packed->n != w.n || packed->k != w.k)
      fail("linear_ggml_prepared: packed {} [{}, {}] does not belong to the {} weight [{}, {}]",
           name(packed->dtype), packed->n, packed->k, name(w.dtype), w.n, w.k);
    return linear_gemm_isa(Isa::kAvx512, *packed, x, m, y);
  }
  linear_ggml(w, x, m, y);
}

}  // namespace lowbit::kernels::cpu
