// Shared LinearMethod for weights stored as one [out, in] matrix in a format the CPU kernels
// compute with directly (plain floats for `unquantized`, GGUF blocks for `gguf`): nothing to
// repack, apply() is kernels::cpu::linear plus the optional fp32 bias.
#pragma once

#include <string>
#include <vector>

#include "quant/quant_method.h"

namespace lowbit::quant {

class DenseWeightMethod : public LinearMethod {
 public:
  DenseWeightMethod(std::string method_name, std::vector<DType> weight_dtypes)
      : method_name_(std::move(method_name)), weight_dtypes_(std::move(weight_dtypes)) {}

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override;
  void process_weights_after_loading(LinearLayer& layer) const override;
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;

 private:
  std::string method_name_;
  std::vector<DType> weight_dtypes_;
};

}  // namespace lowbit::quant
