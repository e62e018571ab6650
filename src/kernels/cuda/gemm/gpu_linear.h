// One linear layer's weight on the GPU in one representation, and the call that runs it with
// the kernel kernels/gpu_kernel_registry.h chooses for the call's m:
//   bf16 dense           bf16_gemv (m <= 4) | bf16_cublaslt       (GemmRunner::linear)
//   W4A16 / W8A16        wq_gemv (m <= 8; W8A16) | wq_gemm | wq_dequant_cublaslt (wq_gemm.h;
//                        the last dequantizes into a shared bf16 scratch)
//                        (neither can take it: a bf16 copy made at load, the bf16 kernels)
//   FP8 (3 scalings)     fp8_gemv (m <= 8) | fp8_cublaslt          (w8a8_gemm.h)
//   INT8 W8A8            int8_gemv (m <= 8) | int8_cublaslt        (w8a8_gemm.h)
// Shapes: x [m, k] bf16 (row stride ldx), y [m, n] bf16 or fp32 (row stride ldy), bias fp32
// [n] or null; W [n, k] (n = output features).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/wq_linear.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/gpu_kernel_registry.h"

namespace lowbit::kernels::cuda {

class W8A8Runner;
class Fp8GpuWeight;
class Int8GpuWeight;
enum class Fp8Scaling : uint8_t;

// What every GpuLinear of a model shares: the GEMM runners and the bf16 scratch that
// wq_dequant_cublaslt dequantizes into ([scratch_elems] bf16; sized by the model from
// GpuLinear::scratch_elems_for).
struct GpuLinearContext {
  GemmRunner* gemm = nullptr;
  W8A8Runner* w8a8 = nullptr;
  __nv_bfloat16* scratch = nullptr;
  int64_t scratch_elems = 0;
};

// Where a layer will run: the device's capability (×10), the kernels the user disabled
// (LOWBIT_DISABLE_KERNELS) and the most rows one call can have (a step's tokens).
struct GpuLinearOptions {
  int capability = 90;
  std::vector<std::string> disabled;
  int64_t max_m = 1;
};

// Construction chooses the kernels that can run the layer: those that serve its format on
// options.capability, are not disabled and accept its shape. Every m in [1, max_m] must have
// one. A kernel that refuses the shape while another takes over prints one line to stderr;
// when none can, construction throws lowbit::Error naming `what` (the layer), the format, the
// shape and every kernel's reason.
class GpuLinear {
 public:
  GpuLinear();
  ~GpuLinear();
  GpuLinear(GpuLinear&&) noexcept;
  GpuLinear& operator=(GpuLinear&&) noexcept;

  // A bf16 weight [n, k] the caller owns (kept alive as long as this layer).
  static GpuLinear bf16(const __nv_bfloat16* w, int64_t n, int64_t k, const std::string& what,
                        const GpuLinearOptions& options);
  // Quantizes a device bf16 weight [n, k] (the caller may free it afterwards). When no 8-bit
  // kernel can take the shape (for every m up to max_m), keeps a bf16 copy instead (notice).
  static GpuLinear fp8(const __nv_bfloat16* w, int64_t n, int64_t k, Fp8Scaling scaling,
                       const std::string& what, const GpuLinearOptions& options,
                       cudaStream_t stream);
  static GpuLinear int8(const __nv_bfloat16* w, int64_t n, int64_t k, const std::string& what,
                        const GpuLinearOptions& options, cudaStream_t stream);
  // A checkpoint's 8-bit weight as stored, uploaded without re-quantizing (the device codes
  // are the given bytes): e4m3 codes [n, k] with fp32 scales in `scaling`'s layout
  // (fp8_scale_count of them; w8a8_gemm.h), or int8 codes [n, k] with one scale per output
  // row. When no 8-bit kernel can take the shape, the codes are dequantized on the host into
  // a bf16 copy (notice). Scales are checked (count, positive, finite; errors name `what`).
  static GpuLinear fp8_stored(const uint8_t* codes, const std::vector<float>& scales, int64_t n,
                              int64_t k, Fp8Scaling scaling, const std::string& what,
                              const GpuLinearOptions& options, cudaStream_t stream);
  static GpuLinear int8_stored(const int8_t* codes, const std::vector<float>& scales, int64_t n,
                               int64_t k, const std::string& what, const GpuLinearOptions& options,
                               cudaStream_t stream);
  // A host bf16 weight [n, k] (bits) copied into memory the layer owns.
  static GpuLinear bf16_copy(const uint16_t* bits, int64_t n, int64_t k, const std::string& what,
                             const GpuLinearOptions& options);
  // An unpacked weight-only integer weight (int4 / int8 codes, any group size, act-order):
  // packed for the wq kernels, or, when neither can take it (shape or LOWBIT_DISABLE_KERNELS),
  // dequantized on the host into a bf16 copy run by the bf16 kernels (one notice line).
  static GpuLinear wq(const cpu::WqSource& src, const std::string& what,
                      const GpuLinearOptions& options, cudaStream_t stream);

  // y = x·Wᵀ (+ bias) with the kernel chosen for m.
  void forward(const GpuLinearContext& ctx, const __nv_bfloat16* x, int64_t ldx, const float* bias,
               void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream) const;

  // The kernel a call with m rows runs ("wq_gemm", ...; "none" past max_m when uncovered).
  const char* kernel_for(int64_t m) const;
  // bf16 elements of dequantization scratch calls with m <= max_m may need (0 for most).
  int64_t scratch_elems_for(int64_t max_m) const;
  // Act-order wq weights grow a gather buffer on their first call with a new largest m:
  // true when a call at max_m should run once before CUDA-graph capture.
  bool needs_warm_up() const;

  // The device weight of an fp8 / int8 layer, else null (tests read the codes back).
  const Fp8GpuWeight* fp8_weight() const;
  const Int8GpuWeight* int8_weight() const;

  GpuWeightFormat format() const { return shape_.format; }
  int64_t n() const { return shape_.n; }
  int64_t k() const { return shape_.k; }
  uint64_t weight_bytes() const;  // bytes of weight data one call reads
  bool empty() const { return shape_.n == 0; }

 private:
  struct Owned;  // the quantized weights and dense fallback copies this layer owns
  GpuLinearShape shape_;
  GpuKernelPlan plan_;
  const __nv_bfloat16* dense_ = nullptr;  // bf16 kernels' weight (caller's or owned fallback)
  std::unique_ptr<Owned> owned_;

  std::string shape_reason(const GpuKernelInfo& k) const;
  GpuLinear dense_fallback(const __nv_bfloat16* w, const std::string& what,
                           const GpuLinearOptions& options, const std::string& why);
  // The same for a weight the host decoded to bf16 bits [n, k] (stored 8-bit checkpoints).
  GpuLinear dense_fallback_from_host(const std::vector<uint16_t>& bits, const std::string& what,
                                     const GpuLinearOptions& options, const std::string& why);
  void make_plan(const std::string& what, const GpuLinearOptions& options);
};

}  // namespace lowbit::kernels::cuda
