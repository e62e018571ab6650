// Bandwidth-bound y = x·Wᵀ for a few rows of x: one warp per output feature, the weight row
// streamed once with 16-byte loads (4 in flight per lane), every x row reused from L1/L2.
#include <cuda_bf16.h>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/gemm/linear.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr int kWarps = 8;  // output features per block
constexpr int kUnroll = 4;

__device__ __forceinline__ float dot8(uint4 a, uint4 b) {
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 fx = __bfloat1622float2(x[i]), fy = __bfloat1622float2(y[i]);
    s = fmaf(fx.x, fy.x, s);
    s = fmaf(fx.y, fy.y, s);
  }
  return s;
}

template <int MMAX, typename OutT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx,
                const __nv_bfloat16* __restrict__ w, const float* __restrict__ bias,
                OutT* __restrict__ y, int64_t ldy, int m, int out, int in, bool vec) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= out) return;  // uniform per warp (writes nothing)
  const __nv_bfloat16* wr = w + int64_t(row) * in;
  float acc[MMAX];
#pragma unroll
  for (int i = 0; i < MMAX; ++i) acc[i] = 0.0f;

  if (vec) {
    const int nvec = in / 8;
    const uint4* w4 = reinterpret_cast<const uint4*>(wr);
    uint4 wv[kUnroll];
    auto load = [&](int j) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(w4 + j + u * 32);  // streamed once
    };
    // The first weights are in flight before waiting for the kernel that writes x.
    if (lane + (kUnroll - 1) * 32 < nvec) load(lane);
    pdl_wait();
    int j = lane;
    for (; j + (kUnroll - 1) * 32 < nvec; j += kUnroll * 32) {
      if (j != lane) load(j);
#pragma unroll
      for (int i = 0; i < MMAX; ++i) {
        if (i < m) {
          const uint4* x4 = reinterpret_cast<const uint4*>(x + i * ldx);
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) acc[i] += dot8(wv[u], __ldg(x4 + j + u * 32));
        }
      }
    }
    for (; j < nvec; j += 32) {
      uint4 wv = __ldcs(w4 + j);
#pragma unroll
      for (int i = 0; i < MMAX; ++i)
        if (i < m) acc[i] += dot8(wv, __ldg(reinterpret_cast<const uint4*>(x + i * ldx) + j));
    }
  } else {
    pdl_wait();
    for (int k = lane; k < in; k += 32) {
      float wk = __bfloat162float(wr[k]);
#pragma unroll
      for (int i = 0; i < MMAX; ++i)
        if (i < m) acc[i] = fmaf(wk, __bfloat162float(x[i * ldx + k]), acc[i]);
    }
  }
  // The main loop is done: the next kernel may be scheduled now (its blocks then spread over
  // SMs this kernel is leaving instead of crowding the few free ones early).
  pdl_launch_dependents();
#pragma unroll
  for (int i = 0; i < MMAX; ++i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
  }
  if (lane == 0) {
    const float b = bias ? bias[row] : 0.0f;
#pragma unroll
    for (int i = 0; i < MMAX; ++i) {
      if (i < m) {
        if constexpr (sizeof(OutT) == 2)
          y[i * ldy + row] = __float2bfloat16(acc[i] + b);
        else
          y[i * ldy + row] = acc[i] + b;
      }
    }
  }
}

template <int MMAX>
void launch(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, const float* bias, void* y,
            int64_t ldy, OutType out_type, int m, int out, int in, bool vec, cudaStream_t stream) {
  dim3 grid(unsigned((out + kWarps - 1) / kWarps));
  if (out_type == OutType::kBf16)
    launch_pdl(gemv_kernel<MMAX, __nv_bfloat16>, grid, kWarps * 32, 0, stream, x, ldx, w, bias,
               static_cast<__nv_bfloat16*>(y), ldy, m, out, in, vec);
  else
    launch_pdl(gemv_kernel<MMAX, float>, grid, kWarps * 32, 0, stream, x, ldx, w, bias,
               static_cast<float*>(y), ldy, m, out, in, vec);
}

}  // namespace

void gemv_bf16(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, const float* bias,
               void* y, int64_t ldy, OutType out_type, int64_t m, int64_t out, int64_t in,
               cudaStream_t stream) {
  if (m == 0 || out == 0) return;
  // 16-byte loads need every row of x and W to start 16-byte aligned.
  const bool vec = in % 8 == 0 && ldx % 8 == 0 && (reinterpret_cast<uintptr_t>(x) % 16) == 0 &&
                   (reinterpret_cast<uintptr_t>(w) % 16) == 0;
  LOWBIT_CHECK(m <= kGemvMaxRows, "gemv_bf16: m = {} > {}", m, kGemvMaxRows);
  if (m == 1)
    launch<1>(x, ldx, w, bias, y, ldy, out_type, 1, int(out), int(in), vec, stream);
  else
    launch<4>(x, ldx, w, bias, y, ldy, out_type, int(m), int(out), int(in), vec, stream);
}

}  // namespace lowbit::kernels::cuda
