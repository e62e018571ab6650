// Device helpers: converting 8 consecutive cache elements (bf16 or FP8) to and from fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "kernels/cuda/attention/paged_kv.h"

namespace lowbit::kernels::cuda {

template <KvDtype D>
struct KvElem;
template <>
struct KvElem<KvDtype::kBf16> {
  using T = __nv_bfloat16;
};
template <>
struct KvElem<KvDtype::kFp8E4M3> {
  using T = uint8_t;
};
template <>
struct KvElem<KvDtype::kFp8E5M2> {
  using T = uint8_t;
};

template <KvDtype D>
__device__ __forceinline__ float kv_to_float(typename KvElem<D>::T v) {
  if constexpr (D == KvDtype::kBf16) {
    return __bfloat162float(v);
  } else {
    constexpr __nv_fp8_interpretation_t kind = D == KvDtype::kFp8E4M3 ? __NV_E4M3 : __NV_E5M2;
    __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(v), kind);
    return __half2float(__half(h));
  }
}

// Saturating to the largest finite value (FP8), round to nearest even.
template <KvDtype D>
__device__ __forceinline__ typename KvElem<D>::T float_to_kv(float x) {
  if constexpr (D == KvDtype::kBf16) {
    return __float2bfloat16(x);
  } else {
    constexpr __nv_fp8_interpretation_t kind = D == KvDtype::kFp8E4M3 ? __NV_E4M3 : __NV_E5M2;
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, kind));
  }
}

// out[0..8) = elements p[0..8); p is 16-byte (bf16) or 8-byte (FP8) aligned.
template <KvDtype D>
__device__ __forceinline__ void load8(const typename KvElem<D>::T* p, float out[8]) {
  if constexpr (D == KvDtype::kBf16) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    constexpr __nv_fp8_interpretation_t kind = D == KvDtype::kFp8E4M3 ? __NV_E4M3 : __NV_E5M2;
    uint2 raw = *reinterpret_cast<const uint2*>(p);
    const __nv_fp8x2_storage_t* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2_raw h2 = __nv_cvt_fp8x2_to_halfraw2(pairs[i], kind);
      float2 f = __half22float2(__half2(h2));
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

}  // namespace lowbit::kernels::cuda
