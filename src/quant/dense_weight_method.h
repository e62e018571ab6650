// Shared LinearMethod for weights stored as one [out, in] matrix in a format the CPU kernels
// compute with directly (plain floats for `unquantized`, GGUF blocks for `gguf`): nothing to
// repack, apply() is kernels::cpu::linear plus the optional fp32 bias.
// Activations: `unquantized` multiplies fp32 activations (kFp32); `gguf` computes as ggml's CPU
// backend (kGgml: F16 / BF16 weights see activations rounded to their type, ggml_linear.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/quant_method.h"
#include "quant/row_fusion.h"

namespace lowbit::quant {

enum class DenseActivations : uint8_t { kFp32, kGgml };

class DenseWeightMethod : public LinearMethod, public RowFusableMethod {
 public:
  DenseWeightMethod(std::string method_name, std::vector<DType> weight_dtypes,
                    DenseActivations activations = DenseActivations::kFp32)
      : method_name_(std::move(method_name)),
        weight_dtypes_(std::move(weight_dtypes)),
        activations_(activations) {}

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override;
  void process_weights_after_loading(LinearLayer& layer) const override;
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override;
  uint64_t weight_bytes(const LinearLayer& layer) const override;
  // Parts of one dtype under DenseWeightMethods with this one's name and activations: the
  // weights stacked by rows (a view when the parts lie back to back in memory, as GGUF files
  // often store gate/up; else one copy), the biases concatenated as fp32. Every row then runs
  // the same kernel on the same bytes and activation as alone.
  std::optional<LinearLayer> fuse_rows(std::span<const LinearLayer> parts,
                                       std::span<const LinearMethod* const> methods,
                                       const std::string& prefix) const override;

 private:
  // process_weights_after_loading with `storage` kept alive by the prepared state (fused
  // weights that live outside the checkpoint).
  void prepare(LinearLayer& layer, std::shared_ptr<const void> storage) const;

  std::string method_name_;
  std::vector<DType> weight_dtypes_;
  DenseActivations activations_;
};

}  // namespace lowbit::quant
