// The quantization-method interface (DESIGN.md §4, mirroring vLLM's QuantizationConfig /
// LinearMethodBase): a QuantConfig is parsed from a checkpoint's config and hands out one
// LinearMethod per layer; the method declares the checkpoint-shaped tensors of the layer,
// prepares them after loading (repacking for its kernel) and computes y = x·Wᵀ + b.
// Model code only ever calls LinearMethod::apply; it never branches on a format.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowbit::quant {

// Marks a dimension of TensorSpec::shape whose length the method checks itself after loading
// (e.g. bitsandbytes' absmax, whose length depends on a block size stored in another tensor).
inline constexpr int64_t kAnyLength = -1;

// One checkpoint tensor a method expects for a layer, by suffix after the layer prefix.
struct TensorSpec {
  std::string suffix;          // "weight", "bias", "qweight", "scales", ...
  std::vector<int64_t> shape;  // expected shape in PyTorch order; kAnyLength = any length
  std::vector<DType> dtypes;   // accepted storage types
  bool optional = false;
};

// The state of one linear layer: its checkpoint tensors and what the method prepared.
struct LinearLayer {
  std::string prefix;  // "model.layers.0.self_attn.q_proj"
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool has_bias = false;
  std::map<std::string, TensorView> tensors;  // loaded tensors by suffix
  std::shared_ptr<const void> prepared;       // method-specific, set after loading
};

class LinearMethod {
 public:
  virtual ~LinearMethod() = default;
  // Tensors the checkpoint must hold for `layer` (shapes derived from in/out features).
  virtual std::vector<TensorSpec> create_weights(const LinearLayer& layer) const = 0;
  // Called once all tensors are loaded: validate values and repack for the kernel.
  virtual void process_weights_after_loading(LinearLayer& layer) const = 0;
  // y[m, out] = x[m, in] · Wᵀ (+ bias). fp32 activations on the CPU backend.
  virtual void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const = 0;
  // Bytes of weight data the layer reads per forward (for memory/bandwidth reports).
  virtual uint64_t weight_bytes(const LinearLayer& layer) const = 0;
};

// A mixture-of-experts layer: `num_experts` experts, each a gated MLP
// (gate/up: [intermediate, hidden], down: [hidden, intermediate]), tensors by suffix
// ("experts.0.gate_proj.weight", ...). The router stays a plain Linear.
struct MoELayer {
  std::string prefix;  // "model.layers.0.mlp"
  int64_t num_experts = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  std::map<std::string, TensorView> tensors;
  std::shared_ptr<const void> prepared;
};

// The MoE counterpart of LinearMethod (vLLM's FusedMoEMethodBase): computes all experts of a
// layer for tokens already routed.
class MoEMethod {
 public:
  virtual ~MoEMethod() = default;
  virtual std::vector<TensorSpec> create_weights(const MoELayer& layer) const = 0;
  virtual void process_weights_after_loading(MoELayer& layer) const = 0;
  // y[m, hidden] = Σ_j topk_weights[i, j] · expert_{topk_ids[i, j]}(x[i]) for each token i;
  // topk_ids / topk_weights: [m, top_k].
  virtual void apply(const MoELayer& layer, const float* x, int64_t m, const int32_t* topk_ids,
                     const float* topk_weights, int64_t top_k, float* y) const = 0;
  virtual uint64_t weight_bytes(const MoELayer& layer) const = 0;
};

// A QuantConfig answers, per layer, "linear method, MoE method or none": get_quant_method for
// linear layers, get_moe_method for expert blocks; nullptr leaves the layer unquantized.
class QuantConfig {
 public:
  virtual ~QuantConfig() = default;
  virtual std::string name() const = 0;
  virtual std::vector<std::string> supported_act_dtypes() const = 0;  // "f32", "bf16", ...
  // Minimum CUDA compute capability ×10 (89 = sm_89), or -1 when any device works.
  virtual int min_capability() const = 0;
  virtual std::vector<std::string> config_filenames() const = 0;
  // The method for the layer at `prefix`, or nullptr to leave it unquantized.
  virtual std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer& layer,
                                                               const std::string& prefix) const = 0;
  // The method for the expert block at `prefix`; methods without MoE support keep the default.
  virtual std::shared_ptr<const MoEMethod> get_moe_method(const MoELayer& layer,
                                                          const std::string& prefix) const {
    return nullptr;
  }
};

}  // namespace lowbit::quant
