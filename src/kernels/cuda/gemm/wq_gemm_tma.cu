// wq_gemm for large m on Hopper (sm_90a): W4A16 / W8A16 as a compute-bound GEMM. The wgmma
// wide-tile kernel (wq_gemm_wide.cu) has every thread issue cp.async copies and recompute their
// addresses each stage, which at large m costs more issue slots than its 8 warps can spare;
// here the tiles are the same — 256 output columns (column groups cg0 .. cg0 + 7, warp w on
// cg0 + w, each k16 slice two wgmma.m64n128k16 with its decoded code word as the register A
// operand) × 128 rows of x — but thread 0 alone issues the copies, one 64-k stage at a time:
// the x tile [128, 64] by the tensor memory accelerator (a tensor map built per call; 128-byte
// swizzle, rows past m zero-filled), the codes and group parameters of the stage's k-steps as
// 1-D bulk copies (ncg · 512 and ncg · pstride contiguous bytes per k-step); an mbarrier per
// stage counts the bytes in. One stage of products stays in flight across the per-stage
// barrier.
//
// No k split: used where the output tiles alone fill the GPU (tma_min_rows). The fp32 tile is
// staged through shared memory for row-wise stores (bias, conversion).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/common/wgmma.cuh"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"

namespace lowbit::kernels::cuda::wq_device {
namespace {

constexpr int kCgs = 8;  // column groups per block (256 columns)

template <bool kInt8, int N>
struct TmaTile {
  static constexpr int kStep = kInt8 ? 16 : 32;  // k per code word
  static constexpr int SPW = 64 / kStep;         // k-steps per 64-k stage
  static constexpr int kXBytes = N * 128;        // [N rows][64 k] 16-bit, swizzled
  static constexpr int kCodeBytes = SPW * kCgs * 512;
  static constexpr int kParamBytes = SPW * kCgs * 256;
  // x first: every stage's x tile 1024-byte aligned (wgmma's swizzle atoms).
  static constexpr int kStageBytes = kXBytes + kCodeBytes + kParamBytes;
  static_assert(kStageBytes % 1024 == 0, "1024-byte aligned stages");
  static constexpr int kOutLd = kCgs * 32 + 4;  // fp32 staging row; +4 floats: no bank conflicts
  static constexpr int smem(int stages) {
    return std::max(stages * kStageBytes, N * kOutLd * 4) + 1024;  // + alignment slack
  }
};

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// [dst] = the 2-D box at (c0 = k, c1 = row) of the tensor map; completes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
}
// bytes (a multiple of 16) from global src to shared dst; completes on bar.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes,
                                          uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::
          "r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}

template <bool kInt8, bool kF16, int N, int S>
__global__ void __launch_bounds__(kThreads, 1)
    wq_tma_kernel(const __grid_constant__ CUtensorMap x_map, KernelArgs a) {
#if LOWBIT_WGMMA_ENABLED
  using T = TmaTile<kInt8, N>;
  constexpr int SPW = T::SPW;
  constexpr int kAhead = S - 2;  // stages loaded ahead (one more stays in flight in wgmma)
  static_assert(kAhead >= 1, "at least one stage loaded ahead");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  __shared__ __align__(8) uint64_t full[S];
  uint8_t* smem = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int cgs = a.n / 32;
  const int cg0 = blockIdx.y * kCgs;
  const int ncg = min(kCgs, cgs - cg0);
  const int m0 = blockIdx.x * N;
  const int rows = min(N, a.m - m0);
  const int nsteps = a.k / T::kStep;
  const int nstages = (nsteps + SPW - 1) / SPW;
  const int pstride = a.has_zeros ? 256 : 64;
  const auto* codes = reinterpret_cast<const uint8_t*>(a.codes);
  const auto* params = static_cast<const uint8_t*>(a.params);

  if (tid == 0) {
    for (int s = 0; s < S; ++s) mbar_init(&full[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();
  pdl_wait();  // x comes from the kernel before

  // Thread 0: stage s into buffer b.
  auto issue = [&](int s, int b) {
    const int st0 = s * SPW, steps = min(SPW, nsteps - st0);
    uint8_t* base = smem + b * T::kStageBytes;
    mbar_arrive_expect_tx(&full[b], T::kXBytes + steps * ncg * (512 + pstride));
    tma_load_2d(base, &x_map, s * 64, m0, &full[b]);
    for (int j = 0; j < steps; ++j) {
      const int st = st0 + j;
      bulk_load(base + T::kXBytes + j * kCgs * 512, codes + (int64_t(st) * cgs + cg0) * 512,
                ncg * 512, &full[b]);
      bulk_load(base + T::kXBytes + T::kCodeBytes + j * kCgs * 256,
                params + (int64_t(st >> a.group_shift) * cgs + cg0) * pstride, ncg * pstride,
                &full[b]);
    }
  };
  if (tid == 0)
    for (int s = 0; s < kAhead && s < nstages; ++s) issue(s, s);

  // acc[h]: the m64 × N product of columns 16h .. 16h + 15 of each warp's group (wgmma.cuh).
  float acc[2][N / 2];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc[h][i] = 0.0f;
  const int g = lane >> 2;
  const int p_lane = warp * pstride + g * (a.has_zeros ? 32 : 8);
  // wgmma is issued by whole warpgroups: a warp past ncg in a working warpgroup decodes stale
  // shared memory into rows whose outputs are never stored.
  const bool active = (warp & ~3) < ncg;

  for (int s = 0, b = 0, wb = kAhead; s < nstages; ++s) {
    // Everyone is past stage s − 1's wait_group, so stage s − 2's buffer (wb) is free.
    __syncthreads();
    if (tid == 0 && s + kAhead < nstages) issue(s + kAhead, wb);
    wb = wb + 1 == S ? 0 : wb + 1;
    mbar_wait(&full[b], (s / S) & 1);
    const uint8_t* X = smem + b * T::kStageBytes;
    const uint8_t* B = X + T::kXBytes;
    const uint8_t* P = B + T::kCodeBytes;
    b = b + 1 == S ? 0 : b + 1;
    if (!active) continue;
#pragma unroll
    for (int j = 0; j < SPW; ++j) {
      if (s * SPW + j >= nsteps) break;  // the last stage may be short (uniform)
      const uint4 q = reinterpret_cast<const uint4*>(B + j * kCgs * 512 + warp * 512)[lane];
      GroupParams gp;
      read_params<kInt8, kF16>(gp, P + j * kCgs * 256 + p_lane, a.has_zeros);
      constexpr int kHalves = kInt8 ? 1 : 2;
#pragma unroll
      for (int ks = 0; ks < kHalves; ++ks) {
        uint32_t bfrag[4][2];
        decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
        // Column nt·8 + g is row g (+8 for odd nt) of m64 tile h = nt / 2.
        const uint32_t a0[4] = {bfrag[0][0], bfrag[1][0], bfrag[0][1], bfrag[1][1]};
        const uint32_t a1[4] = {bfrag[2][0], bfrag[3][0], bfrag[2][1], bfrag[3][1]};
        const uint64_t desc = wgmma::smem_desc_k_sw128(X + (j * T::kStep + ks * 16) * 2);
        wgmma::fence();
        wgmma::mma_rs<N, kF16>(acc[0], a0, desc);
        wgmma::mma_rs<N, kF16>(acc[1], a1, desc);
        wgmma::commit_group();
      }
    }
    wgmma::wait_group<SPW*(kInt8 ? 1 : 2)>();
  }
  wgmma::wait_group<0>();
  __syncthreads();  // every stage buffer read: the staging tile may overwrite them
  pdl_launch_dependents();

  // Staging tile out[row][col], col in [0, 256): warp w holds columns w·32 + 16h + g (+8) of
  // rows 8j + 2t (+1) in acc[h].
  float* out = reinterpret_cast<float*>(smem);
  const int t = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int j = 0; j < N / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 8 * j + 2 * t + (e & 1);
        out[r * T::kOutLd + warp * 32 + 16 * h + g + 8 * (e >> 1)] = acc[h][4 * j + e];
      }
  __syncthreads();
  const int quads = ncg * 8;  // 4-column quads per row
  for (int i = tid; i < rows * quads; i += kThreads) {
    const int r = i / quads, c = (i % quads) * 4;
    const float4 v = *reinterpret_cast<const float4*>(out + r * T::kOutLd + c);
    const float vals[4] = {v.x, v.y, v.z, v.w};
    const int col = cg0 * 32 + c;
    const int64_t o = int64_t(m0 + r) * a.ldy + col;
#pragma unroll
    for (int e = 0; e < 4; ++e)
      store_y<kF16>(a, o + e, a.bias ? vals[e] + a.bias[col + e] : vals[e]);
  }
#else
  __trap();  // launched only where wide_wgmma_available()
#endif
}

// cuTensorMapEncodeTiled from the driver (no link-time dependency on libcuda); null if the
// driver does not offer it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

template <bool kInt8, bool kF16, int N, int S>
bool launch(const KernelArgs& a, cudaStream_t stream) {
  using T = TmaTile<kInt8, N>;
  const int smem = T::smem(S);
  if (smem > max_optin_smem()) return false;
  auto encode = tensor_map_encoder();
  if (!encode) return false;
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(a.k), cuuint64_t(a.m)};
  const cuuint64_t strides[1] = {cuuint64_t(a.ldx) * 2};
  const cuuint32_t box[2] = {64, cuuint32_t(N)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r =
      encode(&map, kF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2,
             const_cast<void*>(a.x), dims, strides, box, elem_strides,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return false;
  auto kernel = wq_tma_kernel<kInt8, kF16, N, S>;
  static bool configured = false;  // attribute set once per instantiation
  if (!configured) {
    LOWBIT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  // m-blocks innermost: the passes over one column block run together and share its codes
  // through L2.
  const dim3 grid(unsigned((a.m + N - 1) / N), unsigned((a.n / 32 + kCgs - 1) / kCgs));
  launch_pdl(kernel, grid, kThreads, size_t(smem), stream, map, a);
  return true;
}

template <bool kInt8, bool kF16>
bool launch_rows(const KernelArgs& a, cudaStream_t stream) {
  return launch < kInt8, kF16, 128, kInt8 ? 5 : 7 > (a, stream);  // stages: int4 28 KB, int8 40 KB
}

}  // namespace

int64_t tma_min_rows() {
  if (const char* v = std::getenv("LOWBIT_WQ_TMA_MIN_M")) return std::atoll(v);
  return 0;  // off: measured no faster than the wgmma wide tiles (gpu_wq_gemm_notes.md)
}

bool launch_tma(const KernelArgs& a, bool int8, bool f16, cudaStream_t stream) {
  if (!wide_wgmma_available()) return false;
  if (int8) return f16 ? launch_rows<true, true>(a, stream) : launch_rows<true, false>(a, stream);
  return f16 ? launch_rows<false, true>(a, stream) : launch_rows<false, false>(a, stream);
}

}  // namespace lowbit::kernels::cuda::wq_device
