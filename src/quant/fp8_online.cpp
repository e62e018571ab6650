#include "quant/fp8_online.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/fp8_checkpoint.h"
#include "quant/registry.h"

namespace lowbit::quant {
namespace {

[[noreturn]] void cpu_refusal(const LinearLayer& layer) {
  fail(
      "{}: quantization method 'fp8' (online FP8 W8A8) runs on the CUDA backend only: use "
      "--device cuda on a GPU of compute capability {}.{} or newer (Ada, Hopper); on the CPU "
      "use --quantization int8 or int4",
      layer.prefix, kFp8MinCapability / 10, kFp8MinCapability % 10);
}

class OnlineFp8Config : public QuantConfig {
 public:
  std::string name() const override { return "fp8"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"bf16"}; }
  int min_capability() const override { return kFp8MinCapability; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return nullptr;  // stays bf16, as vLLM's fp8 leaves it
    static const auto method = std::make_shared<OnlineFp8Method>();
    return method;
  }
};

}  // namespace

std::vector<TensorSpec> OnlineFp8Method::create_weights(const LinearLayer& layer) const {
  std::vector<TensorSpec> specs = {
      {"weight", {layer.out_features, layer.in_features}, {DType::F32, DType::F16, DType::BF16}}};
  if (layer.has_bias)
    specs.push_back({"bias", {layer.out_features}, {DType::F32, DType::F16, DType::BF16}});
  return specs;
}

void OnlineFp8Method::process_weights_after_loading(LinearLayer& layer) const {
  cpu_refusal(layer);
}

void OnlineFp8Method::apply(const LinearLayer& layer, const float*, int64_t, float*) const {
  cpu_refusal(layer);
}

uint64_t OnlineFp8Method::weight_bytes(const LinearLayer& layer) const {
  return uint64_t(layer.out_features) * uint64_t(layer.in_features) +
         uint64_t(layer.out_features) * 4;
}

MethodInfo fp8_method_info() {
  MethodInfo info;
  info.name = "fp8";
  info.description =
      "FP8 e4m3 W8A8. Checkpoints (quant_method \"fp8\": per-tensor weight_scale with static "
      "or dynamic activations, or weight_block_size blocks with weight_scale_inv): CPU, weights "
      "dequantized to bf16, activation quantization emulated; CUDA (sm_89+): FP8 W8A8 kernels on "
      "the stored codes. Online (--quantization fp8 on a float checkpoint, CUDA only): a scale per "
      "output "
      "row, activations quantized per token at run time";
  info.backends = {"cpu", "cuda"};
  info.from_config = [](const nlohmann::json& config) -> std::unique_ptr<QuantConfig> {
    if (!config.is_object())
      fail("fp8 quantization_config is {}, expected an object", config.dump());
    if (!config.empty()) return make_fp8_checkpoint_config(config);  // an FP8 checkpoint
    return std::make_unique<OnlineFp8Config>();
  };
  info.quantizes_online = true;
  info.min_capability = kFp8MinCapability;
  return info;
}

}  // namespace lowbit::quant
