// `fp8`: online FP8 W8A8 quantization of an unquantized checkpoint on the CUDA backend, as
// vLLM's `--quantization fp8`: each linear weight (bf16 on the GPU) is quantized to e4m3 with
// one scale per output row; activations are quantized per token at run time (dynamic scales).
// FP8 tensor cores need compute capability 8.9 (Ada, Hopper). The CPU backend has no FP8
// kernels: loading on the CPU fails saying to use --device cuda.
// The registered `fp8` method also loads FP8 checkpoints (a non-empty quantization_config):
// quant/fp8_checkpoint.h.
#pragma once

#include "quant/quant_method.h"

namespace lowbit::quant {

// The per-layer method: declares the float weight (+ bias); the CUDA loader recognizes it
// (dynamic_cast) and quantizes on the GPU. process_weights_after_loading (the CPU path) throws.
class OnlineFp8Method : public LinearMethod {
 public:
  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override;
  void process_weights_after_loading(LinearLayer& layer) const override;
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;
};

// Minimum compute capability ×10 of `fp8`.
inline constexpr int kFp8MinCapability = 89;

}  // namespace lowbit::quant
