// y = x·Wᵀ on the GPU for bf16 weights W [out, in] (row-major, as checkpoints store them) and
// bf16 activations x [m, in]; fp32 accumulation, bf16 or fp32 output y [m, out].
// Small m (decode) runs a bandwidth-bound GEMV kernel; larger m goes through cuBLASLt.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

namespace lowbit::kernels::cuda {

enum class OutType : uint8_t { kBf16, kF32 };

// Largest m handled by the GEMV kernels.
inline constexpr int64_t kGemvMaxRows = 4;  // measured: at m = 8 cuBLASLt is faster

// GEMV path: y[i, :] = x[i, :]·Wᵀ (+ bias) for i < m <= kGemvMaxRows. ldx / ldy are row
// strides in elements. bias: fp32 [out] or null.
void gemv_bf16(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, const float* bias,
               void* y, int64_t ldy, OutType out_type, int64_t m, int64_t out, int64_t in,
               cudaStream_t stream);

// cuBLASLt handle, workspace and a cache of chosen algorithms per problem shape.
class GemmRunner {
 public:
  GemmRunner();
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // y[m, out] (row stride ldy) = x[m, in] (row stride ldx) · w[out, in]ᵀ (+ bias); picks the
  // GEMV kernel for m <= kGemvMaxRows unless force_cublas.
  void linear(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, const float* bias,
              void* y, int64_t ldy, OutType out_type, int64_t m, int64_t out, int64_t in,
              cudaStream_t stream, bool force_cublas = false);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit::kernels::cuda
