// Private to wq_gemm: what both kernel files (wq_gemm.cu: m <= 16 and the dequantizer;
// wq_gemm_wide.cu: m > 16) share: the launch arguments, the copy / ldmatrix / mma wrappers and
// the in-register decode of a lane's 16-byte code word into mma B fragments (wq_gemm_layout.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/gemm/wq_gemm.h"

namespace lowbit::kernels::cuda::wq_device {

constexpr int kThreads = 256;

struct KernelArgs {
  const uint4* codes;
  const void* params;
  bool has_zeros;
  bool fractional_zeros;  // some zero is not an integer: (q − z)·s is not (q − round z)·s
  const void* x;          // [m, k] 16-bit, row stride ldx (packed column order)
  int64_t ldx;
  const float* bias;
  void* y;
  int64_t ldy;
  bool out_f32;
  int m, n, k;
  int group_shift;  // scale group of k-step i: i >> group_shift
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src)
               : "memory");
}
// As cp_async16, but zero-fills the 16 bytes (reading nothing) when !valid.
__device__ __forceinline__ void cp_async16_zfill(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
// As cp_async16_zfill with the destination as a shared-window address (smem_addr): keeps the
// address math in 32 bits where a kernel computes many destinations per stage.
__device__ __forceinline__ void cp_async16_zfill_s(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <bool kF16>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (kF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// 16 bytes read once (weight codes), not kept in L1.
__device__ __forceinline__ uint4 ld_stream16(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// A lane's raw group-parameter entry at p in global memory (unpack_params' input): with zeros
// the 32 bytes v0, v1; symmetric, the 8 bytes v0.x, v0.y (v1 = v0).
template <bool kZeros>
__device__ __forceinline__ void load_param_entry(const uint8_t* p, uint4& v0, uint4& v1) {
  if constexpr (kZeros) {
    v0 = __ldg(reinterpret_cast<const uint4*>(p));
    v1 = __ldg(reinterpret_cast<const uint4*>(p + 16));
  } else {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    v0 = make_uint4(v.x, v.y, 0, 0);
    v1 = v0;
  }
}

// (h − zoff)·scale + c on two 16-bit lanes at once: h − zoff = q − round(z) is exact and
// c = −(z − round(z))·scale (0 for integer zeros), so one rounding for integer zeros.
template <bool kF16>
__device__ __forceinline__ uint32_t sub_fma2(uint32_t h, uint32_t zoff2, uint32_t scale2,
                                             uint32_t c2) {
  if constexpr (kF16) {
    __half2 r =
        __hfma2(__hsub2(*reinterpret_cast<__half2*>(&h), *reinterpret_cast<__half2*>(&zoff2)),
                *reinterpret_cast<__half2*>(&scale2), *reinterpret_cast<__half2*>(&c2));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __nv_bfloat162 r = __hfma2(
        __hsub2(*reinterpret_cast<__nv_bfloat162*>(&h), *reinterpret_cast<__nv_bfloat162*>(&zoff2)),
        *reinterpret_cast<__nv_bfloat162*>(&scale2), *reinterpret_cast<__nv_bfloat162*>(&c2));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

template <bool kF16>
__device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t scale2, uint32_t c2) {
  if constexpr (kF16) {
    __half2 r = __hfma2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&scale2),
                        *reinterpret_cast<__half2*>(&c2));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __nv_bfloat162 r =
        __hfma2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&scale2),
                *reinterpret_cast<__nv_bfloat162*>(&c2));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

template <bool kF16>
__device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
  if constexpr (kF16) {
    __half2 r = __hsub2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __nv_bfloat162 r =
        __hsub2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

// (a & mask) | bias in one lop3 (the compiler otherwise emits two: LOP3 takes one immediate;
// here both constants sit in registers).
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bias) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(r) : "r"(a), "r"(mask), "r"(bias));
  return r;
}

// Word j of a 16-byte code load (selects, never a local-memory array).
__device__ __forceinline__ uint32_t word_of(const uint4& q, int j) {
  return j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
}

template <bool kF16>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (kF16) {
    __half2 r = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __nv_bfloat162 r = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

// Per lane, the group parameters of its 4 columns (nt = 0..3): scale and zero offset, each
// duplicated into both 16-bit halves; int8 keeps the zero as a float (2^23 + z).
struct GroupParams {
  uint32_t scale2[4];
  uint32_t zoff2[4];
  uint32_t c2[4];  // −(z − round(z))·scale
  float zf[4];
};

// From the raw entry: with zeros, the 32 bytes v0, v1; symmetric, the 8 bytes v0.x, v0.y.
template <bool kInt8, bool kF16>
__device__ __forceinline__ void unpack_params(GroupParams& p, const uint4& v0, const uint4& v1,
                                              bool has_zeros) {
  if (has_zeros) {
    const uint32_t e[4] = {v0.x, v0.z, v1.x, v1.z}, c[4] = {v0.y, v0.w, v1.y, v1.w};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      p.scale2[nt] = __byte_perm(e[nt], 0, 0x1010);
      p.c2[nt] = __byte_perm(c[nt], 0, 0x1010);
      if constexpr (kInt8) {
        p.zf[nt] = 8388608.0f + float(int16_t(e[nt] >> 16));
      } else {
        p.zoff2[nt] = __byte_perm(e[nt], 0, 0x3232);
      }
    }
  } else {
    const uint32_t e[2] = {v0.x, v0.y};
    // Symmetric: z = 8 (int4) / 128 (int8).
    const uint32_t zoff = kF16 ? 0x64086408u : 0x43084308u;  // 1024 + 8 / 128 + 8
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      p.scale2[nt] = __byte_perm(e[nt / 2], 0, (nt & 1) ? 0x3232 : 0x1010);
      p.zoff2[nt] = zoff;
      p.c2[nt] = 0;
      p.zf[nt] = 8388608.0f + 128.0f;
    }
  }
}

template <bool kInt8, bool kF16>
__device__ __forceinline__ void read_params(GroupParams& p, const uint8_t* src, bool has_zeros) {
  if (has_zeros) {
    unpack_params<kInt8, kF16>(p, *reinterpret_cast<const uint4*>(src),
                               *reinterpret_cast<const uint4*>(src + 16), true);
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(src);
    const uint4 v0 = make_uint4(v.x, v.y, 0, 0);
    unpack_params<kInt8, kF16>(p, v0, v0, false);
  }
}

// The mma B fragments of one k16 half `ks` (int4: 0 or 1; int8: 0) of a lane's 16-byte code
// word: bfrag[nt] = the (k 2t, 2t+1) and (k 2t+8, 2t+9) pairs of column nt·8 + g, decoded as
// (q − z)·s with one rounding. kScaled = false leaves out the scale: (q − round z) exactly
// (small integers are exact in bf16 / f16), for kernels that multiply the scale into the fp32
// sum of a group instead (integer zeros only: c = 0).
template <bool kInt8, bool kF16, bool kScaled = true>
__device__ __forceinline__ void decode_fragments(const uint4& q, int ks, const GroupParams& gp,
                                                 uint32_t (&bfrag)[4][2]) {
  if constexpr (kInt8) {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const uint32_t w = word_of(q, nt);
      const float f0 = __int_as_float(__byte_perm(w, 0x4B000000u, 0x7440)) - gp.zf[nt];
      const float f1 = __int_as_float(__byte_perm(w, 0x4B000000u, 0x7441)) - gp.zf[nt];
      const float f2 = __int_as_float(__byte_perm(w, 0x4B000000u, 0x7442)) - gp.zf[nt];
      const float f3 = __int_as_float(__byte_perm(w, 0x4B000000u, 0x7443)) - gp.zf[nt];
      const uint32_t lo = pack2<kF16>(f0, f1), hi = pack2<kF16>(f2, f3);
      bfrag[nt][0] = kScaled ? fma2<kF16>(lo, gp.scale2[nt], gp.c2[nt]) : lo;
      bfrag[nt][1] = kScaled ? fma2<kF16>(hi, gp.scale2[nt], gp.c2[nt]) : hi;
    }
  } else {
    constexpr uint32_t kBias = kF16 ? 0x64006400u : 0x43004300u;
    auto finish = [&](uint32_t h, int nt) {
      return kScaled ? sub_fma2<kF16>(h, gp.zoff2[nt], gp.scale2[nt], gp.c2[nt])
                     : sub2<kF16>(h, gp.zoff2[nt]);
    };
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
      const uint32_t w = word_of(q, ks * 2 + jj);
      const int na = 2 * jj, nb = 2 * jj + 1;
      bfrag[na][0] = finish(and_or(w, 0x000F000Fu, kBias), na);
      bfrag[na][1] = finish(and_or(w >> 4, 0x000F000Fu, kBias), na);
      bfrag[nb][0] = finish(and_or(w >> 8, 0x000F000Fu, kBias), nb);
      bfrag[nb][1] = finish(and_or(w >> 12, 0x000F000Fu, kBias), nb);
    }
  }
}

// The scale of column nt·8 + g (the low 16 bits of scale2) as a float.
template <bool kF16>
__device__ __forceinline__ float scale_of(uint32_t scale2) {
  if constexpr (kF16) {
    return __half2float(__ushort_as_half(uint16_t(scale2 & 0xFFFFu)));
  } else {
    return __uint_as_float(scale2 << 16);
  }
}

// What the launch choices of the wq kernels read about the current device (once).
struct DeviceFacts {
  int sms = 0, cc_major = 0;
  int max_optin_smem = 0;  // dynamic shared memory per block: 227 KB H100, 163 KB A100, 99 KB Ada
};

inline const DeviceFacts& device_facts() {
  static const DeviceFacts facts = [] {
    DeviceFacts f;
    int dev = 0;
    LOWBIT_CUDA_CHECK(cudaGetDevice(&dev));
    LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, dev));
    LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.cc_major, cudaDevAttrComputeCapabilityMajor, dev));
    LOWBIT_CUDA_CHECK(
        cudaDeviceGetAttribute(&f.max_optin_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return f;
  }();
  return facts;
}

inline int max_optin_smem() { return device_facts().max_optin_smem; }

// y[o] = v in the call's output type: fp32, or the activations' fp16 / bf16.
template <bool kF16>
__device__ __forceinline__ void store_y(const KernelArgs& a, int64_t o, float v) {
  if (a.out_f32) {
    static_cast<float*>(a.y)[o] = v;
  } else if constexpr (kF16) {
    static_cast<__half*>(a.y)[o] = __float2half_rn(v);
  } else {
    static_cast<__nv_bfloat16*>(a.y)[o] = __float2bfloat16_rn(v);
  }
}

// m > 16 (wq_gemm_wide.cu): launches the wide-tile kernel; false if the GPU's shared memory
// cannot hold its tiles (nothing launched).
bool launch_wide(const KernelArgs& a, bool int8, bool f16, cudaStream_t stream);
// Whether launch_wide runs its wgmma variant above m = 32 on this device (wq_gemm_wide.cu).
bool wide_wgmma_available();

// m <= kWqGemvMaxRows (wq_gemv.cu): the decode GEMV, codes straight to registers.
void launch_gemv(const KernelArgs& a, bool int8, bool f16, cudaStream_t stream);

// m <= kStreamKMaxRows (wq_gemv_streamk.cu): the stream-K decode GEMV, one wave of warps over
// equal shares of the codes. counts: the weight's [n / 32] ints, zero before and after a launch.
inline constexpr int kStreamKMaxRows = 8;
void launch_gemv_streamk(const KernelArgs& a, bool int8, bool f16, int* counts,
                         cudaStream_t stream);

}  // namespace lowbit::kernels::cuda::wq_device
