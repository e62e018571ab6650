// wq_gemm for m > 16 (wq_gemm.h): the wide-tile kernel. The m <= 16 decode kernel reads each
// 16-byte code word for one 16-row m-tile of x; at m = 32..256 what limits is how often each
// dequantized fragment and each x tile are reused, so here:
//
//   block = 8 warps on BN = 256 output columns (warp w: column group cg0 + w, 32 columns) and
//   BM = 16·MT rows of x (MT = 2, 4, 8 by m), no k-split inside the block: every warp decodes
//   its code word once per k-step and feeds MT·4 mma.sync m16n8k16 with it; the [BM, stage k]
//   tile of x in shared memory is read by all 8 warps (x is re-read from L2 n / 256 times
//   instead of n / 64).
//
// Few column blocks (n = 4096: 16) would leave most of the 132 SMs idle, so k is split over a
// thread-block cluster (sm_90, up to 16 blocks along gridDim.z, one k range each): each block
// leaves its fp32 partial tile in its own shared memory and, after a cluster barrier, reduces
// one slice of the tile across the cluster through distributed shared memory and stores it
// (bias, conversion). One launch, no global workspace, CUDA-graph safe. Without clusters
// (sm_80 / sm_89) splits = 1.
//
// Pipeline: S stages of SPW k-steps (int4 2 × 32 k, int8 4 × 16 k: 64 k per stage) brought in
// by cp.async: codes 8 warps × SPW × 512 B, group parameters 8 × SPW × up to 256 B, the x tile
// [min(m, BM), 64] with 16-byte chunks XOR-swizzled by row for conflict-free ldmatrix.
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/common/wgmma.cuh"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"

namespace lowbit::kernels::cuda::wq_device {
namespace {

namespace cg = cooperative_groups;

// Largest cluster (k-splits): 16 is a non-portable size H100 accepts (checked at run time).
constexpr int kMaxSplits = 16;
constexpr int kMinSplitK = 512;  // fewest input columns per split (choose_splits)

template <bool kInt8, int MT, int S>
struct WideTile {
  static constexpr int kStep = kInt8 ? 16 : 32;  // k per warp-step
  static constexpr int SPW = kInt8 ? 4 : 2;      // k-steps per stage
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kCols = 32 * kWarps;  // 256
  static constexpr int kStageK = SPW * kStep;
  static constexpr int kRows = 16 * MT;
  static constexpr int kChunks = kStageK / 8;  // 16-byte chunks of one x row per stage
  static_assert(kChunks == 8, "the row swizzle c ^ (r & 7) needs 8 chunks per row");
  static constexpr int kBBytes = kWarps * SPW * 512;
  static constexpr int kPBytes = kWarps * SPW * 256;
  static constexpr int kRedLd = kCols + 8;  // fp32 row of the partial tile, padded (banks)
  static constexpr int kRedBytes = kRows * kRedLd * 4;
  static constexpr int stage_bytes(int a_rows) { return kBBytes + kPBytes + a_rows * kStageK * 2; }
  static constexpr int smem(int a_rows) { return std::max(S * stage_bytes(a_rows), kRedBytes); }
};

// kWgmma (sm_90a): the same tiles, pipeline and k-split, with the products on warpgroup MMAs
// (wgmma.m64nNk16, N = 16·MT rows of x) instead of mma.sync: each warp decodes its code word
// into the register A operand (its 32 columns as two m16 × k16 fragments per k16 half, so
// warpgroup h of the block multiplies columns cg0 + 4h .. + 3 as two m64 tiles: the first 16
// and the last 16 columns of each warp's group), and B is the x tile read by the tensor cores
// straight from shared memory (its 128-byte XOR swizzle is wgmma's), so no ldmatrix. Rows of x
// past m in the last m-tile and the code slots of warps past ncg hold stale shared memory: they
// only reach outputs that are never stored. The accumulators hold y transposed (columns × rows
// of x); the epilogue writes them into the same partial tile.
template <bool kInt8, bool kF16, int MT, int S, bool kWgmma>
__global__ void __launch_bounds__(kThreads, MT == 8 || (kInt8 && MT == 4) ? 1 : 2)
    wq_wide_kernel(KernelArgs a, int split_steps) {
  using T = WideTile<kInt8, MT, S>;
  constexpr int SPW = T::SPW;
#if !LOWBIT_WGMMA_ENABLED
  if constexpr (kWgmma) __trap();  // launched only where wide_wgmma_available()
#endif
  pdl_wait();  // x comes from the kernel before
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  // wgmma's swizzle atoms need 1024-byte aligned x tiles (stage sizes are multiples of 1024);
  // an offset from smem_raw keeps the pointer in the shared window (LDS, 32-bit addresses).
  uint8_t* smem = kWgmma ? smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u) : smem_raw;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int cgs = a.n / 32;
  const int cg0 = blockIdx.y * T::kWarps;
  const int ncg = min(T::kWarps, cgs - cg0);  // column groups of this block (n % 256 != 0)
  // wgmma is issued by whole warpgroups: a warp past ncg in a working warpgroup decodes
  // whatever its code slot holds into rows of A whose outputs are never stored.
  const bool active = kWgmma ? (warp & ~3) < ncg : warp < ncg;
  const int m0 = blockIdx.x * T::kRows;
  const int rows = min(T::kRows, a.m - m0);
  // x rows allocated per stage (same in every block); wgmma reads all 16·MT.
  const int a_rows = kWgmma ? T::kRows : min(T::kRows, a.m);
  const int stage_bytes = T::stage_bytes(a_rows);
  const int step0 = blockIdx.z * split_steps;
  const int step_end = min(a.k / T::kStep, step0 + split_steps);
  const int nstages = (step_end - step0 + SPW - 1) / SPW;
  const int k_end = step_end * T::kStep;
  const int pstride = a.has_zeros ? 256 : 64;  // param bytes per (group, column group)
  const uint8_t* params = static_cast<const uint8_t*>(a.params);
  const uint16_t* x = static_cast<const uint16_t*>(a.x);

  auto stage_b = [&](int b) { return smem + b * stage_bytes; };
  auto stage_p = [&](int b) { return smem + b * stage_bytes + T::kBBytes; };
  auto stage_a = [&](int b) { return smem + b * stage_bytes + T::kBBytes + T::kPBytes; };

  // Copies, one 16-byte chunk each; what a thread copies is the same every stage, so sources
  // and destinations are computed once. Slot (w, j) = warp w's j-th step of a stage, w·SPW + j.
  // Codes: 32 chunks per slot (chunk i = it·256 + tid is lane i % 32 of slot i / 32);
  // parameters: 16 chunks per slot, pstride / 16 of them copied; x: kRows · 8 chunks. Steps past
  // this split's end are zero-filled (scale 0 decodes to weight 0, x 0), so the compute loop
  // needs no bounds; x rows past `rows` are neither copied nor read.
  constexpr int kCodeIters = T::kWarps * SPW * 32 / kThreads;
  constexpr int kParamIters = T::kWarps * SPW * 16 / kThreads;
  constexpr int kXIters = (T::kRows * T::kChunks + kThreads - 1) / kThreads;
  static_assert(kCodeIters * kThreads == T::kWarps * SPW * 32, "whole code chunks per thread");
  static_assert(kParamIters * kThreads == T::kWarps * SPW * 16, "whole param chunks per thread");
  const uint4* b_src[kCodeIters];
  int b_ls[kCodeIters];
  bool b_on[kCodeIters];
#pragma unroll
  for (int it = 0; it < kCodeIters; ++it) {
    const int slot = (it * kThreads + tid) >> 5, w = slot / SPW;
    b_ls[it] = slot % SPW;
    b_on[it] = w < ncg;
    b_src[it] = a.codes + (int64_t(step0 + b_ls[it]) * cgs + cg0 + min(w, ncg - 1)) * 32 + lane;
  }
  const int64_t b_stage = int64_t(SPW) * cgs * 32;  // code chunks per stage
  const uint8_t* p_src[kParamIters];
  int p_ls[kParamIters];
  bool p_on[kParamIters];
#pragma unroll
  for (int it = 0; it < kParamIters; ++it) {
    const int i = it * kThreads + tid, slot = i >> 4, c = i & 15, w = slot / SPW;
    p_ls[it] = slot % SPW;
    p_on[it] = w < ncg && c * 16 < pstride;
    p_src[it] = params + int64_t(cg0 + min(w, ncg - 1)) * pstride + c * 16;
  }
  const int64_t p_group = int64_t(cgs) * pstride;
  const uint16_t* x_src[kXIters];
  int x_dst[kXIters], x_c[kXIters];
  bool x_on[kXIters];
#pragma unroll
  for (int it = 0; it < kXIters; ++it) {
    const int i = it * kThreads + tid, r = i / T::kChunks, c = i % T::kChunks;
    x_on[it] = r < rows;
    x_c[it] = c * 8;
    x_dst[it] = (r * T::kChunks + (c ^ (r & 7))) * 16;
    x_src[it] = x + int64_t(m0 + min(r, rows - 1)) * a.ldx + int64_t(step0) * T::kStep + c * 8;
  }

  // Destinations as shared-window addresses: 32-bit math, no generic-to-shared conversions.
  const uint32_t smem_s = smem_addr(smem);
  auto load_stage = [&](int s, int b) {
    const int sbase = step0 + s * SPW;
    const uint32_t dst_b = smem_s + b * stage_bytes, dst_p = dst_b + T::kBBytes;
    const uint32_t dst_a = dst_p + T::kPBytes;
#pragma unroll
    for (int it = 0; it < kCodeIters; ++it) {
      const bool in = sbase + b_ls[it] < step_end;
      if (b_on[it])
        cp_async16_zfill_s(dst_b + (it * kThreads + tid) * 16, b_src[it] + (in ? s * b_stage : 0),
                           in);
    }
#pragma unroll
    for (int it = 0; it < kParamIters; ++it) {
      const int step = sbase + p_ls[it];
      const bool in = step < step_end;
      if (p_on[it])
        cp_async16_zfill_s(dst_p + (it * kThreads + tid) * 16,
                           p_src[it] + (in ? int64_t(step >> a.group_shift) * p_group : 0), in);
    }
    const int koff = s * T::kStageK;
#pragma unroll
    for (int it = 0; it < kXIters; ++it) {
      const bool in = sbase * T::kStep + x_c[it] < k_end;
      if (x_on[it]) cp_async16_zfill_s(dst_a + x_dst[it], x_src[it] + (in ? koff : 0), in);
    }
  };

  // mma.sync: acc[mt][nt] = rows mt·16.., columns warp·32 + nt·8..; wgmma: wacc[h] = the
  // m64 × N tile of columns 16h.. of each warp's group (wgmma.cuh gives the layout).
  constexpr int kAccRegs = kWgmma ? 1 : MT;
  float acc[kAccRegs][4][4];
  constexpr int kN = T::kRows;
  float wacc[2][kWgmma ? kN / 2 : 1];
#pragma unroll
  for (int mt = 0; mt < kAccRegs; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int i = 0; i < (kWgmma ? kN / 2 : 1); ++i) wacc[h][i] = 0.0f;

  // Stages loaded ahead of the one computed: wgmma keeps the previous stage's products in
  // flight across the barrier (kLag), so its buffer is refilled one iteration later.
  constexpr int kLag = kWgmma ? 1 : 0;
  constexpr int kAhead = S - 1 - kLag;
  static_assert(kAhead >= 1, "at least one stage loaded ahead");
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < nstages) load_stage(s, s);
    cp_async_commit();
  }

  const int g = lane >> 2;
  // ldmatrix address of this lane per m-tile: row min(mt·16 + lane % 16, rows − 1) (rows past
  // `rows` repeat a held row: their outputs are never stored, and an mma row depends only on
  // its own row of x), 16-byte chunk (c + lane / 16) ^ (row & 7) = c ^ a_sw (c even).
  int a_row[MT], a_sw[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int r = min(mt * 16 + (lane & 15), rows - 1);
    a_row[mt] = r * T::kChunks * 16;
    a_sw[mt] = (lane >> 4) ^ (r & 7);
  }
  const int p_lane = g * (a.has_zeros ? 32 : 8);
  // Stage buffers in rotation: b (= s mod S) is read this iteration, wb (= s + kAhead mod S,
  // the buffer of stage s − 1 − kLag, whose readers are done) refilled.
  for (int s = 0, b = 0, wb = kAhead; s < nstages; ++s) {
    cp_async_wait<kAhead - 1>();
    if constexpr (kWgmma) wgmma::fence_proxy_async_shared();  // x tile → wgmma's reads
    __syncthreads();
    if (s + kAhead < nstages) load_stage(s + kAhead, wb);
    cp_async_commit();
    wb = wb + 1 == S ? 0 : wb + 1;
    const uint8_t* A = stage_a(b);
    const uint8_t* B = stage_b(b);
    const uint8_t* P = stage_p(b);
    b = b + 1 == S ? 0 : b + 1;
    if (active) {
#pragma unroll
      for (int j = 0; j < SPW; ++j) {
        const int slot = warp * SPW + j;
        const uint4 q = reinterpret_cast<const uint4*>(B)[slot * 32 + lane];
        GroupParams gp;
        read_params<kInt8, kF16>(gp, P + slot * 256 + p_lane, a.has_zeros);
        constexpr int kHalves = kInt8 ? 1 : 2;  // k16 halves per step
#pragma unroll
        for (int ks = 0; ks < kHalves; ++ks) {
          uint32_t bfrag[4][2];
          if constexpr (kWgmma) {
            decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
            // Column nt·8 + g is row g (+8 for odd nt) of m64 tile h = nt / 2.
            const uint32_t a0[4] = {bfrag[0][0], bfrag[1][0], bfrag[0][1], bfrag[1][1]};
            const uint32_t a1[4] = {bfrag[2][0], bfrag[3][0], bfrag[2][1], bfrag[3][1]};
            const uint64_t desc = wgmma::smem_desc_k_sw128(A + (j * T::kStep + ks * 16) * 2);
            wgmma::fence();
            wgmma::mma_rs<kN, kF16>(wacc[0], a0, desc);
            wgmma::mma_rs<kN, kF16>(wacc[1], a1, desc);
            wgmma::commit_group();
          } else {
            const int c = (j * T::kStep + ks * 16) / 8;
            uint32_t afrag[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
              ldmatrix_x4(afrag[mt], A + a_row[mt] + ((c ^ a_sw[mt]) << 4));
            decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
              for (int nt = 0; nt < 4; ++nt)
                mma16816<kF16>(acc[mt][nt], afrag[mt], bfrag[nt][0], bfrag[nt][1]);
          }
        }
      }
      // wgmma: this stage's products may run on; the previous stage's (one commit group per
      // k16 slice) are done before the barrier after which their buffers are refilled.
      if constexpr (kWgmma) wgmma::wait_group<SPW*(kInt8 ? 1 : 2)>();
    }
  }
  cp_async_wait<0>();
  if constexpr (kWgmma) wgmma::wait_group<0>();
  __syncthreads();
  // The main loop is done: the next kernel may be scheduled now (its blocks then spread over
  // SMs this kernel is leaving instead of crowding the few free ones early).
  pdl_launch_dependents();

  // This block's partial tile red[row][col] (col in [0, 256), padded rows).
  float* red = reinterpret_cast<float*>(smem);
  if (kWgmma && warp < ncg) {
    const int t = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < kN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = 8 * j + 2 * t + (e & 1);
          if (r < rows)
            red[r * T::kRedLd + warp * 32 + 16 * h + g + 8 * (e >> 1)] = wacc[h][4 * j + e];
        }
  } else if (!kWgmma && active) {
    const int t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < kAccRegs; ++mt) {
      if (mt * 16 >= rows) break;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        float* p = red + (mt * 16 + g) * T::kRedLd + warp * 32 + nt * 8 + 2 * t;
        *reinterpret_cast<float2*>(p) = make_float2(acc[mt][nt][0], acc[mt][nt][1]);
        *reinterpret_cast<float2*>(p + 8 * T::kRedLd) = make_float2(acc[mt][nt][2], acc[mt][nt][3]);
      }
    }
  }
  // Split k: the cluster's blocks (gridDim.z of them, one per k range) each sum one slice of
  // the tile over all partial tiles; the second cluster barrier keeps every block's shared
  // memory alive until all have read it.
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
  const int quads = ncg * 8;  // 4-column quads per row
  for (int i = rank * kThreads + tid; i < rows * quads; i += nranks * kThreads) {
    const int r = i / quads, c = (i % quads) * 4;
    float4 v = *reinterpret_cast<const float4*>(red + r * T::kRedLd + c);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (nranks > 1) {
      // All remote loads first (distributed shared memory latency), then the sum.
      float4 o[kMaxSplits];
#pragma unroll
      for (int q = 0; q < kMaxSplits; ++q)
        if (q < nranks && q != rank)
          o[q] =
              *reinterpret_cast<const float4*>(cluster.map_shared_rank(red, q) + r * T::kRedLd + c);
#pragma unroll
      for (int q = 0; q < kMaxSplits; ++q)
        if (q < nranks && q != rank) v.x += o[q].x, v.y += o[q].y, v.z += o[q].z, v.w += o[q].w;
    }
#endif
    const int col = cg0 * 32 + c;
    float out[4] = {v.x, v.y, v.z, v.w};
    const int64_t o = int64_t(m0 + r) * a.ldy + col;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      store_y<kF16>(a, o + e, a.bias ? out[e] + a.bias[col + e] : out[e]);
    }
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (nranks > 1) cluster.sync();
#endif
}

// Splits of k for `tiles` output tiles, at most the cluster limit, each split at least
// kMinSplitK input columns. Filling every block slot was not the fastest: a split sweep on
// H100 (2026-11-24, m = 32 / 64 / 128, gpu_wq_gemm_notes.md) was fastest, on every 8B / 70B
// shape with up to 40 tiles, at about 96 blocks (8/11 of the SMs, one block each), or twice
// that for two-blocks-per-SM tiles when there are more than 24 tiles: 4096 × 4096 at m = 64
// 15.0 µs in 6 splits against 22.3 in 8 (the former rule), 4096 × 6144 at m = 128 23.6 in 4
// against 38.5 in 5, 8192 × 10240 at m = 32 37.4 in 5 against 47.0 in 6. LOWBIT_WQ_SPLITS
// forces the count (A/B measurements).
int choose_splits(int tiles, int blocks_per_sm, int k, int max_cluster) {
  tiles = std::max(tiles, 1);
  const int per_wave = device_facts().sms * 8 / 11 * (blocks_per_sm >= 2 && tiles > 24 ? 2 : 1);
  int splits = std::clamp((per_wave + tiles / 2) / tiles, 1, max_cluster);
  if (const char* v = std::getenv("LOWBIT_WQ_SPLITS"))
    splits = std::clamp(std::atoi(v), 1, max_cluster);
  return std::max(1, std::min(splits, k / kMinSplitK));
}

template <bool kInt8, bool kF16, int MT, int S, bool kWgmma>
bool launch_config(const KernelArgs& a, cudaStream_t stream) {
  using T = WideTile<kInt8, MT, S>;
  // wgmma: every x row of the tile allocated, plus 1024 bytes to align the tiles.
  const int smem = kWgmma ? T::smem(T::kRows) + 1024 : T::smem(std::min(T::kRows, a.m));
  if (smem > max_optin_smem()) return false;
  auto kernel = wq_wide_kernel<kInt8, kF16, MT, S, kWgmma>;
  // Once per instantiation: the shared-memory opt-in and the largest cluster (k-splits) the
  // GPU can co-schedule at the largest tile (1 without clusters).
  static int max_cluster = 0;
  if (max_cluster == 0) {
    const int smem_max = std::min(T::smem(T::kRows) + (kWgmma ? 1024 : 0), max_optin_smem());
    LOWBIT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_max));
    int best = 1;
    if (device_facts().cc_major >= 9) {
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
          cudaSuccess)
        (void)cudaGetLastError();
      for (int c = kMaxSplits; c > 1 && best == 1; c /= 2) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(1, 1, unsigned(c));
        cfg.blockDim = dim3(kThreads);
        cfg.dynamicSmemBytes = size_t(smem_max);
        cudaLaunchAttribute attr;
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = 1;
        attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = unsigned(c);
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters > 0)
          best = c;
        else
          (void)cudaGetLastError();  // a refused size is not an error of this call
      }
    }
    max_cluster = best;
  }
  int blocks_per_sm = 0;
  LOWBIT_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, kThreads, smem));
  const int cgs = a.n / 32, nsteps = a.k / T::kStep;
  const int col_blocks = (cgs + T::kWarps - 1) / T::kWarps;
  const int m_blocks = (a.m + T::kRows - 1) / T::kRows;
  int splits = choose_splits(col_blocks * m_blocks, blocks_per_sm, a.k, max_cluster);
  // Split boundaries on whole stages; the last split may be shorter.
  int split_steps = (nsteps + splits - 1) / splits;
  split_steps = (split_steps + T::SPW - 1) / T::SPW * T::SPW;
  splits = (nsteps + split_steps - 1) / split_steps;

  cudaLaunchConfig_t cfg = {};
  // m-blocks innermost: the passes over one column block run together and share its codes
  // through L2.
  cfg.gridDim = dim3(unsigned(m_blocks), unsigned(col_blocks), unsigned(splits));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  set_cluster_pdl_attributes(cfg, attrs, unsigned(splits));
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a, split_steps));
  return true;
}

// m-tile by m: 32 rows up to m = 32, else 64 or 128 (in passes). Pipeline
// depth by shared memory: int4 stages are 12 KB + 4 KB per 32 rows, int8 24 KB + 4 KB.
template <bool kInt8, bool kF16, bool kWgmma>
bool launch_rows(const KernelArgs& a, cudaStream_t stream) {
  constexpr bool k8 = kInt8;
  // wgmma computes one stage behind the loads (kLag): one more stage for the same lead where
  // shared memory allows it.
  constexpr int kW = kWgmma ? 1 : 0;
  if constexpr (!kWgmma)  // launch_wide: wgmma only above m = 32
    if (a.m <= 32) return launch_config < kInt8, kF16, 2, k8 ? 4 : 6, false > (a, stream);
  // 128-row tiles halve the decode work per mma but give a quarter of the blocks of 64-row
  // ones: worth it from m = 256, or at m = 128 when n alone fills the GPU (H100, 8192 × 57344:
  // 438 µs against 540; 4096 × 4096: 39 against 34).
  const int col_blocks = (a.n / 32 + 7) / 8;
  // LOWBIT_WQ_WIDE_ROWS=64|128 forces the tile height above m = 32 (A/B measurements).
  if (const char* v = std::getenv("LOWBIT_WQ_WIDE_ROWS")) {
    if (std::strcmp(v, "128") == 0) return launch_config<kInt8, kF16, 8, 4 + kW, kWgmma>(a, stream);
    if (std::strcmp(v, "64") == 0)
      return launch_config < kInt8, kF16, 4, k8 ? 4 : 5, kWgmma > (a, stream);
  }
  // wgmma (H100, same call): 128-row tiles win at every m > 64 (4096 × 6144, m = 128: 38.5 µs
  // against 44.3; 28672 × 8192: 229 against 297) and at m = 64 on wide weights (4096 × 28672:
  // 62.9 against 72.6), 64-row tiles at m = 64 elsewhere (4096 × 6144: 24.0 against 35.9).
  const bool tall =
      kWgmma ? a.m > 64 || col_blocks >= 64 : a.m >= 256 || (a.m > 64 && col_blocks >= 64);
  if (tall) return launch_config<kInt8, kF16, 8, 4 + kW, kWgmma>(a, stream);
  return launch_config < kInt8, kF16, 4, k8 ? 4 : 5, kWgmma > (a, stream);
}

}  // namespace

// Hopper (compute capability 9.0) running this build's sm_90a code (a JIT from older PTX has
// no wgmma), unless LOWBIT_WQ_WGMMA=0 (read per call: A/B runs, tests).
bool wide_wgmma_available() {
  if (device_facts().cc_major != 9 || !device_runs_sm90_code()) return false;
  const char* v = std::getenv("LOWBIT_WQ_WGMMA");
  return !(v && std::strcmp(v, "0") == 0);
}

bool launch_wide(const KernelArgs& a, bool int8, bool f16, cudaStream_t stream) {
  // m <= 32 stays on mma.sync: the 32-row wgmma tiles measured ~5% slower there.
  if (a.m > 32 && wide_wgmma_available()) {
    if (int8)
      return f16 ? launch_rows<true, true, true>(a, stream)
                 : launch_rows<true, false, true>(a, stream);
    return f16 ? launch_rows<false, true, true>(a, stream)
               : launch_rows<false, false, true>(a, stream);
  }
  if (int8)
    return f16 ? launch_rows<true, true, false>(a, stream)
               : launch_rows<true, false, false>(a, stream);
  return f16 ? launch_rows<false, true, false>(a, stream)
             : launch_rows<false, false, false>(a, stream);
}

}  // namespace lowbit::kernels::cuda::wq_device
