// Which GPU kernel computes y = x·Wᵀ for one linear layer (DESIGN.md §1, axis 3). Pure host
// logic, built in every build (also without CUDA) so that `lowbit info --kernels` and the unit
// tests can use it; the CUDA side (kernels/cuda/gemm/gpu_linear.h) maps the chosen name to a
// launch.
//
// Each kernel declares what it can implement (weight formats, a range of m = activation rows,
// a minimum compute capability) and a cost rule: estimated microseconds for one call at m rows
// on an H100-class GPU (a roofline: max(bytes / bandwidth, flops / throughput) with per-kernel
// efficiencies, plus fixed overheads). A layer keeps the kernels that can take its shape; each
// call runs the cheapest of them that covers m. So a 4-bit weight runs the weight-only kernel
// for small m and is dequantized into a bf16 scratch + cuBLASLt for large m, where the dense
// GEMM is faster: the layer is never much slower than bf16.
//
// LOWBIT_DISABLE_KERNELS=name1,name2 removes kernels from the choice (unknown names are an
// error listing the known ones).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lowbit::kernels {

// How one linear layer's weight is stored on the GPU.
enum class GpuWeightFormat : uint8_t {
  kBf16,          // dense bf16 [n, k]
  kW4A16,         // 4-bit integer codes, bf16 scales (+ zeros) per group; bf16 activations
  kW8A16,         // 8-bit integer codes, same
  kFp8PerTensor,  // e4m3 weight, one scale; activations quantized per tensor
  kFp8Rowwise,    // e4m3 weight, a scale per output row; activations per token
  kFp8Block,      // e4m3 weight, a scale per 128×128 block; activations per 1×128 block
  kInt8W8A8,      // int8 weight per output row; int8 activations per token
};
const char* gpu_weight_format_name(GpuWeightFormat f);  // "bf16", "w4a16", "fp8_rowwise", ...

// The problem a layer poses, independent of m.
struct GpuLinearShape {
  GpuWeightFormat format = GpuWeightFormat::kBf16;
  int64_t n = 0, k = 0;    // output features, input features
  int64_t group_size = 0;  // W4A16 / W8A16: input columns per scale group (k = per channel)
  int capability = 90;     // compute capability ×10 of the device
  // W4A16 / W8A16: the largest m at which the wq kernel measured faster than dequantize +
  // cuBLASLt for this weight (wq_gemm_max_fast_rows); 0 = unknown, the cost rule decides.
  int64_t wq_fast_max_m = 0;
};

// The m limits of the GEMV paths, mirrored from the CUDA headers (gpu_linear.cpp asserts they
// match): kGemvMaxRows (cuda/gemm/linear.h) and kW8GemvMaxRows (cuda/gemm/w8a8_gemm.h).
inline constexpr int64_t kBf16GemvRows = 4;
inline constexpr int64_t kW8GemvRows = 2;
// wq_gemv takes m <= kWqGemvMaxRows (16, cuda/gemm/wq_gemm.h) but is offered up to 8: at m = 16
// the GEMM is faster on every 8B shape (H100, bench/gpu_wq_gemm_notes.md).
inline constexpr int64_t kWqGemvRows = 8;

struct GpuKernelInfo {
  const char* name;  // stable: LOWBIT_DISABLE_KERNELS and `lowbit info --kernels` use it
  std::vector<GpuWeightFormat> formats;
  int64_t min_m = 1, max_m = INT64_MAX;
  int min_capability = 80;
  // Estimated microseconds for one call at m rows.
  std::function<double(const GpuLinearShape&, int64_t m)> cost_us;
  // Highest compute capability the kernel is offered on (a fallback for older GPUs).
  int max_capability = 1000;
};

// Every GPU linear kernel lowbit has, in priority order (ties in cost go to the earlier one).
const std::vector<GpuKernelInfo>& gpu_linear_kernels();

// Parses a LOWBIT_DISABLE_KERNELS value ("a,b"; spaces ignored); throws lowbit::Error naming
// an unknown kernel and listing the known ones.
std::vector<std::string> parse_disabled_kernels(const std::string& value);
// The parsed LOWBIT_DISABLE_KERNELS of this process's environment (read on every call).
std::vector<std::string> disabled_kernels_from_env();

// The kernels that can run one layer, and why the others cannot.
class GpuKernelPlan {
 public:
  // shape_reason(kernel): "" when the kernel can take the layer's shape, else why not (the
  // kernel's own can_implement, e.g. "k = 100 is not a multiple of 64"); called only for
  // kernels that serve the format on this capability and are not disabled.
  static GpuKernelPlan make(const GpuLinearShape& shape, const std::vector<std::string>& disabled,
                            const std::function<std::string(const GpuKernelInfo&)>& shape_reason);

  bool empty() const { return usable_.empty(); }
  // The cheapest usable kernel whose m range holds m; nullptr when none does.
  const GpuKernelInfo* choose(int64_t m) const;
  // "name: reason; name: reason" for every kernel of the format that was ruled out.
  std::string reasons() const;
  // Ruled out by its own shape check (not by capability or LOWBIT_DISABLE_KERNELS): the
  // loader prints a one-line notice for these when another kernel takes over.
  const std::vector<std::pair<std::string, std::string>>& shape_refusals() const {
    return shape_refusals_;
  }
  const std::vector<const GpuKernelInfo*>& usable() const { return usable_; }
  const GpuLinearShape& shape() const { return shape_; }

 private:
  GpuLinearShape shape_;
  std::vector<const GpuKernelInfo*> usable_;
  std::vector<std::pair<std::string, std::string>> refusals_, shape_refusals_;
};

}  // namespace lowbit::kernels
