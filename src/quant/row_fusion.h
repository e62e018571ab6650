// Row fusion of linear layers that share their input (q/k/v, gate/up) on the CPU backend: one
// layer whose weight is the parts' weights stacked by rows, so that one apply() quantizes the
// activation once and runs one parallel region over all output rows (nn::LinearGroup).
//
// An optional capability of a LinearMethod, kept out of LinearMethod itself so that the plugin
// ABI (plugin_api.h) does not change: nn::load_linear_group asks for it with dynamic_cast.
// DenseWeightMethod (unquantized, gguf) and WeightOnlyIntMethod (awq, gptq, compressed-tensors,
// bitsandbytes, online int4/int8) implement it.
#pragma once

#include <optional>
#include <span>

#include "quant/quant_method.h"

namespace lowbit::quant {

class RowFusableMethod {
 public:
  virtual ~RowFusableMethod() = default;

  // `parts[i]` was declared by `methods[i]` (this method is methods[0]) and is loaded but not
  // prepared; all have the same in_features. Returns the prepared layer `prefix` whose apply()
  // through this method computes y[m, Σ out] with the rows of part i in columns
  // [Σ_{j<i} out_j, Σ_{j<=i} out_j), each output with exactly the arithmetic of its part
  // alone (bit-identical, given the caller's row alignment rule in nn/linear_group.h), biases
  // included. nullopt when the parts' storage does not line up (another method class or
  // configuration, dtype, group size, act-order, zero points, activation quantization): the
  // caller then prepares the parts one by one.
  virtual std::optional<LinearLayer> fuse_rows(std::span<const LinearLayer> parts,
                                               std::span<const LinearMethod* const> methods,
                                               const std::string& prefix) const = 0;
};

}  // namespace lowbit::quant
