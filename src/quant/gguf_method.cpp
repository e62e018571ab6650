// `gguf`: each tensor keeps the GGUF type it was stored with (F32/F16/BF16 or a block format
// such as Q4_0/Q4_K/IQ2_XS); the CPU kernels decode blocks on the fly (every GGUF block type
// has one). Types without a CPU kernel are refused at load with the layer and type named.
#include "quant/dense_weight_method.h"
#include "quant/registry.h"

namespace lowbit::quant {
namespace {

std::vector<DType> all_gguf_dtypes() {
  std::vector<DType> out;
  for (int i = 0; i < int(DType::kCount); ++i)
    if (traits(DType(i)).gguf_id >= 0) out.push_back(DType(i));
  return out;
}

class GgufConfig : public QuantConfig {
 public:
  std::string name() const override { return "gguf"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string&) const override {
    // ggml's arithmetic (F16/BF16 weights: activations rounded to the weight type), so that
    // perplexity matches llama.cpp's on the same file.
    static const auto method =
        std::make_shared<DenseWeightMethod>("gguf", all_gguf_dtypes(), DenseActivations::kGgml);
    return method;
  }
};

}  // namespace

MethodInfo gguf_method_info() {
  return {"gguf",
          "GGUF tensors in their stored type: F32/F16/BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, "
          "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, "
          "IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4; CUDA: dequantized to bf16 at load",
          {"cpu", "cuda"},
          [](const nlohmann::json&) { return std::make_unique<GgufConfig>(); }};
}

}  // namespace lowbit::quant
