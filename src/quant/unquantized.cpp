// `unquantized`: weights in their stored float dtype (F32/F16/BF16), computed in fp32.
#include "quant/dense_weight_method.h"
#include "quant/registry.h"

namespace lowbit::quant {
namespace {

class UnquantizedConfig : public QuantConfig {
 public:
  std::string name() const override { return "unquantized"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string&) const override {
    static const auto method = std::make_shared<DenseWeightMethod>(
        "unquantized", std::vector<DType>{DType::F32, DType::F16, DType::BF16});
    return method;
  }
};

}  // namespace

MethodInfo unquantized_method_info() {
  return {"unquantized",
          "weights in their stored float type (F32, F16, BF16); CUDA: bf16",
          {"cpu", "cuda"},
          [](const nlohmann::json&) { return std::make_unique<UnquantizedConfig>(); }};
}

}  // namespace lowbit::quant
