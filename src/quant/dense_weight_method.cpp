#include "quant/dense_weight_method.h"

#include <algorithm>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/ggml_linear.h"
#include "kernels/cpu/linear.h"

namespace lowbit::quant {
namespace {

// What process_weights_after_loading prepares: the kernel's view of W, an fp32 bias and (gguf
// method, formats with a prompt GEMM) W repacked for it.
struct Prepared {
  kernels::cpu::WeightMatrix weight;
  std::shared_ptr<const kernels::cpu::PackedGemmWeights> packed;  // null: no GEMM layout
  std::vector<float> bias;                                        // empty when the layer has none
};

std::vector<float> to_f32(const TensorView& t) {
  auto values = float_values(t);
  if (!values) fail("{}: dtype {} where F32/F16/BF16 was expected", t.name, name(t.dtype));
  return std::move(*values);
}

}  // namespace

std::vector<TensorSpec> DenseWeightMethod::create_weights(const LinearLayer& layer) const {
  std::vector<TensorSpec> specs = {
      {"weight", {layer.out_features, layer.in_features}, weight_dtypes_, false}};
  if (layer.has_bias)
    specs.push_back({"bias", {layer.out_features}, {DType::F32, DType::F16, DType::BF16}, false});
  return specs;
}

void DenseWeightMethod::process_weights_after_loading(LinearLayer& layer) const {
  const TensorView& w = layer.tensors.at("weight");
  std::string reason = kernels::cpu::cannot_implement(w.dtype);
  if (!reason.empty())
    fail("{}.weight ({}, method {}): no CPU kernel: {}", layer.prefix, name(w.dtype), method_name_,
         reason);
  auto p = std::make_shared<Prepared>();
  p->weight = {w.dtype, w.data, layer.out_features, layer.in_features};
  if (activations_ == DenseActivations::kGgml)
    p->packed = kernels::cpu::prepare_linear_ggml(p->weight);
  if (auto it = layer.tensors.find("bias"); it != layer.tensors.end()) p->bias = to_f32(it->second);
  layer.prepared = p;
}

void DenseWeightMethod::apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  if (activations_ == DenseActivations::kGgml)
    kernels::cpu::linear_ggml_prepared(p.weight, p.packed.get(), x, m, y);
  else
    kernels::cpu::linear(p.weight, x, m, y);
  if (!p.bias.empty()) {
    const int64_t n = layer.out_features;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j) y[r * n + j] += p.bias[j];
  }
}

uint64_t DenseWeightMethod::weight_bytes(const LinearLayer& layer) const {
  return layer.tensors.at("weight").nbytes;
}

}  // namespace lowbit::quant
