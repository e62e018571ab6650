// W8A8 linear layers on the GPU: y[m, n] = x[m, k]·Wᵀ (+ bias) with 8-bit weights W [n, k]
// (row-major, as checkpoints store them) and activations x quantized to 8 bits per call.
//
// FP8 (e4m3, needs sm_89+ for the tensor-core path) in three scalings:
//   kPerTensor  one weight scale; one dynamic activation scale per call (amax over all of x).
//   kRowwise    one weight scale per output channel (row of W); one activation scale per token.
//   kBlock128   one weight scale per 128×128 block of W; one activation scale per 1×128 group
//               of each token (DeepSeek-V3 style).
// INT8: per-channel weight scales, per-token dynamic activation scales, int32 accumulation.
//
// Scales are dequantization factors: w ≈ q · s. Quantization: s = amax / qmax (qmax = 448 for
// e4m3, 127 for int8; s = 1 where amax = 0), q = round(w / s), round-to-nearest-even,
// saturating.
//
// Kernel choice: for m <= kW8GemvMaxRows a GEMV kernel reads the 8-bit weights directly with
// bf16 activations (activations are NOT quantized there, so it is more accurate than the W8A8
// product, and it is also the weight-only FP8/INT8 path on sm_80, which has no fp8 tensor
// cores). Larger m quantizes x in one fused kernel and runs cuBLASLt (fp8 with scale modes;
// int8 with an int32 result and an own dequantizing epilogue that applies row × column scales
// and bias).
//
// CUDA graphs: every buffer a call needs (quantized activations, their scales, the int32/fp32
// epilogue scratch, the cuBLASLt workspace) belongs to a W8A8Runner and is sized by
// W8A8Runner::reserve(max_m, max_k, max_n); call reserve() and run each m once before capture
// (cuBLASLt plans are chosen on first use of a shape). A call needing more than was reserved
// outside capture grows the buffers; during capture it throws.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/gemm/linear.h"

namespace lowbit::kernels::cuda {

enum class Fp8Scaling : uint8_t { kPerTensor, kRowwise, kBlock128 };

const char* fp8_scaling_name(Fp8Scaling s);

// Largest m served by the 8-bit-weight GEMV kernel (bf16 activations) by default. Measured on
// H100: at m = 4 the GEMV (25-75 µs on the Llama shapes) is slower than quantize + cuBLASLt
// at m = 16 (20-35 µs); at m = 1 it is 1.7-3× faster.
inline constexpr int64_t kW8GemvMaxRows = 2;
// Rows of x per GEMV pass where the GEMV serves larger m (weight-only paths).
inline constexpr int64_t kW8GemvChunkRows = 8;

// Minimum compute capability of the W8A8 tensor-core paths (10 × major + minor).
inline constexpr int kFp8MinCapability = 89;
inline constexpr int kFp8WeightOnlyMinCapability = 80;  // GEMV only (weight-only fp8)
inline constexpr int kInt8MinCapability = 80;

// An fp8 weight on the device: e4m3 bytes [n, k] and fp32 scales (1; n; or
// ceil(n/128) × ceil(k/128), row-major). Owns its device memory.
class Fp8GpuWeight {
 public:
  struct Impl;
  explicit Fp8GpuWeight(std::unique_ptr<Impl> impl);
  ~Fp8GpuWeight();
  int64_t n() const;
  int64_t k() const;
  Fp8Scaling scaling() const;
  const uint8_t* data() const;  // device e4m3 [n, k]
  const float* scales() const;  // device fp32
  int64_t scale_count() const;  // 1, n, or ceil(n/128)·ceil(k/128)
  size_t device_bytes() const;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// An int8 weight on the device: int8 [n, k] and one fp32 scale per output channel (n).
class Int8GpuWeight {
 public:
  struct Impl;
  explicit Int8GpuWeight(std::unique_ptr<Impl> impl);
  ~Int8GpuWeight();
  int64_t n() const;
  int64_t k() const;
  const int8_t* data() const;   // device int8 [n, k]
  const float* scales() const;  // device fp32 [n]
  size_t device_bytes() const;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Number of fp32 scales a weight of this shape and scaling carries.
int64_t fp8_scale_count(int64_t n, int64_t k, Fp8Scaling scaling);

// "" when the fp8 path can serve W [n, k] with this scaling on a GPU of this compute
// capability (e.g. 90 for H100), else one line saying why (shape or capability).
std::string fp8_unsupported_reason(int64_t n, int64_t k, Fp8Scaling scaling,
                                   int compute_capability);
std::string int8_unsupported_reason(int64_t n, int64_t k, int compute_capability);

// Online quantization of a device bf16 weight w [n, k] (row-major); synchronous with respect
// to `stream` only (the result is ready for work later on that stream).
std::unique_ptr<Fp8GpuWeight> fp8_quantize_weight(const __nv_bfloat16* w, int64_t n, int64_t k,
                                                  Fp8Scaling scaling, cudaStream_t stream);
std::unique_ptr<Int8GpuWeight> int8_quantize_weight(const __nv_bfloat16* w, int64_t n, int64_t k,
                                                    cudaStream_t stream);

// From a checkpoint: host e4m3 bytes [n, k] and host fp32 scales (scale_count of them, layout
// as above). `what` names the tensor in error messages (bad scale count, non-finite or
// non-positive scale). Blocks until the copy is done.
std::unique_ptr<Fp8GpuWeight> fp8_upload_weight(const uint8_t* host_q, const float* host_scales,
                                                int64_t scale_count, int64_t n, int64_t k,
                                                Fp8Scaling scaling, const std::string& what,
                                                cudaStream_t stream);
std::unique_ptr<Int8GpuWeight> int8_upload_weight(const int8_t* host_q, const float* host_scales,
                                                  int64_t scale_count, int64_t n, int64_t k,
                                                  const std::string& what, cudaStream_t stream);

// Activation quantization (the first half of a W8A8 call), exposed for tests and reuse.
// x [m, k] bf16 (row stride ldx) → q [m, k] (row stride k) and scales:
//   kPerTensor: scales[0] (amax over all of x; two kernels: a grid amax into scales[1],
//               then the cast; scales needs 2 floats),
//   kRowwise:   scales[m] (one pass: each block holds its row in registers),
//   kBlock128:  scales[m, ceil(k/128)] row-major (one pass: one warp per 1×128 group).
void fp8_quantize_activations(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k,
                              Fp8Scaling scaling, uint8_t* q, float* scales, cudaStream_t stream);
// Per-token int8: q [m, k], scales [m].
void int8_quantize_activations(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, int8_t* q,
                               float* scales, cudaStream_t stream);

// cuBLASLt handle, plan cache and the per-call buffers (see "CUDA graphs" above). One per
// stream; not thread-safe.
class W8A8Runner {
 public:
  W8A8Runner();
  ~W8A8Runner();
  W8A8Runner(const W8A8Runner&) = delete;
  W8A8Runner& operator=(const W8A8Runner&) = delete;

  // Sizes the per-call buffers for m <= max_m, k <= max_k, n <= max_n.
  void reserve(int64_t max_m, int64_t max_k, int64_t max_n);

  // y[m, n] (row stride ldy, bf16 or fp32) = x[m, k] (row stride ldx, bf16) · Wᵀ (+ bias fp32
  // [n] or null). force_gemm skips the GEMV kernel (tests, benchmarks).
  void fp8_linear(const Fp8GpuWeight& w, const __nv_bfloat16* x, int64_t ldx, const float* bias,
                  void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream,
                  bool force_gemm = false);
  void int8_linear(const Int8GpuWeight& w, const __nv_bfloat16* x, int64_t ldx, const float* bias,
                   void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream,
                   bool force_gemm = false);

  // Which kernel the last fp8_linear / int8_linear call ran ("gemv", "cublaslt-scaled",
  // "cublaslt+epilogue"), for tests and `lowbit info --kernels`.
  const char* last_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit::kernels::cuda
