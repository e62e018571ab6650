// wq_gemv: the decode GEMV of wq_gemm.h (m <= kWqGemvMaxRows) on the SAME packed layout as the
// tensor-core GEMM (wq_gemm_layout.h), so prefill and decode share one copy of the weights.
//
// Why a second kernel: at m = 1 the GEMM moves its codes global → shared through a cp.async
// pipeline with a block barrier per stage, ~45–70% of copy bandwidth on the 8B shapes. Here the
// codes go straight to registers: a block (8 warps, two blocks per SM) owns one 32-column group
// over one k range; warp w takes k-steps w, w + 8, ... of the range in batches of U steps, each
// lane issuing U 16-byte ld.global.nc.L1::no_allocate loads (512 B per warp-step, coalesced)
// plus its group parameters and its x pairs (L1/L2-resident, read by every block) before using
// any of them. Each lane then decodes its word into mma B fragments exactly as the GEMM does
// (same rounding) and issues mma.sync m16n8k16 with x as the A operand: rows g (and g + 8 when
// m > 8) of the A fragment hold x[row][k], the other rows are zero registers, so no shared
// memory is touched in the loop. The 8 warps' partial tiles meet in shared memory (fp32); where
// n / 32 column groups cannot fill the GPU (n = 4096: 128 groups), k is split over a
// thread-block cluster and the partial sums meet through distributed shared memory (one
// launch, no workspace); + bias, bf16/f16/f32 out.
// Scale groups: a step (int4 32 k, int8 16 k) never straddles a group (group sizes are powers
// of two >= 32, or k), so each step reads its own group's parameters (L1 hits after the first).
// Measured and dropped (H100, bench/gpu_wq_gemm_notes.md): one 16-warp block per SM over the
// whole k (every wave of blocks paid the full memory latency) and an L2 prefetch of the next
// batch (prefetch.global.L2: up to 1.5× slower, the extra requests compete with the loads).
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"

namespace lowbit::kernels::cuda::wq_device {
namespace {

namespace cg = cooperative_groups;

// 8 warps per block, two blocks per SM (128 registers each): a block that finishes overlaps
// with its neighbour still streaming.
constexpr int kWarps = 8;
constexpr int kGemvThreads = kWarps * 32;
constexpr int kBlocksPerSm = 2;
constexpr int kMaxSplits = 8;  // portable cluster size

// x pair (2 16-bit values) at p, or 0 for a row past m (those rows of the mma are ignored).
__device__ __forceinline__ uint32_t ld_x2(const uint16_t* p, bool valid) {
  return valid ? __ldg(reinterpret_cast<const unsigned int*>(p)) : 0u;
}

template <bool kInt8, bool kF16, bool kZeros, bool kRows16>
__global__ void __launch_bounds__(kGemvThreads, kBlocksPerSm)
    wq_gemv_kernel(KernelArgs a, int split_steps) {
  constexpr int kStep = kInt8 ? 16 : 32;
  constexpr int kHalves = kInt8 ? 1 : 2;  // k16 halves per step
  // Steps per warp in flight, as many as 128 registers hold without spilling (ptxas -v):
  // int4 carries 2 k16 halves of x pairs per step.
  constexpr int U = kRows16 ? (kInt8 ? 6 : 4) : (kInt8 ? 8 : 6);
  constexpr int kPBytes = kZeros ? 32 : 8;
  constexpr int kRowsT = kRows16 ? 16 : 8;
  __shared__ float red[kWarps][kRowsT][33];
  __shared__ float part[kRowsT * 32];  // this block's sum over its warps

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int cgs = a.n / 32, cg = blockIdx.x;
  // k split over a cluster along z: this block's steps [s_lo, s_hi).
  const int s_lo = blockIdx.z * split_steps;
  const int nsteps = min(a.k / kStep, s_lo + split_steps);
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

  for (int base = s_lo + warp; base < nsteps; base += kWarps * U) {
    uint4 q[U];
    uint4 p0[U], p1[U];
    uint32_t xa[U][kHalves][2], xb[U][kHalves][2];
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int s = base + j * kWarps;
      q[j] = s < nsteps ? ld_stream16(codes + s * c_stride) : make_uint4(0, 0, 0, 0);
    }
    pdl_wait();  // x comes from the kernel before (returns at once after the first batch)
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int s = min(base + j * kWarps, nsteps - 1);
      const uint8_t* p = params + int64_t(s >> a.group_shift) * p_gstride;
      load_param_entry<kZeros>(p, p0[j], p1[j]);
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

  pdl_wait();  // warps without a step still write y below
  // The main loop is done: the next kernel may be scheduled now (its blocks then spread over
  // SMs this kernel is leaving instead of crowding the few free ones early).
  pdl_launch_dependents();
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
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += red[w][i / 32][i % 32];
    part[i] = v;
  }
  // Split k: after a cluster barrier rank q sums elements q, q + nranks·threads, ... over the
  // cluster's partial sums (distributed shared memory); the second barrier keeps every block's
  // shared memory alive until all have read it.
  const int nranks = gridDim.z;
  int rank = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::cluster_group cluster = cg::this_cluster();
  if (nranks > 1) {
    rank = int(cluster.block_rank());
    cluster.sync();
  } else {
    __syncthreads();
  }
#else
  __syncthreads();  // launched without clusters: nranks == 1
#endif
  for (int i = rank * kGemvThreads + threadIdx.x; i < a.m * 32; i += nranks * kGemvThreads) {
    float v = part[i];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (nranks > 1) {
      float o[kMaxSplits];
#pragma unroll
      for (int q = 0; q < kMaxSplits; ++q)
        if (q < nranks && q != rank) o[q] = *cluster.map_shared_rank(part + i, q);
#pragma unroll
      for (int q = 0; q < kMaxSplits; ++q)
        if (q < nranks && q != rank) v += o[q];
    }
#endif
    const int r = i / 32, c = i % 32;
    const int col = cg * 32 + c;
    if (a.bias) v += a.bias[col];
    store_y<kF16>(a, int64_t(r) * a.ldy + col, v);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (nranks > 1) cluster.sync();
#endif
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  return v ? std::clamp(std::atoi(v), lo, hi) : fallback;
}

// k-splits (cluster size) for n / 32 column groups: as many as keep every block resident in
// one wave (SMs · 2 slots), so a short n (4096: 128 groups on 132 SMs) still fills the GPU;
// 1 where the groups alone fill it, and on GPUs without clusters. LOWBIT_WQ_GEMV_SPLITS
// overrides it (measurements).
int choose_splits(int cgs, int nsteps) {
  static const int forced = env_int("LOWBIT_WQ_GEMV_SPLITS", 0, 0, kMaxSplits);
  if (device_facts().cc_major < 9) return 1;
  int splits =
      forced > 0 ? forced : std::clamp(device_facts().sms * kBlocksPerSm / cgs, 1, kMaxSplits);
  return std::clamp(std::min(splits, nsteps / kWarps), 1, kMaxSplits);
}

template <bool kInt8, bool kF16, bool kZeros, bool kRows16>
void launch_kernel(const KernelArgs& a, cudaStream_t stream) {
  const int cgs = a.n / 32, nsteps = a.k / (kInt8 ? 16 : 32);
  int splits = choose_splits(cgs, nsteps);
  const int split_steps = (nsteps + splits - 1) / splits;
  splits = (nsteps + split_steps - 1) / split_steps;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(cgs), 1, unsigned(splits));
  cfg.blockDim = dim3(kGemvThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  set_cluster_pdl_attributes(cfg, attrs, unsigned(splits));
  LOWBIT_CUDA_CHECK(
      cudaLaunchKernelEx(&cfg, wq_gemv_kernel<kInt8, kF16, kZeros, kRows16>, a, split_steps));
}

template <bool kInt8, bool kF16, bool kZeros>
void launch_rows(const KernelArgs& a, cudaStream_t stream) {
  if (a.m > 8)
    launch_kernel<kInt8, kF16, kZeros, true>(a, stream);
  else
    launch_kernel<kInt8, kF16, kZeros, false>(a, stream);
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
