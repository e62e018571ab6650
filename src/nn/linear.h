// A linear layer as model code sees it: y = x·Wᵀ (+ b), whatever method stores W.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quant/quant_method.h"

namespace lowbit::models {
class WeightSource;
}

namespace lowbit::nn {

// Activation observer (`lowbit imatrix`): while one is installed, every Linear::forward shows
// it its input x [m, in_features] before the product. Unused, it costs one predictable branch
// per forward. Process-wide; install / remove only while no model runs.
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual void observe(const quant::LinearLayer& layer, const float* x, int64_t m) = 0;
};
inline LinearObserver* g_linear_observer = nullptr;

class Linear {
 public:
  Linear() = default;
  Linear(quant::LinearLayer layer, std::shared_ptr<const quant::LinearMethod> method)
      : layer_(std::move(layer)), method_(std::move(method)) {}

  // x: [m, in_features] -> y: [m, out_features]
  void forward(const float* x, int64_t m, float* y) const {
    if (g_linear_observer != nullptr) [[unlikely]]
      g_linear_observer->observe(layer_, x, m);
    compute(x, m, y);
  }
  // forward() without the observer (LinearGroup shows observers its parts instead).
  void compute(const float* x, int64_t m, float* y) const { method_->apply(layer_, x, m, y); }
  int64_t in_features() const { return layer_.in_features; }
  int64_t out_features() const { return layer_.out_features; }
  uint64_t weight_bytes() const { return method_->weight_bytes(layer_); }
  const quant::LinearLayer& layer() const { return layer_; }

 private:
  quant::LinearLayer layer_;
  std::shared_ptr<const quant::LinearMethod> method_;
};

// Builds the layer at `prefix` ("model.layers.0.self_attn.q_proj"): asks `config` for its
// method (falling back to `unquantized` when the config leaves the layer alone), finds every
// tensor the method declares in `source` under `tensor_prefix` (normally == prefix; tied
// embeddings reuse another layer's tensors), checks dtype and shape, then lets the method
// prepare them. Errors name the file, the stored tensor name, what was found and expected.
Linear load_linear(const std::string& prefix, const std::string& tensor_prefix, int64_t in_features,
                   int64_t out_features, bool has_bias, const quant::QuantConfig& config,
                   const models::WeightSource& source);

// The first half of load_linear: the layer with its checked checkpoint tensors (not yet
// prepared) and the method that declared them (*method). The CUDA backend prepares it itself.
quant::LinearLayer load_linear_tensors(const std::string& prefix, const std::string& tensor_prefix,
                                       int64_t in_features, int64_t out_features, bool has_bias,
                                       const quant::QuantConfig& config,
                                       const models::WeightSource& source,
                                       std::shared_ptr<const quant::LinearMethod>* method);

// A 1-D float parameter (norm weights) as fp32; checks the length.
std::vector<float> load_vector(const std::string& name, int64_t length,
                               const models::WeightSource& source);

}  // namespace lowbit::nn
