// Shared base of the weight-only integer methods (awq, gptq, compressed-tensors, ...): each one
// decodes its checkpoint tensors into an unpacked kernels::cpu::WqSource in
// process_weights_after_loading and calls finish(), which packs it into the wq kernels' layout
// (kernels/cpu/wq_linear.h) and loads the bias; apply() and weight_bytes() are shared.
#pragma once

#include <string>
#include <vector>

#include "kernels/cpu/wq_linear.h"
#include "quant/quant_method.h"

namespace lowbit::quant {

class WeightOnlyIntMethod : public LinearMethod {
 public:
  explicit WeightOnlyIntMethod(std::string method_name) : method_name_(std::move(method_name)) {}

  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;

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
