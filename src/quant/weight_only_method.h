// Shared base of the weight-only integer methods (awq, gptq, compressed-tensors, ...): each one
// decodes its checkpoint tensors into unpacked codes + scales (+ zeros, act-order permutation)
// in decode(); process_weights_after_loading hands that to finish(), which packs it into the CPU
// wq kernels' layout (kernels/cpu/wq_linear.h) and loads the bias; apply() and weight_bytes()
// are shared. The CUDA backend calls decode() itself and packs for its own kernels.
#pragma once

#include <string>
#include <vector>

#include "kernels/cpu/wq_linear.h"
#include "quant/act_quant.h"
#include "quant/quant_method.h"
#include "quant/row_fusion.h"
#include "quant/rtn.h"

namespace lowbit::quant {

// A decoded weight-only weight: owning storage for every field of a kernels::cpu::WqSource,
// act-order permutation included.
struct DecodedWeight : QuantizedWeight {
  std::vector<int32_t> perm;  // [k]; empty = identity (see WqSource::perm)

  kernels::cpu::WqSource source() const {
    kernels::cpu::WqSource s = QuantizedWeight::source();
    s.perm = perm.empty() ? nullptr : perm.data();
    return s;
  }
};

class WeightOnlyIntMethod : public LinearMethod, public RowFusableMethod {
 public:
  explicit WeightOnlyIntMethod(std::string method_name) : method_name_(std::move(method_name)) {}

  // The layer's weight, unpacked (codes [n, k], scales / zeros per group, act-order perm),
  // from the checkpoint tensors loaded per create_weights (validated; errors name the layer).
  // Zeros are as the checkpoint stores them (finish() drops all-default zeros).
  virtual DecodedWeight decode(const LinearLayer& layer) const = 0;
  // The scheme's activation quantization (compressed-tensors W8A8 / W4A8: dynamic per-token
  // int8); none for weight-only methods. The CUDA backend runs int8 per-channel symmetric
  // weights with it on its W8A8 kernels (models/w8_checkpoint_cuda.h).
  virtual ActQuant activations() const { return {}; }
  // decode() + finish(): packs for the CPU kernels.
  void process_weights_after_loading(LinearLayer& layer) const override;

  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;
  // Parts of one method class without activation quantization whose decoded weights agree in
  // kind, k, group size, act-order permutation and symmetry (all with zero points or all
  // symmetric, as finish() sees them): codes, scales and zeros stacked by rows and packed once
  // (the CUDA backend's stack_rows rule), biases concatenated.
  std::optional<LinearLayer> fuse_rows(std::span<const LinearLayer> parts,
                                       std::span<const LinearMethod* const> methods,
                                       const std::string& prefix) const override;

  const std::string& method_name() const { return method_name_; }

 protected:
  // "model.layers.0.mlp.up_proj (gptq)": how messages name the layer.
  std::string what(const LinearLayer& layer) const;
  // The optional bias spec ([out_features], any float dtype) when the layer has one.
  void add_bias_spec(const LinearLayer& layer, std::vector<TensorSpec>& specs) const;
  // Packs `src` (zeros that all equal the kind's symmetric default are dropped, so such
  // layers use the symmetric kernels) and stores it with the fp32 bias in layer.prepared.
  void finish(LinearLayer& layer, kernels::cpu::WqSource src) const;

 private:
  std::string method_name_;
};

// Float dtypes accepted for scales and biases.
std::vector<DType> float_dtypes();

// The values of an F32/F16/BF16 tensor (others fail naming the tensor).
std::vector<float> float_tensor(const TensorView& t, const std::string& what);

// The values of an I32 or I64 tensor.
std::vector<int64_t> int_tensor(const TensorView& t);

// Act-order from a GPTQ-style g_idx (group index of every input column, [k]): checks every
// value lies in [0, n_groups) and every group holds exactly group_size columns, then returns
// the input permutation for WqSource::perm (the stable argsort of g_idx), or an empty vector
// when g_idx[c] == c / group_size already (no reordering needed).
// `what` names the layer and `field` the tensor suffix in errors.
std::vector<int32_t> act_order_perm(const std::vector<int64_t>& g_idx, int64_t group_size,
                                    const std::string& what, const std::string& field);

}  // namespace lowbit::quant
