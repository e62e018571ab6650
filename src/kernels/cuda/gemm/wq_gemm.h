// Weight-only integer GEMM on the GPU (W4A16 / W8A16): y[m, n] = x[m, k]·Wᵀ (+ bias) with
// int4 or int8 weights W [n, k] (row-major, as kernels::cpu::WqSource describes them) and bf16
// or fp16 activations; fp32 accumulation on the tensor cores (mma.sync m16n8k16).
//
// One kernel family, Marlin-class: the weight is repacked once at load (wq_gemm_pack) into
// per-warp fragment order, so one 16-byte load per lane feeds eight mma B fragments (int4: a
// 32 k × 32 n step; int8: 16 k × 32 n); codes, activations and per-group parameters stream
// global → shared through a multi-stage cp.async pipeline; codes are dequantized in registers
// ((q − z)·s with the exponent-bias trick, exact for integer zeros) right before the mma.
// Act-order (GPTQ desc_act) columns are reordered at pack time and x is gathered once per call.
//
// Configurations: m ≤ 16, 32 columns × 16 rows per block (the decode path); m > 16, 256 columns
// × 32/64/128 rows per block with k split over a thread-block cluster on sm_90 when the tiles
// alone cannot fill the GPU (wq_gemm_wide.cu; correct for any m, in passes; on sm_90a above
// m = 32 the products run on warpgroup MMAs, LOWBIT_WQ_WGMMA=0 keeps mma.sync). Above
// wq_gemm_max_fast_rows() callers should dequantize with wq_dequantize into a bf16/f16 [n, k]
// matrix and use cuBLASLt (GemmRunner). Shared memory: the m ≤ 16 configuration needs up to
// 168 KB, the wide one up to 132 KB; where the GPU offers less (A100 163 KB: m = 16; Ada 99 KB)
// they fall back to a 64 × 64 configuration in passes of 64 rows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cpu/wq_linear.h"
#include "kernels/cuda/gemm/linear.h"

namespace lowbit::kernels::cuda {

// Activation (and 16-bit output) type of one call.
enum class ActType : uint8_t { kBf16, kF16 };

// A packed weight in device memory: the shape in the open, the buffers (layout private to the
// kernels) behind `impl`, freed by the out-of-line destructor.
struct WqGpuWeight {
  int64_t n = 0, k = 0;
  cpu::WqKind kind = cpu::WqKind::kInt4;
  int64_t group_size = 0;  // k for per-channel
  bool act_order = false;
  struct Impl;
  std::unique_ptr<Impl> impl;
  WqGpuWeight();
  ~WqGpuWeight();
  WqGpuWeight(const WqGpuWeight&) = delete;
  WqGpuWeight& operator=(const WqGpuWeight&) = delete;
};

// "" if this kernel family can take `src`, else one reason naming the field, found and
// expected (e.g. "k = 4100 is not a multiple of 32"). Requirements: kind int4 or int8;
// n % 64 == 0; k % 32 == 0; group_size a power of two >= 32 (or group_size == k); zeros (if any)
// rounding into [-128, 128] (int4) / [0, 255] (int8); fractional zeros (online int4's refit)
// cost one extra rounding of −(z − round(z))·scale.
std::string wq_gemm_unsupported_reason(const cpu::WqSource& src);

// Validates (lowbit::Error naming `what`, the layer, otherwise), repacks on the CPU and uploads
// on `stream` (synchronized before returning, so `src` may be freed at once).
std::unique_ptr<WqGpuWeight> wq_gemm_pack(const cpu::WqSource& src, const std::string& what,
                                          cudaStream_t stream);

// A device-to-device copy of `w` (benchmarks rotate copies to defeat the L2 cache).
std::unique_ptr<WqGpuWeight> wq_gemm_clone(const WqGpuWeight& w, cudaStream_t stream);

// y[m, n] (row stride ldy elements) = x[m, k] (row stride ldx elements) · Wᵀ (+ bias).
//   x: bf16 or fp16 per `act`; bias: fp32 [n] or null.
//   out_type kBf16 writes the 16-bit type of `act` (bf16 for kBf16, fp16 for kF16); kF32 fp32.
// Scratch: act-order weights gather x into a buffer owned by the weight, grown on the first
// call with a larger m (cudaMalloc then); calls with m no larger than an earlier call allocate
// nothing and are CUDA-graph safe. Not for concurrent calls on one act-order weight from two
// streams. No other scratch (split-k partial sums meet in the cluster's shared memory).
void wq_gemm(const WqGpuWeight& w, ActType act, const void* x, int64_t ldx, const float* bias,
             void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream);

// The decode GEMV on the same packed weight: the same contract as wq_gemm for
// m = 1..kWqGemvMaxRows (lowbit::Error above); the codes stream straight to registers (no
// shared-memory pipeline). int8, and int4 above m = 2: one block per 32-column group
// (wq_gemv.cu, the GEMM's per-fragment decode and rounding; H100 m = 1 int8 at 66–97% of the
// copy rate on the 8B shapes). int4 at m <= 2: the stream-K kernel (wq_gemv_streamk.cu: equal
// shares of the codes per warp, scales applied to each group's fp32 sum, deterministic;
// 4096 × 28672 at 84%); see use_streamk_gemv in wq_gemm.cu and bench/gpu_wq_gemm_notes.md. The
// kernel choice offers it up to m = 8 (kWqGemvRows). Act-order weights gather x as wq_gemm does.
inline constexpr int64_t kWqGemvMaxRows = 16;
void wq_gemv(const WqGpuWeight& w, ActType act, const void* x, int64_t ldx, const float* bias,
             void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream);

// Decodes the whole weight to a dense row-major [n, k] bf16/fp16 matrix (per `act`) in the
// source's input-column order (act-order undone), for the large-m dequantize + cuBLASLt path.
void wq_dequantize(const WqGpuWeight& w, ActType act, void* w_out, cudaStream_t stream);

// Largest m at which wq_gemm is expected to beat dequantize + dense GEMM (measured on H100,
// bench/gpu_wq_gemm_bench.cpp); above it callers should use the dense path.
int64_t wq_gemm_max_fast_rows(const WqGpuWeight& w);

inline int64_t wq_rows(const WqGpuWeight& w) { return w.n; }  // output features
inline int64_t wq_cols(const WqGpuWeight& w) { return w.k; }  // input features
// Bytes one wq_gemm call reads from the weight (codes + the parameters of one act type).
uint64_t wq_gpu_bytes(const WqGpuWeight& w);

// Frees the per-device scratch the stream-K GEMV keeps for the whole process (its partial
// sums, allocated with the first weight on a device); the next weight upload or GEMV call
// allocates it again. For the end of a process that wants every allocation returned (leak
// checks); no CUDA graph that ran the GEMV may be replayed afterwards.
void wq_release_device_scratch();

}  // namespace lowbit::kernels::cuda
