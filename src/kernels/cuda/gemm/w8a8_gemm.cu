// W8A8 own kernels: weight and activation quantizers (fp8 e4m3 / int8), the 8-bit-weight GEMV
// for small m, and the dequantizing epilogue for cuBLASLt's int32/fp32 results. The cuBLASLt
// side (W8A8Runner) is in w8a8_cublaslt.cpp.
//
// Every quantizer computes s = amax / qmax (1 where amax = 0) and q = round(x / s) (IEEE
// division, round to nearest even, saturating), so a CPU reference reproduces it bit for bit.
// Inputs are read as 16-byte vectors of 8 bf16: rows must start 16-byte aligned (k and the row
// stride multiples of 8 elements; the public entry points check).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/gemm/w8a8_internal.h"

namespace lowbit::kernels::cuda {
namespace w8a8 {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Max over the block (blockDim.x == kThreads); every thread gets the result.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float part[kThreads / 32];
  __shared__ float result;
  v = warp_max(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float a = threadIdx.x < kThreads / 32 ? part[threadIdx.x] : 0.0f;
    a = warp_max(a);
    if (threadIdx.x == 0) result = a;
  }
  __syncthreads();
  return result;
}

__device__ __forceinline__ void unpack8(uint4 v, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ float amax8(uint4 v) {
  float f[8];
  unpack8(v, f);
  float a = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) a = fmaxf(a, fabsf(f[i]));
  return a;
}

template <bool kFp8>
__device__ __forceinline__ float scale_of(float amax) {
  return amax > 0.0f ? amax / (kFp8 ? kFp8Max : kInt8Max) : 1.0f;
}

template <bool kFp8>
__device__ __forceinline__ uint8_t quantize1(float v, float s) {
  const float t = v / s;
  if constexpr (kFp8) {
    return __nv_cvt_float_to_fp8(t, __NV_SATFINITE, __NV_E4M3);
  } else {
    int q = __float2int_rn(t);
    q = max(-127, min(127, q));
    return uint8_t(int8_t(q));
  }
}

// 8 bf16 → 8 bytes.
template <bool kFp8>
__device__ __forceinline__ uint2 quantize8(uint4 v, float s) {
  float f[8];
  unpack8(v, f);
  uint32_t lo = 0, hi = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) lo |= uint32_t(quantize1<kFp8>(f[i], s)) << (8 * i);
#pragma unroll
  for (int i = 0; i < 4; ++i) hi |= uint32_t(quantize1<kFp8>(f[4 + i], s)) << (8 * i);
  return make_uint2(lo, hi);
}

// amax over x [m, k] (row stride ldx) into *amax_bits (float bits; non-negative floats order
// like unsigned integers, so atomicMax works on the bits).
__global__ void __launch_bounds__(kThreads)
    amax_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx, int m, int k,
                unsigned* __restrict__ amax_bits) {
  const int kv = k / 8;
  const int64_t total = int64_t(m) * kv;
  float a = 0.0f;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / kv, c = i - r * kv;
    a = fmaxf(a, amax8(__ldg(reinterpret_cast<const uint4*>(x + r * ldx) + c)));
  }
  a = block_max(a);
  if (threadIdx.x == 0) atomicMax(amax_bits, __float_as_uint(a));
}

// Per-tensor cast with the scale from the amax in scales[1]; block 0 publishes scales[0].
template <bool kFp8>
__global__ void __launch_bounds__(kThreads)
    quant_tensor_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx, int m, int k,
                        uint8_t* __restrict__ q, float* __restrict__ scales) {
  const float s = scale_of<kFp8>(__uint_as_float(*reinterpret_cast<const unsigned*>(scales + 1)));
  if (blockIdx.x == 0 && threadIdx.x == 0) scales[0] = s;
  const int kv = k / 8;
  const int64_t total = int64_t(m) * kv;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / kv, c = i - r * kv;
    uint4 v = __ldg(reinterpret_cast<const uint4*>(x + r * ldx) + c);
    reinterpret_cast<uint2*>(q + r * k)[c] = quantize8<kFp8>(v, s);
  }
}

// One block per row: amax of the row, then the cast (the second read comes from L1/L2).
template <bool kFp8>
__global__ void __launch_bounds__(kThreads)
    quant_row_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx, int k,
                     uint8_t* __restrict__ q, float* __restrict__ scales) {
  const int64_t row = blockIdx.x;
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * ldx);
  const int kv = k / 8;
  float a = 0.0f;
  for (int c = threadIdx.x; c < kv; c += kThreads) a = fmaxf(a, amax8(__ldg(xr + c)));
  const float s = scale_of<kFp8>(block_max(a));
  if (threadIdx.x == 0) scales[row] = s;
  uint2* qr = reinterpret_cast<uint2*>(q + row * k);
  for (int c = threadIdx.x; c < kv; c += kThreads) qr[c] = quantize8<kFp8>(__ldg(xr + c), s);
}

// 1×128 groups: 16 lanes per group, 8 values each held in registers (one pass).
// 1×128 groups: 16 lanes per group, 8 values each held in registers (one pass).
__global__ void __launch_bounds__(kThreads)
    quant_group128_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx, int m, int k,
                          uint8_t* __restrict__ q, float* __restrict__ scales,
                          BlockScaleLayout layout) {
  const int kb = k / 128;
  const int64_t group = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / 16;
  const int sub = threadIdx.x & 15;
  const bool valid = group < int64_t(m) * kb;  // whole 16-lane segments agree
  const int64_t row = valid ? group / kb : 0;
  const int cb = valid ? int(group - row * kb) : 0;
  uint4 v = make_uint4(0, 0, 0, 0);
  if (valid) v = __ldg(reinterpret_cast<const uint4*>(x + row * ldx + cb * 128) + sub);
  float a = amax8(v);
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
  if (!valid) return;
  const float s = scale_of<true>(a);
  if (sub == 0) scales[act_scale_index(row, cb, m, kb, layout)] = s;
  reinterpret_cast<uint2*>(q + row * k + cb * 128)[sub] = quantize8<true>(v, s);
}

// 128×128 weight blocks: one thread block per tile, 8 vectors per thread in registers.
__global__ void __launch_bounds__(kThreads)
    quant_block128_weight_kernel(const __nv_bfloat16* __restrict__ w, int n, int k,
                                 uint8_t* __restrict__ q, float* __restrict__ scales) {
  const int kb = k / 128;
  const int bi = blockIdx.y, bj = blockIdx.x;
  constexpr int kPer = 128 * 16 / kThreads;  // vectors of 8 per thread
  uint4 v[kPer];
  float a = 0.0f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = bi * 128 + idx / 16, c = idx % 16;
    v[i] = make_uint4(0, 0, 0, 0);
    if (r < n) v[i] = __ldg(reinterpret_cast<const uint4*>(w + int64_t(r) * k + bj * 128) + c);
    a = fmaxf(a, amax8(v[i]));
  }
  const float s = scale_of<true>(block_max(a));
  if (threadIdx.x == 0) scales[int64_t(bi) * kb + bj] = s;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = bi * 128 + idx / 16, c = idx % 16;
    if (r < n)
      reinterpret_cast<uint2*>(q + int64_t(r) * k + bj * 128)[c] = quantize8<true>(v[i], s);
  }
}

// ---- GEMV: one warp per output row, 16 weights per 16-byte load ----

constexpr int kGemvWarps = 8;
// 16-byte weight loads in flight per lane: 8. For m <= 2 the kernel is held to 64 registers
// (4 blocks of 8 warps per SM). H100, fp8 8B decode (same call, two rounds): batch 2 415.5 /
// 415.1 tok/s against 393.8 / 392.9 with the earlier 4 loads at 40 registers (6 blocks per
// SM, chosen so 4096 × 6144's 6144 warps fit one wave), batch 1 equal (294.4 / 294.1 against
// 294.2 / 293.3); 6 loads at 5 blocks per SM: 285.5 / 386.5.
constexpr int kGemvUnroll = 8;
template <int kMaxRows>
constexpr int gemv_min_blocks() {
  return kMaxRows <= 2 ? 4 : 1;
}

template <bool kFp8>
__device__ __forceinline__ void decode16(uint4 v, float f[16]) {
  const uint32_t* u = reinterpret_cast<const uint32_t*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (kFp8) {
      __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[i] & 0xffffu), __NV_E4M3);
      __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[i] >> 16), __NV_E4M3);
      float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
      f[4 * i] = a.x;
      f[4 * i + 1] = a.y;
      f[4 * i + 2] = b.x;
      f[4 * i + 3] = b.y;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) f[4 * i + j] = float(int8_t((u[i] >> (8 * j)) & 0xff));
    }
  }
}

__device__ __forceinline__ float dot16(const float wf[16], const __nv_bfloat16* x16) {
  const uint4* p = reinterpret_cast<const uint4*>(x16);
  float a[8], b[8];
  unpack8(__ldg(p), a);
  unpack8(__ldg(p + 1), b);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) s = fmaf(wf[i], a[i], s);
#pragma unroll
  for (int i = 0; i < 8; ++i) s = fmaf(wf[8 + i], b[i], s);
  return s;
}

// kScaling: 0 per-tensor, 1 rowwise, 2 block 128×128.
template <bool kFp8, int kMaxRows, int kScaling, typename OutT>
__global__ void __launch_bounds__(kGemvWarps * 32, gemv_min_blocks<kMaxRows>())
    w8_gemv_kernel(const uint8_t* __restrict__ w, const float* __restrict__ scales,
                   const __nv_bfloat16* __restrict__ x, int64_t ldx, const float* __restrict__ bias,
                   OutT* __restrict__ y, int64_t ldy, int m, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  if (row >= n) return;  // uniform per warp (writes nothing)
  const uint4* w4 = reinterpret_cast<const uint4*>(w + int64_t(row) * k);
  const float* block_scales = kScaling == 2 ? scales + int64_t(row / 128) * (k / 128) : nullptr;
  float acc[kMaxRows];
#pragma unroll
  for (int i = 0; i < kMaxRows; ++i) acc[i] = 0.0f;
  const int nvec = k / 16;

  auto consume = [&](uint4 wv, int j) {
    const float bs = kScaling == 2 ? __ldg(block_scales + j / 8) : 1.0f;  // 8 vectors per block
    if constexpr (kMaxRows <= 2) {  // decode 4 weights at a time: fewer live registers
      const uint32_t* u = reinterpret_cast<const uint32_t*>(&wv);
      float d[kMaxRows];
#pragma unroll
      for (int i = 0; i < kMaxRows; ++i) d[i] = 0.0f;
#pragma unroll
      for (int qd = 0; qd < 4; ++qd) {
        float wf[4];
        if constexpr (kFp8) {
          __half2_raw lo =
              __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[qd] & 0xffffu), __NV_E4M3);
          __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[qd] >> 16), __NV_E4M3);
          float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
          wf[0] = a.x, wf[1] = a.y, wf[2] = b.x, wf[3] = b.y;
        } else {
#pragma unroll
          for (int t = 0; t < 4; ++t) wf[t] = float(int8_t((u[qd] >> (8 * t)) & 0xff));
        }
#pragma unroll
        for (int i = 0; i < kMaxRows; ++i) {
          if (i < m) {
            const uint2 xv =
                __ldg(reinterpret_cast<const uint2*>(x + i * ldx + int64_t(j) * 16 + qd * 4));
            const float2 x01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&xv.x));
            const float2 x23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&xv.y));
            d[i] = fmaf(wf[0], x01.x, d[i]);
            d[i] = fmaf(wf[1], x01.y, d[i]);
            d[i] = fmaf(wf[2], x23.x, d[i]);
            d[i] = fmaf(wf[3], x23.y, d[i]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kMaxRows; ++i)
        if (i < m) acc[i] = kScaling == 2 ? fmaf(d[i], bs, acc[i]) : acc[i] + d[i];
    } else {
      float wf[16];
      decode16<kFp8>(wv, wf);
#pragma unroll
      for (int i = 0; i < kMaxRows; ++i) {
        if (i < m) {
          const float d = dot16(wf, x + i * ldx + int64_t(j) * 16);
          acc[i] = kScaling == 2 ? fmaf(d, bs, acc[i]) : acc[i] + d;
        }
      }
    }
  };
  constexpr int kUnroll = kGemvUnroll;
  int j = lane;
  for (; j + (kUnroll - 1) * 32 < nvec; j += kUnroll * 32) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(w4 + j + u * 32);  // streamed once
    pdl_wait();  // x comes from the kernel before (returns at once after the first pass)
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) consume(wv[u], j + u * 32);
  }
  pdl_wait();
  for (; j < nvec; j += 32) consume(__ldcs(w4 + j), j);
  // The main loop is done: the next kernel may be scheduled now (its blocks then spread over
  // SMs this kernel is leaving instead of crowding the few free ones early).
  pdl_launch_dependents();

#pragma unroll
  for (int i = 0; i < kMaxRows; ++i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
  }
  if (lane == 0) {
    const float s = kScaling == 0 ? scales[0] : kScaling == 1 ? scales[row] : 1.0f;
    const float b = bias ? bias[row] : 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxRows; ++i) {
      if (i < m) {
        const float v = fmaf(acc[i], s, b);
        if constexpr (sizeof(OutT) == 2)
          y[i * ldy + row] = __float2bfloat16(v);
        else
          y[i * ldy + row] = v;
      }
    }
  }
}

template <bool kFp8, int kMaxRows, int kScaling>
void launch_gemv(const void* w, const float* scales, const __nv_bfloat16* x, int64_t ldx,
                 const float* bias, void* y, int64_t ldy, OutType out_type, int m, int n, int k,
                 cudaStream_t stream) {
  dim3 grid(unsigned((n + kGemvWarps - 1) / kGemvWarps));
  const auto* wq = static_cast<const uint8_t*>(w);
  if (out_type == OutType::kBf16)
    launch_pdl(w8_gemv_kernel<kFp8, kMaxRows, kScaling, __nv_bfloat16>, grid, kGemvWarps * 32, 0,
               stream, wq, scales, x, ldx, bias, static_cast<__nv_bfloat16*>(y), ldy, m, n, k);
  else
    launch_pdl(w8_gemv_kernel<kFp8, kMaxRows, kScaling, float>, grid, kGemvWarps * 32, 0, stream,
               wq, scales, x, ldx, bias, static_cast<float*>(y), ldy, m, n, k);
}

template <bool kFp8, int kScaling>
void gemv_rows(const void* w, const float* scales, const __nv_bfloat16* x, int64_t ldx,
               const float* bias, void* y, int64_t ldy, OutType out_type, int m, int n, int k,
               cudaStream_t stream) {
  if (m == 1)
    launch_gemv<kFp8, 1, kScaling>(w, scales, x, ldx, bias, y, ldy, out_type, m, n, k, stream);
  else if (m == 2)
    launch_gemv<kFp8, 2, kScaling>(w, scales, x, ldx, bias, y, ldy, out_type, m, n, k, stream);
  else if (m <= 4)
    launch_gemv<kFp8, 4, kScaling>(w, scales, x, ldx, bias, y, ldy, out_type, m, n, k, stream);
  else
    launch_gemv<kFp8, 8, kScaling>(w, scales, x, ldx, bias, y, ldy, out_type, m, n, k, stream);
}

// ---- epilogue ----

template <typename AccT, typename OutT>
__global__ void __launch_bounds__(kThreads)
    epilogue_kernel(const AccT* __restrict__ acc, const float* __restrict__ row_scales,
                    bool row_scalar, const float* __restrict__ col_scales, bool col_scalar,
                    const float* __restrict__ bias, OutT* __restrict__ y, int64_t ldy, int m,
                    int n) {
  const int nq = n / 4;
  const int64_t total = int64_t(m) * nq;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / nq;
    const int c = int(i - r * nq) * 4;
    const float rs = row_scales[row_scalar ? 0 : r];
    float a[4];
    if constexpr (std::is_same_v<AccT, int32_t>) {
      int4 v = reinterpret_cast<const int4*>(acc + r * n)[c / 4];
      a[0] = float(v.x), a[1] = float(v.y), a[2] = float(v.z), a[3] = float(v.w);
    } else {
      float4 v = reinterpret_cast<const float4*>(acc + r * n)[c / 4];
      a[0] = v.x, a[1] = v.y, a[2] = v.z, a[3] = v.w;
    }
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float cs = col_scales[col_scalar ? 0 : c + t];
      float v = a[t] * rs * cs;
      if (bias) v += bias[c + t];
      if constexpr (sizeof(OutT) == 2)
        y[r * ldy + c + t] = __float2bfloat16(v);
      else
        y[r * ldy + c + t] = v;
    }
  }
}

// y[i, j] = y[i, j]·row_scales[i]·col_scales[j] (+ bias[j]) in place (y holds the unscaled
// fp8 product).
template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    scale_inplace_kernel(OutT* __restrict__ y, int64_t ldy, const float* __restrict__ row_scales,
                         const float* __restrict__ col_scales, const float* __restrict__ bias,
                         int m, int n) {
  const int64_t total = int64_t(m) * n;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / n;
    const int c = int(i - r * n);
    OutT* p = y + r * ldy + c;
    float v;
    if constexpr (sizeof(OutT) == 2)
      v = __bfloat162float(*p);
    else
      v = *p;
    v = v * row_scales[r] * col_scales[c];
    if (bias) v += bias[c];
    if constexpr (sizeof(OutT) == 2)
      *p = __float2bfloat16(v);
    else
      *p = v;
  }
}

// Rows [r0, r0 + rows) of an fp8 weight [n, k] dequantized to bf16 [rows, k].
__global__ void __launch_bounds__(kThreads)
    dequant_fp8_rows_kernel(const uint8_t* __restrict__ q, const float* __restrict__ scales,
                            int scaling, int64_t r0, int rows, int k,
                            __nv_bfloat16* __restrict__ out) {
  const int kv = k / 8, kb = k / 128;
  const int64_t total = int64_t(rows) * kv;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / kv;
    const int c = int(i - r * kv);
    const int64_t row = r0 + r;
    const float s = scaling == 0   ? scales[0]
                    : scaling == 1 ? scales[row]
                                   : scales[(row / 128) * kb + (c * 8) / 128];
    const uint2 v = reinterpret_cast<const uint2*>(q + row * k)[c];
    const uint32_t u[2] = {v.x, v.y};
    __nv_bfloat162 o[4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[h] & 0xffffu), __NV_E4M3);
      __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(u[h] >> 16), __NV_E4M3);
      float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
      o[2 * h] = __floats2bfloat162_rn(a.x * s, a.y * s);
      o[2 * h + 1] = __floats2bfloat162_rn(b.x * s, b.y * s);
    }
    reinterpret_cast<uint4*>(out + r * k)[c] = *reinterpret_cast<const uint4*>(o);
  }
}

template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    bias_kernel(OutT* __restrict__ y, int64_t ldy, const float* __restrict__ bias, int m, int n) {
  const int64_t total = int64_t(m) * n;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / n;
    const int c = int(i - r * n);
    OutT* p = y + r * ldy + c;
    if constexpr (sizeof(OutT) == 2)
      *p = __float2bfloat16(__bfloat162float(*p) + bias[c]);
    else
      *p += bias[c];
  }
}

unsigned grid_for(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(blocks, 132 * 16)));
}

BlockScaleLayout initial_layout() {
  BlockScaleLayout l;
  if (const char* e = std::getenv("LOWBIT_W8A8_BLOCK_LAYOUT"); e && std::strlen(e) == 4) {
    l.act_group_major = e[0] == '1';
    l.act_pad4 = e[1] == '1';
    l.w_n_major = e[2] == '1';
    l.w_pad4 = e[3] == '1';
  }
  return l;
}

BlockScaleLayout g_layout = initial_layout();

// One block: padding set to 1, then every scale moved to its place.
__global__ void relayout_kernel(const float* __restrict__ src, float* __restrict__ dst, int nb,
                                int kb, BlockScaleLayout l) {
  const int64_t total = weight_scale_count(nb, kb, l);
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) dst[i] = 1.0f;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < int64_t(nb) * kb; i += blockDim.x) {
    const int64_t a = i / kb, b = i - a * kb;
    dst[weight_scale_index(a, b, nb, kb, l)] = src[i];
  }
}

void check_rows(const void* p, int64_t ld, int64_t k, const char* what) {
  LOWBIT_CHECK(k % 16 == 0 && ld % 8 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0,
               "{}: rows must be 16-byte aligned with k % 16 == 0 (k {}, row stride {})", what, k,
               ld);
}

template <bool kFp8>
void quant_tensor(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* q,
                  float* scales, cudaStream_t stream) {
  LOWBIT_CUDA_CHECK(cudaMemsetAsync(scales + 1, 0, sizeof(float), stream));
  const unsigned grid = grid_for(m * k / 8);
  amax_kernel<<<grid, kThreads, 0, stream>>>(x, ldx, int(m), int(k),
                                             reinterpret_cast<unsigned*>(scales + 1));
  LOWBIT_CUDA_CHECK_LAUNCH();
  quant_tensor_kernel<kFp8><<<grid, kThreads, 0, stream>>>(x, ldx, int(m), int(k), q, scales);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <bool kFp8>
void quant_rows(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* q,
                float* scales, cudaStream_t stream) {
  quant_row_kernel<kFp8><<<unsigned(m), kThreads, 0, stream>>>(x, ldx, int(k), q, scales);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

BlockScaleLayout block_scale_layout() { return g_layout; }
void set_block_scale_layout(const BlockScaleLayout& layout) { g_layout = layout; }

void relayout_weight_block_scales(const float* src, float* dst, int64_t nb, int64_t kb,
                                  BlockScaleLayout layout, cudaStream_t stream) {
  relayout_kernel<<<1, kThreads, 0, stream>>>(src, dst, int(nb), int(kb), layout);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void quantize_act_block128(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* q,
                           float* scales, BlockScaleLayout layout, cudaStream_t stream) {
  LOWBIT_CHECK(k % 128 == 0, "1×128 activation groups need k % 128 == 0 (k {})", k);
  const int64_t threads = m * (k / 128) * 16;
  if (layout.act_pad4)  // padding entries (never read for real tokens) zeroed, not left stale
    LOWBIT_CUDA_CHECK(
        cudaMemsetAsync(scales, 0, size_t(act_scale_count(m, k / 128, layout)) * 4, stream));
  quant_group128_kernel<<<unsigned((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      x, ldx, int(m), int(k), q, scales, layout);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void w8_gemv(const void* w, bool is_fp8, const float* scales, Fp8Scaling scaling,
             const __nv_bfloat16* x, int64_t ldx, const float* bias, void* y, int64_t ldy,
             OutType out_type, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  LOWBIT_CHECK(m >= 1 && m <= kW8GemvChunkRows, "w8_gemv: m = {} not in [1, {}]", m,
               kW8GemvChunkRows);
  check_rows(x, ldx, k, "8-bit GEMV activations");
  const int mi = int(m), ni = int(n), ki = int(k);
  if (is_fp8) {
    switch (scaling) {
      case Fp8Scaling::kPerTensor:
        gemv_rows<true, 0>(w, scales, x, ldx, bias, y, ldy, out_type, mi, ni, ki, stream);
        break;
      case Fp8Scaling::kRowwise:
        gemv_rows<true, 1>(w, scales, x, ldx, bias, y, ldy, out_type, mi, ni, ki, stream);
        break;
      case Fp8Scaling::kBlock128:
        gemv_rows<true, 2>(w, scales, x, ldx, bias, y, ldy, out_type, mi, ni, ki, stream);
        break;
    }
  } else {
    LOWBIT_CHECK(scaling == Fp8Scaling::kRowwise, "int8 GEMV: per-channel scales only");
    gemv_rows<false, 1>(w, scales, x, ldx, bias, y, ldy, out_type, mi, ni, ki, stream);
  }
}

void dequant_epilogue(const void* acc, bool acc_is_int, const float* row_scales, bool row_scalar,
                      const float* col_scales, bool col_scalar, const float* bias, void* y,
                      int64_t ldy, OutType out_type, int64_t m, int64_t n, cudaStream_t stream) {
  LOWBIT_CHECK(n % 4 == 0, "epilogue: n = {} not a multiple of 4", n);
  const unsigned grid = grid_for(m * n / 4);
  const int mi = int(m), ni = int(n);
  if (acc_is_int) {
    const auto* a = static_cast<const int32_t*>(acc);
    if (out_type == OutType::kBf16)
      epilogue_kernel<int32_t, __nv_bfloat16>
          <<<grid, kThreads, 0, stream>>>(a, row_scales, row_scalar, col_scales, col_scalar, bias,
                                          static_cast<__nv_bfloat16*>(y), ldy, mi, ni);
    else
      epilogue_kernel<int32_t, float>
          <<<grid, kThreads, 0, stream>>>(a, row_scales, row_scalar, col_scales, col_scalar, bias,
                                          static_cast<float*>(y), ldy, mi, ni);
  } else {
    const auto* a = static_cast<const float*>(acc);
    if (out_type == OutType::kBf16)
      epilogue_kernel<float, __nv_bfloat16>
          <<<grid, kThreads, 0, stream>>>(a, row_scales, row_scalar, col_scales, col_scalar, bias,
                                          static_cast<__nv_bfloat16*>(y), ldy, mi, ni);
    else
      epilogue_kernel<float, float>
          <<<grid, kThreads, 0, stream>>>(a, row_scales, row_scalar, col_scales, col_scalar, bias,
                                          static_cast<float*>(y), ldy, mi, ni);
  }
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void scale_inplace(void* y, int64_t ldy, OutType out_type, const float* row_scales,
                   const float* col_scales, const float* bias, int64_t m, int64_t n,
                   cudaStream_t stream) {
  const unsigned grid = grid_for(m * n);
  if (out_type == OutType::kBf16)
    scale_inplace_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(
        static_cast<__nv_bfloat16*>(y), ldy, row_scales, col_scales, bias, int(m), int(n));
  else
    scale_inplace_kernel<float><<<grid, kThreads, 0, stream>>>(
        static_cast<float*>(y), ldy, row_scales, col_scales, bias, int(m), int(n));
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void dequant_fp8_rows(const uint8_t* q, const float* scales, Fp8Scaling scaling, int64_t r0,
                      int64_t rows, int64_t k, __nv_bfloat16* out, cudaStream_t stream) {
  dequant_fp8_rows_kernel<<<grid_for(rows * k / 8), kThreads, 0, stream>>>(
      q, scales, int(scaling), r0, int(rows), int(k), out);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void add_bias_rows(void* y, int64_t ldy, OutType out_type, const float* bias, int64_t m, int64_t n,
                   cudaStream_t stream) {
  const unsigned grid = grid_for(m * n);
  if (out_type == OutType::kBf16)
    bias_kernel<__nv_bfloat16>
        <<<grid, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(y), ldy, bias, int(m), int(n));
  else
    bias_kernel<float>
        <<<grid, kThreads, 0, stream>>>(static_cast<float*>(y), ldy, bias, int(m), int(n));
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace w8a8

// ---- public: names, shapes, weights ----

const char* fp8_scaling_name(Fp8Scaling s) {
  switch (s) {
    case Fp8Scaling::kPerTensor:
      return "per-tensor";
    case Fp8Scaling::kRowwise:
      return "rowwise";
    case Fp8Scaling::kBlock128:
      return "block128";
  }
  return "?";
}

int64_t fp8_scale_count(int64_t n, int64_t k, Fp8Scaling scaling) {
  switch (scaling) {
    case Fp8Scaling::kPerTensor:
      return 1;
    case Fp8Scaling::kRowwise:
      return n;
    case Fp8Scaling::kBlock128:
      return w8a8::ceil_div(n, 128) * w8a8::ceil_div(k, 128);
  }
  return 0;
}

namespace {

std::string shape_reason(int64_t n, int64_t k, const char* method) {
  if (n <= 0 || k <= 0) return fmt::format("{}: empty weight [{}, {}]", method, n, k);
  if (k % 16 != 0)
    return fmt::format("{}: in_features {} is not a multiple of 16 (8-bit GEMMs need 16-byte rows)",
                       method, k);
  if (n % 16 != 0)
    return fmt::format("{}: out_features {} is not a multiple of 16 (cuBLASLt 8-bit GEMM)", method,
                       n);
  if (k >= (int64_t(1) << 31) / 16 || n >= (int64_t(1) << 31))
    return fmt::format("{}: weight [{}, {}] too large", method, n, k);
  return "";
}

}  // namespace

std::string fp8_unsupported_reason(int64_t n, int64_t k, Fp8Scaling scaling,
                                   int compute_capability) {
  if (compute_capability < kFp8WeightOnlyMinCapability)
    return fmt::format("fp8 ({}): needs compute capability {}+ (weight-only GEMV); this GPU has {}",
                       fp8_scaling_name(scaling), kFp8WeightOnlyMinCapability, compute_capability);
  std::string r = shape_reason(n, k, "fp8");
  if (!r.empty()) return r;
  if (scaling == Fp8Scaling::kBlock128 && k % 128 != 0)
    return fmt::format("fp8 block128: in_features {} is not a multiple of 128 (1×128 groups)", k);
  return "";
}

std::string int8_unsupported_reason(int64_t n, int64_t k, int compute_capability) {
  if (compute_capability < kInt8MinCapability)
    return fmt::format("int8 W8A8: needs compute capability {}+; this GPU has {}",
                       kInt8MinCapability, compute_capability);
  return shape_reason(n, k, "int8 W8A8");
}

Fp8GpuWeight::Fp8GpuWeight(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Fp8GpuWeight::~Fp8GpuWeight() = default;
int64_t Fp8GpuWeight::n() const { return impl_->n; }
int64_t Fp8GpuWeight::k() const { return impl_->k; }
Fp8Scaling Fp8GpuWeight::scaling() const { return impl_->scaling; }
const uint8_t* Fp8GpuWeight::data() const { return impl_->q.get<uint8_t>(); }
const float* Fp8GpuWeight::scales() const { return impl_->scales.get<float>(); }
int64_t Fp8GpuWeight::scale_count() const { return impl_->scale_count; }
size_t Fp8GpuWeight::device_bytes() const { return impl_->q.bytes() + impl_->scales.bytes(); }

Int8GpuWeight::Int8GpuWeight(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8GpuWeight::~Int8GpuWeight() = default;
int64_t Int8GpuWeight::n() const { return impl_->n; }
int64_t Int8GpuWeight::k() const { return impl_->k; }
const int8_t* Int8GpuWeight::data() const { return impl_->q.get<int8_t>(); }
const float* Int8GpuWeight::scales() const { return impl_->scales.get<float>(); }
size_t Int8GpuWeight::device_bytes() const { return impl_->q.bytes() + impl_->scales.bytes(); }

namespace {

std::unique_ptr<Fp8GpuWeight::Impl> new_fp8(int64_t n, int64_t k, Fp8Scaling scaling) {
  std::string r = fp8_unsupported_reason(n, k, scaling, 90);
  if (!r.empty()) fail("{}", r);
  auto impl = std::make_unique<Fp8GpuWeight::Impl>();
  impl->n = n;
  impl->k = k;
  impl->scaling = scaling;
  impl->scale_count = fp8_scale_count(n, k, scaling);
  impl->q = DeviceBuffer(size_t(n * k), "fp8 weight");
  impl->scales = DeviceBuffer(size_t(impl->scale_count + 1) * sizeof(float), "fp8 weight scales");
  return impl;
}

std::unique_ptr<Int8GpuWeight::Impl> new_int8(int64_t n, int64_t k) {
  std::string r = int8_unsupported_reason(n, k, 90);
  if (!r.empty()) fail("{}", r);
  auto impl = std::make_unique<Int8GpuWeight::Impl>();
  impl->n = n;
  impl->k = k;
  impl->q = DeviceBuffer(size_t(n * k), "int8 weight");
  impl->scales = DeviceBuffer(size_t(n) * sizeof(float), "int8 weight scales");
  return impl;
}

// The block scales in the layout cuBLASLt reads (see w8a8::BlockScaleLayout).
void make_gemm_scales(Fp8GpuWeight::Impl& impl, cudaStream_t stream) {
  if (impl.scaling != Fp8Scaling::kBlock128) return;
  const auto layout = w8a8::block_scale_layout();
  const int64_t nb = w8a8::ceil_div(impl.n, 128), kb = w8a8::ceil_div(impl.k, 128);
  impl.gemm_scales = DeviceBuffer(size_t(w8a8::weight_scale_count(nb, kb, layout)) * 4,
                                  "fp8 block scales (cuBLASLt layout)");
  w8a8::relayout_weight_block_scales(impl.scales.get<float>(), impl.gemm_scales.get<float>(), nb,
                                     kb, layout, stream);
}

void check_scales(const float* s, int64_t count, int64_t expected, const std::string& what) {
  if (count != expected) fail("{}: {} scales, expected {}", what, count, expected);
  for (int64_t i = 0; i < count; ++i)
    if (!(std::isfinite(s[i]) && s[i] > 0.0f))
      fail("{}: scale[{}] = {} (expected finite and > 0)", what, i, s[i]);
}

}  // namespace

void fp8_quantize_activations(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k,
                              Fp8Scaling scaling, uint8_t* q, float* scales, cudaStream_t stream) {
  if (m == 0) return;
  w8a8::check_rows(x, ldx, k, "fp8 activation quantization");
  switch (scaling) {
    case Fp8Scaling::kPerTensor:
      w8a8::quant_tensor<true>(x, ldx, m, k, q, scales, stream);
      break;
    case Fp8Scaling::kRowwise:
      w8a8::quant_rows<true>(x, ldx, m, k, q, scales, stream);
      break;
    case Fp8Scaling::kBlock128:
      w8a8::quantize_act_block128(x, ldx, m, k, q, scales, w8a8::block_scale_layout(), stream);
      break;
  }
}

void int8_quantize_activations(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, int8_t* q,
                               float* scales, cudaStream_t stream) {
  if (m == 0) return;
  w8a8::check_rows(x, ldx, k, "int8 activation quantization");
  w8a8::quant_rows<false>(x, ldx, m, k, reinterpret_cast<uint8_t*>(q), scales, stream);
}

std::unique_ptr<Fp8GpuWeight> fp8_quantize_weight(const __nv_bfloat16* w, int64_t n, int64_t k,
                                                  Fp8Scaling scaling, cudaStream_t stream) {
  auto impl = new_fp8(n, k, scaling);
  w8a8::check_rows(w, k, k, "fp8 weight quantization");
  uint8_t* q = impl->q.get<uint8_t>();
  float* s = impl->scales.get<float>();
  switch (scaling) {
    case Fp8Scaling::kPerTensor:
      w8a8::quant_tensor<true>(w, k, n, k, q, s, stream);
      break;
    case Fp8Scaling::kRowwise:
      w8a8::quant_rows<true>(w, k, n, k, q, s, stream);
      break;
    case Fp8Scaling::kBlock128: {
      dim3 grid(unsigned(k / 128), unsigned(w8a8::ceil_div(n, 128)));
      w8a8::quant_block128_weight_kernel<<<grid, w8a8::kThreads, 0, stream>>>(w, int(n), int(k), q,
                                                                              s);
      LOWBIT_CUDA_CHECK_LAUNCH();
      break;
    }
  }
  make_gemm_scales(*impl, stream);
  return std::make_unique<Fp8GpuWeight>(std::move(impl));
}

std::unique_ptr<Int8GpuWeight> int8_quantize_weight(const __nv_bfloat16* w, int64_t n, int64_t k,
                                                    cudaStream_t stream) {
  auto impl = new_int8(n, k);
  w8a8::check_rows(w, k, k, "int8 weight quantization");
  w8a8::quant_rows<false>(w, k, n, k, impl->q.get<uint8_t>(), impl->scales.get<float>(), stream);
  return std::make_unique<Int8GpuWeight>(std::move(impl));
}

std::unique_ptr<Fp8GpuWeight> fp8_upload_weight(const uint8_t* host_q, const float* host_scales,
                                                int64_t scale_count, int64_t n, int64_t k,
                                                Fp8Scaling scaling, const std::string& what,
                                                cudaStream_t stream) {
  std::string r = fp8_unsupported_reason(n, k, scaling, 90);
  if (!r.empty()) fail("{}: {}", what, r);
  check_scales(host_scales, scale_count, fp8_scale_count(n, k, scaling),
               what + " (fp8 " + fp8_scaling_name(scaling) + " weight scales)");
  auto impl = new_fp8(n, k, scaling);
  LOWBIT_CUDA_CHECK(
      cudaMemcpyAsync(impl->q.get(), host_q, size_t(n * k), cudaMemcpyHostToDevice, stream));
  LOWBIT_CUDA_CHECK(cudaMemcpyAsync(impl->scales.get(), host_scales,
                                    size_t(scale_count) * sizeof(float), cudaMemcpyHostToDevice,
                                    stream));
  make_gemm_scales(*impl, stream);
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return std::make_unique<Fp8GpuWeight>(std::move(impl));
}

std::unique_ptr<Int8GpuWeight> int8_upload_weight(const int8_t* host_q, const float* host_scales,
                                                  int64_t scale_count, int64_t n, int64_t k,
                                                  const std::string& what, cudaStream_t stream) {
  std::string r = int8_unsupported_reason(n, k, 90);
  if (!r.empty()) fail("{}: {}", what, r);
  check_scales(host_scales, scale_count, n, what + " (int8 per-channel weight scales)");
  auto impl = new_int8(n, k);
  LOWBIT_CUDA_CHECK(
      cudaMemcpyAsync(impl->q.get(), host_q, size_t(n * k), cudaMemcpyHostToDevice, stream));
  LOWBIT_CUDA_CHECK(cudaMemcpyAsync(impl->scales.get(), host_scales, size_t(n) * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return std::make_unique<Int8GpuWeight>(std::move(impl));
}

}  // namespace lowbit::kernels::cuda
