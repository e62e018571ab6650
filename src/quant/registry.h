// The one list of quantization methods lowbit knows (in-tree methods are registered by
// MethodRegistry::builtin(); plugins, a later issue, add theirs to a registry they are given).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/quant_method.h"

namespace lowbit::quant {

struct MethodInfo {
  std::string name;
  std::string description;
  std::vector<std::string> backends;  // "cpu", "cuda"
  // Builds the config from the checkpoint's quantization config (an empty object when the
  // method is chosen without one, e.g. "unquantized" or "gguf").
  std::function<std::unique_ptr<QuantConfig>(const nlohmann::json&)> from_config;
  // True when `--quantization NAME` may be applied to an unquantized checkpoint (HF F32/F16/
  // BF16 or a GGUF of float tensors): the method quantizes the float weights while loading
  // (from_config then gets an empty object).
  bool quantizes_online = false;
  // Lowest CUDA compute capability ×10 any configuration of the method needs; -1 = any device.
  int min_capability = -1;
  std::string origin = "built-in";  // or the path of the plugin that registered it
};

class MethodRegistry {
 public:
  static MethodRegistry builtin();  // unquantized, gguf
  void add(MethodInfo info);        // throws when the name is taken
  const MethodInfo* find(const std::string& name) const;
  const std::vector<MethodInfo>& methods() const { return methods_; }
  // Throws naming every registered method when `name` is unknown.
  std::unique_ptr<QuantConfig> make(const std::string& name, const nlohmann::json& config) const;

 private:
  std::vector<MethodInfo> methods_;
};

// In-tree methods (one file each).
MethodInfo unquantized_method_info();
MethodInfo gguf_method_info();
MethodInfo awq_method_info();                 // AutoAWQ GEMM checkpoints
MethodInfo gptq_method_info();                // GPTQ checkpoints (v1 / v2 zeros, act-order)
MethodInfo compressed_tensors_method_info();  // llm-compressor integer weight-only schemes
MethodInfo int8_method_info();                // online RTN int8, per output channel
MethodInfo int4_method_info();                // online RTN int4, asymmetric, grouped
MethodInfo bitsandbytes_method_info();        // NF4/FP4/LLM.int8 checkpoints; online NF4
MethodInfo fp8_method_info();                 // FP8 checkpoints (CPU); online FP8 W8A8, CUDA only
MethodInfo modelopt_method_info();            // NVIDIA ModelOpt FP8 exports (quant/modelopt.cpp)

}  // namespace lowbit::quant
