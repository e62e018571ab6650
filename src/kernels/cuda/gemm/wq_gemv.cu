// wq_gemv: the decode GEMV of wq_gemm.h (m <= kWqGemvMaxRows) on the SAME packed layout as the
// tensor-core GEMM (wq_gemm_layout.h), so prefill and decode share one copy of the weights.
//
// Why a second kernel: at m = 1 the GEMM moves its codes global → shared through a cp.async
// pipeline with a block barrier per stage, ~45–67% of copy bandwidth on the 8B shapes. Here the
// codes go straight to registers: a block (kWarps warps) owns one 32-column group over the
// whole k; warp w takes k-steps w, w + kWarps, ... in batches of U steps, each lane issuing U
// 16-byte ld.global.nc.L1::no_allocate loads (512 B per warp-step, coalesced) plus its group
// parameters and its x pairs (L1/L2-resident, read by every block) before using any of them:
// kWarps·U·512 B in flight per block (48–64 KB at 16 warps, U = 6–8). Each lane then decodes its
// word into mma B fragments exactly as the GEMM does (same rounding: identical outputs per
// fragment) and issues mma.sync m16n8k16 with x as the A operand: rows g (and g + 8 when m > 8) of
// the A fragment hold x[row][k], the other rows are zero registers, so m = 1..16 cost the same mma
// count as the GEMM's m <= 16 path but no shared-memory traffic. The kWarps partial tiles meet
// in shared memory once at the end (fp32), + bias, bf16/f16/f32 out.
// Scale groups: a step (int4 32 k, int8 16 k) never straddles a group (group sizes are powers
// of two >= 32, or k), so each step reads its own group's parameters (L1 hits after the first).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"

namespace lowbit::kernels::cuda::wq_device {
namespace {

constexpr int kWarps = 16;
constexpr int kGemvThreads = kWarps * 32;

__device__ __forceinline__ uint4 ld_stream16(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// x pair (2 16-bit values) at p, or 0 for a row past m (those rows of the mma are ignored).
__device__ __forceinline__ uint32_t ld_x2(const uint16_t* p, bool valid) {
  return valid ? __ldg(reinterpret_cast<const unsigned int*>(p)) : 0u;
}

template <bool kInt8, bool kF16, bool kZeros, bool kRows16>
__global__ void __launch_bounds__(kGemvThreads, 1) wq_gemv_kernel(KernelArgs a) {
  constexpr int kStep = kInt8 ? 16 : 32;
  constexpr int kHalves = kInt8 ? 1 : 2;  // k16 halves per step
  // Steps per warp in flight, as many as 128 registers hold without spilling (ptxas -v):
  // int4 carries 2 k16 halves of x pairs per step.
  constexpr int U = kRows16 ? (kInt8 ? 6 : 4) : (kInt8 ? 8 : 6);
  constexpr int kPBytes = kZeros ? 32 : 8;
  constexpr int kRowsT = kRows16 ? 16 : 8;
  __shared__ float red[kWarps][kRowsT][33];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int cgs = a.n / 32, cg = blockIdx.x;
  const int nsteps = a.k / kStep;
  const int pstride = kZeros ? 256 : 64;
  const uint8_t* params =
      static_cast<const uint8_t*>(a.params) + int64_t(cg) * pstride + g * kPBytes;
  const int64_t p_gstride = int64_t(cgs) * pstride;
  const uint4* codes = a.codes + int64_t(cg) * 32 + lane;
  const int64_t c_stride = int64_t(cgs) * 32;
  const uint16_t* x = static_cast<const uint16_t*>(a.x);
  const bool row0 = g < a.m, row1 = kRows16 && g + 8 < a.m;
  const uint16_t* x0 = x + int64_t(row0 ? g : 0) * a.ldx + 2 * t;
  const uint16_t* x1 = x + int64_t(row1 ? g + 8 : 0) * a.ldx + 2 * t;

  float acc[4][4];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;

  for (int base = warp; base < nsteps; base += kWarps * U) {
    uint4 q[U];
    uint4 p0[U], p1[U];
    uint32_t xa[U][kHalves][2], xb[U][kHalves][2];
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int s = base + j * kWarps;
      q[j] = s < nsteps ? ld_stream16(codes + s * c_stride) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int s = min(base + j * kWarps, nsteps - 1);
      const uint8_t* p = params + int64_t(s >> a.group_shift) * p_gstride;
      if constexpr (kZeros) {
        p0[j] = __ldg(reinterpret_cast<const uint4*>(p));
        p1[j] = __ldg(reinterpret_cast<const uint4*>(p + 16));
      } else {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
        p0[j] = make_uint4(v.x, v.y, 0, 0);
        p1[j] = p0[j];
      }
#pragma unroll
      for (int ks = 0; ks < kHalves; ++ks) {
        const int64_t kk = int64_t(s) * kStep + ks * 16;
        xa[j][ks][0] = ld_x2(x0 + kk, row0);
        xa[j][ks][1] = ld_x2(x0 + kk + 8, row0);
        xb[j][ks][0] = kRows16 ? ld_x2(x1 + kk, row1) : 0u;
        xb[j][ks][1] = kRows16 ? ld_x2(x1 + kk + 8, row1) : 0u;
      }
    }
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (base + j * kWarps >= nsteps) break;  // uniform per warp
      GroupParams gp;
      unpack_params<kInt8, kF16>(gp, p0[j], p1[j], kZeros);
#pragma unroll
      for (int ks = 0; ks < kHalves; ++ks) {
        const uint32_t afrag[4] = {xa[j][ks][0], xb[j][ks][0], xa[j][ks][1], xb[j][ks][1]};
        uint32_t bfrag[4][2];
        decode_fragments<kInt8, kF16>(q[j], ks, gp, bfrag);
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma16816<kF16>(acc[nt], afrag, bfrag[nt][0], bfrag[nt][1]);
      }
    }
  }

  // C fragment: acc[nt][0..1] = row g, columns nt·8 + 2t, +1; acc[nt][2..3] = row g + 8.
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    red[warp][g][nt * 8 + 2 * t] = acc[nt][0];
    red[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
    if constexpr (kRows16) {
      red[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
      red[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < a.m * 32; i += kGemvThreads) {
    const int r = i / 32, c = i % 32;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += red[w][r][c];
    const int col = cg * 32 + c;
    if (a.bias) v += a.bias[col];
    const int64_t o = int64_t(r) * a.ldy + col;
    if (a.out_f32) {
      static_cast<float*>(a.y)[o] = v;
    } else if constexpr (kF16) {
      static_cast<__half*>(a.y)[o] = __float2half_rn(v);
    } else {
      static_cast<__nv_bfloat16*>(a.y)[o] = __float2bfloat16_rn(v);
    }
  }
}

template <bool kInt8, bool kF16, bool kZeros>
void launch_rows(const KernelArgs& a, cudaStream_t stream) {
  if (a.m > 8)
    wq_gemv_kernel<kInt8, kF16, kZeros, true><<<a.n / 32, kGemvThreads, 0, stream>>>(a);
  else
    wq_gemv_kernel<kInt8, kF16, kZeros, false><<<a.n / 32, kGemvThreads, 0, stream>>>(a);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

template <bool kInt8, bool kF16>
void launch_zeros(const KernelArgs& a, cudaStream_t stream) {
  a.has_zeros ? launch_rows<kInt8, kF16, true>(a, stream)
              : launch_rows<kInt8, kF16, false>(a, stream);
}

}  // namespace

void launch_gemv(const KernelArgs& a, bool int8, bool f16, cudaStream_t stream) {
  if (int8)
    f16 ? launch_zeros<true, true>(a, stream) : launch_zeros<true, false>(a, stream);
  else
    f16 ? launch_zeros<false, true>(a, stream) : launch_zeros<false, false>(a, stream);
}

}  // namespace lowbit::kernels::cuda::wq_device
