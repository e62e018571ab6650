// `modelopt`: NVIDIA TensorRT Model Optimizer FP8 exports (FORMATS.md §5.1, §5.3), configured by
// hf_quant_config.json ({"quantization": {"quant_algo": ..., "exclude_modules": [...]}}) or by
// config.json's quantization_config ({"quant_method": "modelopt", "quant_algo": ...,
// "ignore" | "exclude_modules": [...]}). Per quantized linear [N, K]:
//   FP8                        weight F8_E4M3 [N, K], weight_scale F32 [] (amax_W / 448),
//                              input_scale F32 [] (static per-tensor activations)
//   FP8_PER_CHANNEL_PER_TOKEN  weight_scale [N], activations dynamic per token
// computed by Fp8CheckpointMethod (quant/fp8_checkpoint.h); on CUDA by the FP8 W8A8 kernels on
// the stored codes (models/w8_checkpoint_cuda.h; static input scales become dynamic per token).
// Exclusions are fnmatch wildcards (`*`, `?`; "model.layers.0.mlp*" excludes the subtree);
// lm_head always stays unquantized.
// Other algorithms (NVFP4, W4A16_AWQ, MIXED_PRECISION, ...) are refused by name.
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/config_fields.h"
#include "quant/fp8_checkpoint.h"
#include "quant/fp8_online.h"
#include "quant/registry.h"

namespace lowbit::quant {
namespace {

using nlohmann::json;

// fnmatch without character classes: `*` matches any run, `?` one character.
bool wildcard_match(const std::string& pattern, const std::string& name) {
  size_t p = 0, n = 0, star = std::string::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

class ModelOptConfig : public QuantConfig {
 public:
  explicit ModelOptConfig(const json& j) {
    // hf_quant_config.json nests the fields under "quantization".
    const json& q =
        j.contains("quantization") && j["quantization"].is_object() ? j["quantization"] : j;
    ConfigFields f(q, "modelopt quantization config");
    const std::string algo = f.get_string({"quant_algo"}, "");
    Fp8Scheme s;
    if (algo == "FP8") {
      s.scales = Fp8Scheme::Scales::kTensor;
      s.act.kind = ActQuant::Kind::kStatic;
      s.label = "FP8";
    } else if (algo == "FP8_PER_CHANNEL_PER_TOKEN") {
      s.scales = Fp8Scheme::Scales::kChannel;
      s.channel_1d = true;
      s.act.kind = ActQuant::Kind::kDynamic;
      s.label = algo;
    } else {
      fail("{}: quant_algo '{}' is not supported yet (supported: FP8, FP8_PER_CHANNEL_PER_TOKEN)",
           f.where(), algo.empty() ? std::string("(none)") : algo);
    }
    for (const std::string& e : f.get_strings({"exclude_modules", "ignore"})) exclude_.push_back(e);
    method_ =
        std::make_shared<Fp8CheckpointMethod>("modelopt", s, std::make_shared<std::once_flag>());
  }

  std::string name() const override { return "modelopt"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32", "bf16"}; }
  int min_capability() const override { return kFp8MinCapability; }
  std::vector<std::string> config_filenames() const override { return {"hf_quant_config.json"}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return nullptr;
    for (const std::string& e : exclude_)
      if (wildcard_match(e, prefix)) return nullptr;
    return method_;
  }

 private:
  std::vector<std::string> exclude_;
  std::shared_ptr<const Fp8CheckpointMethod> method_;
};

}  // namespace

MethodInfo modelopt_method_info() {
  MethodInfo info;
  info.name = "modelopt";
  info.description =
      "NVIDIA ModelOpt FP8 exports (hf_quant_config.json or quant_method \"modelopt\"): "
      "quant_algo FP8 (per-tensor weight and static input scales) and "
      "FP8_PER_CHANNEL_PER_TOKEN; CPU: weights dequantized to bf16, activation quantization "
      "emulated; CUDA (sm_89+): FP8 W8A8 kernels on the stored codes";
  info.backends = {"cpu", "cuda"};
  info.from_config = [](const json& config) -> std::unique_ptr<QuantConfig> {
    return std::make_unique<ModelOptConfig>(config);
  };
  info.min_capability = -1;  // the CPU runs any configuration; CUDA needs sm_89 (min_capability())
  return info;
}

}  // namespace lowbit::quant
