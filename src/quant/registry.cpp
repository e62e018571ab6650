#include "quant/registry.h"

#include "core/error.h"

namespace lowbit::quant {

MethodRegistry MethodRegistry::builtin() {
  MethodRegistry r;
  r.add(unquantized_method_info());
  r.add(gguf_method_info());
  r.add(awq_method_info());
  r.add(gptq_method_info());
  r.add(compressed_tensors_method_info());
  r.add(int8_method_info());
  r.add(int4_method_info());
  r.add(bitsandbytes_method_info());
  r.add(fp8_method_info());
  r.add(modelopt_method_info());
  return r;
}

void MethodRegistry::add(MethodInfo info) {
  if (find(info.name)) fail("quantization method '{}' is registered twice", info.name);
  methods_.push_back(std::move(info));
}

const MethodInfo* MethodRegistry::find(const std::string& name) const {
  for (const auto& m : methods_)
    if (m.name == name) return &m;
  return nullptr;
}

std::unique_ptr<QuantConfig> MethodRegistry::make(const std::string& name,
                                                  const nlohmann::json& config) const {
  const MethodInfo* info = find(name);
  if (!info) {
    std::string known;
    for (const auto& m : methods_) known += (known.empty() ? "" : ", ") + m.name;
    fail("unknown quantization method '{}'; registered: {}", name, known);
  }
  return info->from_config(config);
}

}  // namespace lowbit::quant
