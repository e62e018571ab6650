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
// CUDA: decode() hands the stored codes and scales as they are to models/w8_checkpoint_cuda.h,
// which uploads them into the W8A8 kernels' representation (no dequantize / re-quantize).
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

// One layer's checkpoint weight as stored, validated: e4m3 codes [n, k] (a view of the file's
// bytes, alive as long as the WeightSource) and fp32 scales in the scheme's granularity
// (1 | n | ceil(n/block_n)·ceil(k/block_k), row-major), all positive and finite.
struct Fp8StoredWeight {
  int64_t n = 0, k = 0;
  const uint8_t* codes = nullptr;
  std::vector<float> scales;
  float input_scale = 0;  // static activations: the stored input_scale, else 0
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

  // The layer's codes and scales as loaded per create_weights, validated (scales positive and
  // finite, no e4m3 NaN code; errors name the layer and the element).
  Fp8StoredWeight decode(const LinearLayer& layer) const;
  // bf16 bits of W[r, c] = e4m3(code) · scale, the CPU's weight (also the GPU's fallback for a
  // granularity no W8A8 kernel has).
  std::vector<uint16_t> dequantize_bf16(const Fp8StoredWeight& w) const;

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
