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
  std::shared_ptr<const void> storage;  // fused weights' own bytes (null: the checkpoint's)
};

// A fused layer's tensors that live outside the checkpoint.
struct FusedStorage {
  std::vector<uint8_t> weight;  // empty when the parts' weights were already back to back
  std::vector<float> bias;      // [Σ out] (empty without biases)
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
  prepare(layer, nullptr);
}

void DenseWeightMethod::prepare(LinearLayer& layer, std::shared_ptr<const void> storage) const {
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
  p->storage = std::move(storage);
  layer.prepared = p;
}

std::optional<LinearLayer> DenseWeightMethod::fuse_rows(
    std::span<const LinearLayer> parts, std::span<const LinearMethod* const> methods,
    const std::string& prefix) const {
  if (parts.empty() || parts.size() != methods.size()) return std::nullopt;
  const DType dtype = parts.front().tensors.at("weight").dtype;
  const bool has_bias = parts.front().has_bias;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto* m = dynamic_cast<const DenseWeightMethod*>(methods[i]);
    if (!m || m->method_name_ != method_name_ || m->activations_ != activations_)
      return std::nullopt;
    const LinearLayer& p = parts[i];
    if (p.tensors.at("weight").dtype != dtype || p.in_features != parts.front().in_features ||
        p.has_bias != has_bias)
      return std::nullopt;
  }
  LinearLayer fused;
  fused.prefix = prefix;
  fused.in_features = parts.front().in_features;
  fused.has_bias = has_bias;
  for (const LinearLayer& p : parts) fused.out_features += p.out_features;

  auto storage = std::make_shared<FusedStorage>();
  bool back_to_back = true;
  uint64_t nbytes = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const TensorView& w = parts[i].tensors.at("weight");
    back_to_back =
        back_to_back && (i == 0 || parts[0].tensors.at("weight").data + nbytes == w.data);
    nbytes += w.nbytes;
  }
  const uint8_t* data = parts.front().tensors.at("weight").data;
  if (!back_to_back) {
    storage->weight.reserve(size_t(nbytes));
    for (const LinearLayer& p : parts) {
      const TensorView& w = p.tensors.at("weight");
      storage->weight.insert(storage->weight.end(), w.data, w.data + w.nbytes);
    }
    data = storage->weight.data();
  }
  fused.tensors["weight"] =
      TensorView{prefix + ".weight", dtype, {fused.out_features, fused.in_features}, data, nbytes};
  if (has_bias) {
    for (const LinearLayer& p : parts) {
      std::vector<float> b = to_f32(p.tensors.at("bias"));
      storage->bias.insert(storage->bias.end(), b.begin(), b.end());
    }
    fused.tensors["bias"] = TensorView{prefix + ".bias",
                                       DType::F32,
                                       {fused.out_features},
                                       reinterpret_cast<const uint8_t*>(storage->bias.data()),
                                       uint64_t(storage->bias.size() * sizeof(float))};
  }
  prepare(fused, storage);
  return fused;
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
