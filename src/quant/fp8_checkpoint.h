// FP8 checkpoints (FORMATS.md §4): e4m3fn weights [N, K] with float scales that are multiplied
// in, W[n, k] = e4m3(weight[n, k]) · scale, the scale granularity being
//   tensor   weight_scale [] or [1]                       (HF "fp8", CT FP8 preset)
//   channel  weight_scale [N, 1]                          (CT FP8_DYNAMIC; ModelOpt: [N])
//   block    weight_scale_inv (HF) / weight_scale (CT)    [ceil(N/bn), ceil(K/bk)]
// plus the scheme's activation quantization (quant/act_quant.h; static ones read input_scale
// [] or [1]). Used by the `fp8` method (HF quant_method "fp8", this file) and by
// compressed-tensors float-quantized groups.
// CPU: there is no FP8 GEMM; the weight is dequantized once to bf16 (2 bytes per weight, twice
// the checkpoint's 1) and the dense bf16 kernel runs it on activations rounded as the scheme
// says, so results match a W8A8 GPU up to accumulation order and the bf16 rounding of W.
// CUDA: refused for now (models/llama_cuda.cpp names the method and --device cpu).
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "quant/act_quant.h"
#include "quant/quant_method.h"

namespace lowbit::quant {

struct Fp8Scheme {
  enum class Scales : uint8_t { kTensor, kChannel, kBlock };
  Scales scales = Scales::kTensor;
  bool channel_1d = false;                    // kChannel scales stored [N] (ModelOpt), not [N, 1]
  int64_t block_n = 0, block_k = 0;           // kBlock
  std::string scale_suffix = "weight_scale";  // "weight_scale_inv" in HF block checkpoints
  ActQuant act;
  std::string label;  // "FP8_DYNAMIC", "fp8 block [128, 128]", ... for messages
};

class Fp8CheckpointMethod : public LinearMethod {
 public:
  // `method_name` names the method in messages; `notice` is shared by the layers of one model
  // so that the bf16 note is printed once.
  Fp8CheckpointMethod(std::string method_name, Fp8Scheme scheme,
                      std::shared_ptr<std::once_flag> notice);

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override;
  // Validates the scales (shape, positive, finite) and the codes (no NaN), dequantizes to bf16.
  void process_weights_after_loading(LinearLayer& layer) const override;
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;

  const Fp8Scheme& scheme() const { return scheme_; }
  const std::string& method_name() const { return method_name_; }

 private:
  std::string what(const LinearLayer& layer) const;
  std::string method_name_;
  Fp8Scheme scheme_;
  std::shared_ptr<std::once_flag> notice_;
};

// The `fp8` method's config for a checkpoint's quantization_config ({"quant_method": "fp8",
// "activation_scheme": "static" | "dynamic", "weight_block_size": [bn, bk] (optional),
// "ignored_layers" / "modules_to_not_convert" (optional)}). lm_head always stays unquantized.
std::unique_ptr<QuantConfig> make_fp8_checkpoint_config(const nlohmann::json& config);

}  // namespace lowbit::quant
