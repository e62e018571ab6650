// `int8` and `int4`: online weight-only quantization of any unquantized checkpoint (HF
// F32/F16/BF16, or a GGUF of float tensors). Weights are quantized round-to-nearest in
// process_weights_after_loading and packed for the shared weight-only kernels
// (kernels/cpu/wq_linear.h); activations stay fp32.
//   int8: symmetric, one scale per output channel (like vLLM's / torchao's int8 weight-only).
//   int4: asymmetric with zero points per group of 128 input columns (or the largest multiple
//         of 32 that divides in_features, see int4_group_size), the AWQ/GPTQ layout; a layer
//         no such group divides stays unquantized, as llama-quantize keeps it in F16.
// lm_head becomes int8 per channel under both, as llama-quantize's Q4_0/Q8_0 files keep their
// output matrix at 8 bits (HF quantizers leave it in 16 bits, FORMATS.md §12.1).
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/registry.h"
#include "quant/rtn.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {

class OnlineIntMethod : public WeightOnlyIntMethod {
 public:
  explicit OnlineIntMethod(int bits)
      : WeightOnlyIntMethod(bits == 8 ? "int8" : "int4"), bits_(bits) {}

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    std::vector<TensorSpec> specs = {{"weight",
                                      {layer.out_features, layer.in_features},
                                      {DType::F32, DType::F16, DType::BF16},
                                      false}};
    add_bias_spec(layer, specs);
    return specs;
  }

  DecodedWeight decode(const LinearLayer& layer) const override {
    std::vector<float> w = finite_weight_values(layer, method_name().c_str());
    const int64_t n = layer.out_features, k = layer.in_features;
    return {bits_ == 8 ? rtn_int8_per_channel(w.data(), n, k)
                       : rtn_int4_grouped(w.data(), n, k, int4_group_size(k))};
  }

 private:
  int bits_;
};

class OnlineIntConfig : public QuantConfig {
 public:
  explicit OnlineIntConfig(int bits)
      : bits_(bits), method_(std::make_shared<OnlineIntMethod>(bits)) {}
  std::string name() const override { return bits_ == 8 ? "int8" : "int4"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer& layer,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return lm_head_method_;
    if (bits_ == 4 && int4_group_size(layer.in_features) == 0) {
      std::call_once(skip_notice_, [&] {
        std::fprintf(stderr,
                     "lowbit: int4: %s (in_features %lld) and any other layer whose in_features "
                     "is not a multiple of 32 stay unquantized (int4 groups are multiples of "
                     "32)\n",
                     prefix.c_str(), static_cast<long long>(layer.in_features));
      });
      return nullptr;
    }
    return method_;
  }

 private:
  int bits_;
  std::shared_ptr<const OnlineIntMethod> method_;
  // lm_head is quantized to int8 per output channel under both methods, as llama-quantize keeps
  // the output matrix at 6-8 bits: it is the largest matrix of small models (a third of
  // SmolLM2-135M), read whole for every token, and int4 would cost it most quality.
  std::shared_ptr<const OnlineIntMethod> lm_head_method_ = std::make_shared<OnlineIntMethod>(8);
  mutable std::once_flag skip_notice_;
};

MethodInfo online_int_info(int bits, std::string description) {
  MethodInfo info;
  info.name = bits == 8 ? "int8" : "int4";
  info.description = std::move(description);
  info.backends = {"cpu", "cuda"};
  info.from_config = [bits, name = info.name](const nlohmann::json& config) {
    if (!config.is_object() || !config.empty())
      fail(
          "quantization method '{}' quantizes unquantized checkpoints while loading and takes "
          "no quantization_config (found {})",
          name, config.dump());
    return std::make_unique<OnlineIntConfig>(bits);
  };
  info.quantizes_online = true;
  return info;
}

}  // namespace

MethodInfo int8_method_info() {
  return online_int_info(8,
                         "online: round-to-nearest int8 weights, symmetric, one scale per output "
                         "channel (fp32 activations)");
}

MethodInfo int4_method_info() {
  return online_int_info(4,
                         "online: round-to-nearest int4 weights, asymmetric with zero points, "
                         "groups of 128 input columns (fp32 activations)");
}

}  // namespace lowbit::quant
