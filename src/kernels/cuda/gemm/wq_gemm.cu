// Kernels of wq_gemm (wq_gemm.h; layout in wq_gemm_layout.h).
//
// wq_mma_kernel: one block = 8 warps on 32·WN output columns and up to 16·MT rows of x over the
// whole k (no split-k: one launch, no workspace). Warps are WN column groups × WK = 8 / WN
// k-slices; a pipeline stage (S stages in flight) is WK·SPW consecutive k-steps per column
// group, each warp computing SPW of them, brought in by cp.async: per warp-step 512 B of codes
// + 256 B of group parameters, and the [min(m, 16·MT), stage k] tile of x (16-byte chunks
// XOR-swizzled by row for conflict-free ldmatrix). Each step a lane dequantizes its 16-byte word
// into mma B fragments in registers and issues mma.sync m16n8k16 (fp32 accumulate). At the end
// the WK partial sums meet in shared memory.
// Configurations: m <= 16: MT 1, WN 1, S 6 (S 4 for m > 8 when n / 32 > SMs: two blocks per
// SM), SPW 2 (the decode path: two independent steps per warp and stage halve the per-byte
// overhead of waits, barriers and copy issue); m > 16: the
// wide-tile kernel of wq_gemm_wide.cu (256 columns × up to 128 rows, k split over a cluster);
// where the GPU's shared memory cannot hold its tiles, MT 4, WN 2, S 4, SPW 1 here, in passes
// of 64 rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/gemm/wq_gemm.h"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"
#include "kernels/cuda/gemm/wq_gemm_layout.h"

namespace lowbit::kernels::cuda {
namespace {

using namespace wq_device;

template <bool kInt8, int MT, int WN, int S, int SPW>
struct Tile {
  static constexpr int WK = 8 / WN;
  static constexpr int kStep = kInt8 ? 16 : 32;        // k per warp-step
  static constexpr int kStageSteps = WK * SPW;         // k-steps per stage and column group
  static constexpr int kStageK = kStageSteps * kStep;  // k per stage
  static constexpr int kRows = 16 * MT;
  static constexpr int kChunks = kStageK / 8;  // 16-byte chunks of one x row per stage
  static constexpr int kBBytes = WN * kStageSteps * 512;
  static constexpr int kPBytes = WN * kStageSteps * 256;
  static constexpr int kRedBytes = WK * kRows * 32 * WN * 4;
  // x rows held in shared memory: min(m, kRows) per launch (a_rows), so small m needs less.
  static constexpr int stage_bytes(int a_rows) { return kBBytes + kPBytes + a_rows * kStageK * 2; }
  static constexpr int smem(int a_rows) { return std::max(S * stage_bytes(a_rows), kRedBytes); }
};

template <bool kInt8, bool kF16, int MT, int WN, int S, int SPW>
__global__ void __launch_bounds__(kThreads, 2) wq_mma_kernel(KernelArgs a) {
  using T = Tile<kInt8, MT, WN, S, SPW>;
  constexpr int WK = T::WK, kSS = T::kStageSteps;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wn = warp % WN, wk = warp / WN;
  const int cgs = a.n / 32;
  const int cg0 = blockIdx.x * WN;
  const int m0 = blockIdx.y * T::kRows;
  const int rows = min(T::kRows, a.m - m0);
  const int a_rows = min(T::kRows, a.m);  // rows allocated per stage (same in every block)
  const int stage_bytes = T::stage_bytes(a_rows);
  const int nsteps = a.k / T::kStep;
  const int nstages = (nsteps + kSS - 1) / kSS;
  const int pstride = a.has_zeros ? 256 : 64;  // param bytes per (group, column group)
  const uint8_t* params = static_cast<const uint8_t*>(a.params);
  const uint16_t* x = static_cast<const uint16_t*>(a.x);

  auto stage_b = [&](int b) { return smem + b * stage_bytes; };
  auto stage_p = [&](int b) { return smem + b * stage_bytes + T::kBBytes; };
  auto stage_a = [&](int b) { return smem + b * stage_bytes + T::kBBytes + T::kPBytes; };

  // Per-thread constant parts of the copies. Codes: WN·kSS·32 chunks per stage, SPW per
  // thread; chunk i is lane i % 32 of warp-step slot ws = i / 32 = (column group, step in
  // stage). Group parameters: 16 chunks (256 B; a symmetric 64 B entry plus its neighbours,
  // the buffer is padded) per slot, threads 0 .. WN·kSS·16 − 1.
  static_assert(WN * kSS * 32 == SPW * kThreads, "SPW code chunks per thread and stage");
  static_assert(WN * kSS * 16 <= kThreads, "one parameter chunk per thread and stage");
  const uint4* b_src[SPW];
  int b_ls[SPW];
#pragma unroll
  for (int j = 0; j < SPW; ++j) {
    const int ws = (j * kThreads + tid) >> 5;
    b_ls[j] = ws % kSS;
    b_src[j] = a.codes + (int64_t(b_ls[j]) * cgs + cg0 + ws / kSS) * 32 + lane;
  }
  const int64_t b_stride = int64_t(kSS) * cgs * 32;
  const bool p_thread = tid < WN * kSS * 16;
  const int p_ws = tid >> 4, p_c = tid & 15, p_ls = p_ws % kSS, p_swn = p_ws / kSS;
  const uint8_t* p_src = params + int64_t(cg0 + p_swn) * pstride + p_c * 16;
  const int64_t p_gstride = int64_t(cgs) * pstride;

  auto load_weights = [&](int s) {
    const int b = s % S;
#pragma unroll
    for (int j = 0; j < SPW; ++j)
      if (s * kSS + b_ls[j] < nsteps)
        cp_async16(stage_b(b) + (j * kThreads + tid) * 16, b_src[j] + s * b_stride);
    if (p_thread && p_c * 16 < pstride) {  // symmetric weights: only the 64 B entry is read
      const int step = s * kSS + p_ls;
      if (step < nsteps)
        cp_async16(stage_p(b) + p_ws * 256 + p_c * 16,
                   p_src + int64_t(step >> a.group_shift) * p_gstride);
    }
  };
  auto load_x = [&](int s) {
    const int b = s % S;
    // x tile [rows, kStageK], chunk c of row r stored at chunk c ^ (r & 7).
    const int kbase = s * T::kStageK;
    for (int i = tid; i < rows * T::kChunks; i += kThreads) {
      const int r = i / T::kChunks, c = i % T::kChunks;
      if (kbase + c * 8 < a.k)
        cp_async16(stage_a(b) + (r * T::kChunks + (c ^ (r & 7))) * 16,
                   x + int64_t(m0 + r) * a.ldx + kbase + c * 8);
    }
  };

  float acc[MT][4][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

        // The weights of the first S − 1 stages are requested before waiting for the kernel that
        // writes x (PDL); each stage's commit group then holds its x tile, and the first group also
        // every early weight copy, so stage s is complete once groups 0..s are.
#pragma unroll
  for (int s = 0; s < S - 1; ++s)
    if (s < nstages) load_weights(s);
  pdl_wait();
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < nstages) load_x(s);
    cp_async_commit();
  }

  const int g = lane >> 2;
  // ldmatrix row of this lane per m-tile: rows past a_rows read a held row instead (their
  // outputs are never stored, and an mma row depends only on its own row of x).
  int arow[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) arow[mt] = min(mt * 16 + (lane & 15), a_rows - 1);
  for (int s = 0; s < nstages; ++s) {
    cp_async_wait<S - 2>();
    __syncthreads();
    if (s + S - 1 < nstages) {
      load_weights(s + S - 1);
      load_x(s + S - 1);
    }
    cp_async_commit();

    const int b = s % S;
    const uint8_t* A = stage_a(b);
#pragma unroll
    for (int j = 0; j < SPW; ++j) {
      const int ls = j * WK + wk;         // step within the stage
      if (s * kSS + ls >= nsteps) break;  // uniform per warp
      const int slot = wn * kSS + ls;
      const uint4 q = reinterpret_cast<const uint4*>(stage_b(b))[slot * 32 + lane];
      GroupParams gp;
      read_params<kInt8, kF16>(gp, stage_p(b) + slot * 256 + g * (a.has_zeros ? 32 : 8),
                               a.has_zeros);
      constexpr int kHalves = kInt8 ? 1 : 2;  // k16 halves per step
#pragma unroll
      for (int ks = 0; ks < kHalves; ++ks) {
        uint32_t afrag[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          const int r = arow[mt];
          const int c = (ls * T::kStep + ks * 16) / 8 + (lane >> 4);
          ldmatrix_x4(afrag[mt], A + (r * T::kChunks + (c ^ (r & 7))) * 16);
        }
        uint32_t bfrag[4][2];
        decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < 4; ++nt)
            mma16816<kF16>(acc[mt][nt], afrag[mt], bfrag[nt][0], bfrag[nt][1]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();
  // The main loop is done: the next kernel may be scheduled now (its blocks then spread over
  // SMs this kernel is leaving instead of crowding the few free ones early).
  pdl_launch_dependents();

  // Partial sums of the WK k-slices: red[wk][row][col], col in [0, 32·WN).
  float* red = reinterpret_cast<float*>(smem);
  constexpr int kCols = 32 * WN;
  const int t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int col = wn * 32 + nt * 8 + 2 * t;
      const int r0 = mt * 16 + g;
      float* base = red + (wk * T::kRows) * kCols;
      *reinterpret_cast<float2*>(base + r0 * kCols + col) =
          make_float2(acc[mt][nt][0], acc[mt][nt][1]);
      *reinterpret_cast<float2*>(base + (r0 + 8) * kCols + col) =
          make_float2(acc[mt][nt][2], acc[mt][nt][3]);
    }
  __syncthreads();
  for (int i = tid; i < rows * kCols; i += kThreads) {
    const int r = i / kCols, c = i % kCols;
    float v = 0.0f;
#pragma unroll
    for (int s = 0; s < WK; ++s) v += red[(s * T::kRows + r) * kCols + c];
    const int col = cg0 * 32 + c;
    if (a.bias) v += a.bias[col];
    store_y<kF16>(a, int64_t(m0 + r) * a.ldy + col, v);
  }
}

// xg[i, c] = x[i, perm[c]] (16-bit values), for act-order weights.
__global__ void gather_columns_kernel(const uint16_t* __restrict__ x, int64_t ldx,
                                      const int32_t* __restrict__ perm, uint16_t* __restrict__ xg,
                                      int m, int k) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(m) * k) return;
  const int r = int(i / k), c = int(i % k);
  xg[i] = x[int64_t(r) * ldx + perm[c]];
}

// One thread per 16-byte code word (step, column group, lane): decodes its fragments exactly as
// the GEMM kernel does and writes them to w_out [n, k] at their source columns (4-byte pairs;
// act-order scatters single values through perm).
template <bool kInt8, bool kF16>
__global__ void dequantize_kernel(const uint4* __restrict__ codes,
                                  const uint8_t* __restrict__ params, bool has_zeros,
                                  const int32_t* __restrict__ perm, uint16_t* __restrict__ out,
                                  int n, int k, int group_shift) {
  constexpr int kStep = kInt8 ? 16 : 32;
  const int cgs = n / 32, nsteps = k / kStep;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(nsteps) * cgs * 32) return;
  const int lane = int(i & 31), cg = int((i >> 5) % cgs), step = int((i >> 5) / cgs);
  const int g = lane >> 2, t = lane & 3;
  const int pstride = has_zeros ? 256 : 64;
  GroupParams gp;
  read_params<kInt8, kF16>(
      gp, params + (int64_t(step >> group_shift) * cgs + cg) * pstride + g * (has_zeros ? 32 : 8),
      has_zeros);
  const uint4 q = codes[i];
#pragma unroll
  for (int ks = 0; ks < (kInt8 ? 1 : 2); ++ks) {
    uint32_t bfrag[4][2];
    decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      uint16_t* row = out + int64_t(cg * 32 + nt * 8 + g) * k;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int kk = step * kStep + ks * 16 + 2 * t + 8 * h;
        if (perm) {
          row[perm[kk]] = uint16_t(bfrag[nt][h]);
          row[perm[kk + 1]] = uint16_t(bfrag[nt][h] >> 16);
        } else {
          *reinterpret_cast<uint32_t*>(row + kk) = bfrag[nt][h];
        }
      }
    }
  }
}

// Without act-order: one block per (column group, 8 consecutive k-steps); warp w decodes the
// 16-byte words of step s0 + w exactly as the GEMM kernel does into a shared [32 n, 8 steps of
// k] tile (rows padded by 16 bytes: the 4-byte fragment stores are conflict-free), then the
// block writes each row of the tile with 16-byte stores (512 B per row for int4).
template <bool kInt8, bool kF16>
__global__ void __launch_bounds__(kThreads)
    dequantize_tile_kernel(const uint4* __restrict__ codes, const uint8_t* __restrict__ params,
                           bool has_zeros, uint16_t* __restrict__ out, int n, int k,
                           int group_shift) {
  constexpr int kStep = kInt8 ? 16 : 32;
  constexpr int kSteps = kThreads / 32;   // steps per block
  constexpr int kTileK = kSteps * kStep;  // 256 (int4) / 128 (int8)
  constexpr int kLd = kTileK + 8;         // elements per shared row
  __shared__ __align__(16) uint16_t tile[32 * kLd];
  const int cgs = n / 32, nsteps = k / kStep;
  const int cg = blockIdx.y, s0 = blockIdx.x * kSteps;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int step = s0 + warp;
  if (step < nsteps) {
    const int pstride = has_zeros ? 256 : 64;
    GroupParams gp;
    read_params<kInt8, kF16>(
        gp, params + (int64_t(step >> group_shift) * cgs + cg) * pstride + g * (has_zeros ? 32 : 8),
        has_zeros);
    const uint4 q = codes[(int64_t(step) * cgs + cg) * 32 + lane];
#pragma unroll
    for (int ks = 0; ks < (kInt8 ? 1 : 2); ++ks) {
      uint32_t bfrag[4][2];
      decode_fragments<kInt8, kF16>(q, ks, gp, bfrag);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          *reinterpret_cast<uint32_t*>(
              &tile[(nt * 8 + g) * kLd + warp * kStep + ks * 16 + 2 * t + 8 * h]) = bfrag[nt][h];
    }
  }
  __syncthreads();
  constexpr int kRowChunks = kTileK / 8;  // 16-byte chunks per row
  const int valid_k = min(kTileK, (nsteps - s0) * kStep);
  for (int i = threadIdx.x; i < 32 * kRowChunks; i += kThreads) {
    const int r = i / kRowChunks, c = (i % kRowChunks) * 8;
    if (c < valid_k)
      *reinterpret_cast<uint4*>(out + int64_t(cg * 32 + r) * k + int64_t(s0) * kStep + c) =
          *reinterpret_cast<const uint4*>(&tile[r * kLd + c]);
  }
}

// Launches one configuration; false (nothing launched) if its shared memory does not fit.
template <bool kInt8, bool kF16, int MT, int WN, int S, int SPW>
bool launch(const KernelArgs& a, cudaStream_t stream) {
  using T = Tile<kInt8, MT, WN, S, SPW>;
  const int smem = T::smem(std::min(T::kRows, a.m));
  if (smem > max_optin_smem()) return false;
  auto kernel = wq_mma_kernel<kInt8, kF16, MT, WN, S, SPW>;
  static bool configured = false;  // attribute set once per instantiation
  if (!configured) {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           std::min(T::smem(T::kRows), max_optin_smem())));
    configured = true;
  }
  const dim3 grid(a.n / (32 * WN), (a.m + T::kRows - 1) / T::kRows);
  // Programmatic launch (early weight copies) measured on the synthetic 8B decode, H100:
  // batch 16: 3739 tok/s with it, 3660 without; batch 1 (the one-block-per-32-columns
  // decode tiles, S = 6): 265 with it, 272 without (its blocks, placed while the previous
  // kernel still holds SMs, seem to crowd; not profiled further). So: m > 8 only.
  if (a.m > 8) {
    launch_pdl(kernel, grid, kThreads, smem, stream, a);
  } else {
    kernel<<<grid, kThreads, smem, stream>>>(a);
    LOWBIT_CUDA_CHECK_LAUNCH();
  }
  return true;
}

// m <= 16: 8 warps on 32 columns, each two k-steps per stage; larger m (or a GPU whose shared
// memory cannot hold the former's 16-row x tiles): 64 rows × 64 columns per block.
template <bool kInt8, bool kF16>
void dispatch_rows(const KernelArgs& a, cudaStream_t stream) {
  // Above 8 rows the 6-stage decode pipeline (up to 168 KB) leaves one block per SM; with more
  // column groups than SMs, 4 stages and two blocks per SM are faster (H100, m = 16: 8192 ×
  // 57344 172 µs against 221, 28672 × 8192 85 against 107; with 128 column groups no gain).
  if (a.m > 8 && a.m <= 16 && a.n / 32 > device_facts().sms &&
      launch<kInt8, kF16, 1, 1, 4, 2>(a, stream))
    return;
  if (a.m <= 16 && launch<kInt8, kF16, 1, 1, 6, 2>(a, stream)) return;
  if (a.m > 16 && launch_wide(a, kInt8, kF16, stream)) return;
  if (!launch<kInt8, kF16, 4, 2, 4, 1>(a, stream))
    fail("wq_gemm: the GPU's {} bytes of shared memory per block are too few", max_optin_smem());
}

// Scale group of k-step i is i >> group_shift: steps per group are a power of two
// (wq_gemm_unsupported_reason); per-channel weights have one group.
int group_shift(const WqGpuWeight& w) {
  if (w.group_size == w.k) return 30;
  const int64_t group_steps = w.group_size / wq_step_k(w.kind);
  int shift = 0;
  while ((int64_t(1) << shift) < group_steps) ++shift;
  return shift;
}

}  // namespace

namespace {

// Whether wq_gemv runs the stream-K kernel (wq_gemv_streamk.cu) or the one-block-per-column-
// group kernel (wq_gemv.cu). Stream-K pays a tail (the last contributor per column group sums
// ~18 partial tiles after a fence and an atomic; it grows with m) and avoids the per-group
// kernel's waves of blocks. H100, µs stream-K / per-group alone (graph of repeated calls):
// int4 m = 1 4096 × 28672 29.8 / 34.0, 14336 × 4096 18.3 / 17.6, 4096 × 6144 10.5 / 10.0,
// 4096 × 4096 10.2 / 7.9; int8 slower or equal on every 8B shape. Yet inside the int4 8B decode
// graph stream-K on every layer is faster at batch 1 (324.8 / 323.9 tok/s against 311.5 /
// 313.3 with stream-K on gate/up only), and at batch 2 stream-K on gate/up only is (605 / 610
// against 593 / 591); int8 per-group: 258 against 247 tok/s. Hence: int4 at m = 1, and at m = 2
// where the column groups exceed the block slots (2 per SM). LOWBIT_WQ_GEMV_STREAMK (read per
// call: A/B runs, tests): 0 never, all for every weight at m <= 8, m2 for every weight at m <= 2.
bool use_streamk_gemv(const WqGpuWeight& w, int64_t m) {
  const char* v = std::getenv("LOWBIT_WQ_GEMV_STREAMK");
  if (v && std::strcmp(v, "0") == 0) return false;
  if (v && std::strcmp(v, "all") == 0) return m <= kStreamKMaxRows;
  if (v && std::strcmp(v, "m2") == 0) return m <= 2;
  if (w.kind != cpu::WqKind::kInt4) return false;
  return m == 1 || (m == 2 && w.n / 32 > 2 * device_facts().sms);
}

// wq_gemm and wq_gemv: checks, act-order gather, then the GEMM family or the GEMV.
void run_wq(const WqGpuWeight& w, ActType act, const void* x, int64_t ldx, const float* bias,
            void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream, bool gemv) {
  const int64_t max_m = gemv ? kWqGemvMaxRows : (int64_t(1) << 30);
  if (m < 0 || m > max_m)
    fail("{}: weight [{}, {}]: m = {}, expected 0..{}", gemv ? "wq_gemv" : "wq_gemm", w.n, w.k, m,
         max_m);
  if (m == 0) return;
  if (!x || !y) fail("wq_gemm: weight [{}, {}]: {} is null", w.n, w.k, !x ? "x" : "y");
  if (ldx < w.k || ldy < w.n)
    fail("wq_gemm: weight [{}, {}]: ldx = {} (expected >= {}), ldy = {} (expected >= {})", w.n, w.k,
         ldx, w.k, ldy, w.n);
  const WqGpuWeight::Impl& im = *w.impl;
  if (w.act_order) {
    const size_t need = size_t(m * w.k) * 2;
    if (im.gathered.bytes() < need) im.gathered = DeviceBuffer(need, "wq_gemm act-order gather");
    const int64_t total = m * w.k;
    gather_columns_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(
        static_cast<const uint16_t*>(x), ldx, im.perm.get<int32_t>(), im.gathered.get<uint16_t>(),
        int(m), int(w.k));
    LOWBIT_CUDA_CHECK_LAUNCH();
    x = im.gathered.get();
    ldx = w.k;
  }
  if (ldx % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0)
    fail("wq_gemm: weight [{}, {}]: x must be 16-byte aligned with ldx % 8 == 0 (ldx = {})", w.n,
         w.k, ldx);
  KernelArgs a{};
  a.codes = im.codes.get<const uint4>();
  a.params = im.params[int(act)].get();
  a.has_zeros = im.has_zeros;
  a.fractional_zeros = im.fractional_zeros;
  a.x = x;
  a.ldx = ldx;
  a.bias = bias;
  a.y = y;
  a.ldy = ldy;
  a.out_f32 = out_type == OutType::kF32;
  a.m = int(m);
  a.n = int(w.n);
  a.k = int(w.k);
  a.group_shift = group_shift(w);
  const bool int8 = w.kind == cpu::WqKind::kInt8, f16 = act == ActType::kF16;
  if (gemv && use_streamk_gemv(w, m))
    launch_gemv_streamk(a, int8, f16, im.streamk_counts.get<int>(), stream);
  else if (gemv)
    launch_gemv(a, int8, f16, stream);
  else if (int8)
    f16 ? dispatch_rows<true, true>(a, stream) : dispatch_rows<true, false>(a, stream);
  else
    f16 ? dispatch_rows<false, true>(a, stream) : dispatch_rows<false, false>(a, stream);
}

}  // namespace

void wq_gemm(const WqGpuWeight& w, ActType act, const void* x, int64_t ldx, const float* bias,
             void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream) {
  run_wq(w, act, x, ldx, bias, y, ldy, out_type, m, stream, false);
}

void wq_gemv(const WqGpuWeight& w, ActType act, const void* x, int64_t ldx, const float* bias,
             void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream) {
  run_wq(w, act, x, ldx, bias, y, ldy, out_type, m, stream, true);
}

void wq_dequantize(const WqGpuWeight& w, ActType act, void* w_out, cudaStream_t stream) {
  const WqGpuWeight::Impl& im = *w.impl;
  const int64_t words = w.n / 32 * (w.k / wq_step_k(w.kind)) * 32;
  const unsigned blocks = unsigned((words + 255) / 256);
  auto* out = static_cast<uint16_t*>(w_out);
  const auto* codes = im.codes.get<const uint4>();
  const auto* params = im.params[int(act)].get<const uint8_t>();
  const int32_t* perm = w.act_order ? im.perm.get<const int32_t>() : nullptr;
  const int shift = group_shift(w);
  const int n = int(w.n), k = int(w.k);
  const bool z = im.has_zeros;
  const bool int8 = w.kind == cpu::WqKind::kInt8, f16 = act == ActType::kF16;
  if (!perm && reinterpret_cast<uintptr_t>(w_out) % 16 == 0) {
    // Source order = packed order: the tiled kernel with 16-byte row stores.
    const dim3 grid(unsigned((w.k / wq_step_k(w.kind) + 7) / 8), unsigned(w.n / 32));
    if (int8 && f16)
      dequantize_tile_kernel<true, true>
          <<<grid, kThreads, 0, stream>>>(codes, params, z, out, n, k, shift);
    else if (int8)
      dequantize_tile_kernel<true, false>
          <<<grid, kThreads, 0, stream>>>(codes, params, z, out, n, k, shift);
    else if (f16)
      dequantize_tile_kernel<false, true>
          <<<grid, kThreads, 0, stream>>>(codes, params, z, out, n, k, shift);
    else
      dequantize_tile_kernel<false, false>
          <<<grid, kThreads, 0, stream>>>(codes, params, z, out, n, k, shift);
    LOWBIT_CUDA_CHECK_LAUNCH();
    return;
  }
  if (int8 && f16)
    dequantize_kernel<true, true>
        <<<blocks, 256, 0, stream>>>(codes, params, z, perm, out, n, k, shift);
  else if (int8)
    dequantize_kernel<true, false>
        <<<blocks, 256, 0, stream>>>(codes, params, z, perm, out, n, k, shift);
  else if (f16)
    dequantize_kernel<false, true>
        <<<blocks, 256, 0, stream>>>(codes, params, z, perm, out, n, k, shift);
  else
    dequantize_kernel<false, false>
        <<<blocks, 256, 0, stream>>>(codes, params, z, perm, out, n, k, shift);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

// H100, bench/gpu_wq_gemm_bench.cpp (2026-11-23, wide-tile kernel + tiled dequantizer): the
// direct kernel beats dequantize + cuBLASLt up to m = 128 on weights of 48M+ elements (14336 ×
// 4096 at m = 128: 100 µs against 105; 8192 × 57344: 438 against 760) but only up to m = 64
// on smaller ones (4096 × 4096 at m = 128: 34 against 26; 4096 × 6144: 56 against 40); at
// m = 256 the dense path wins or ties on every shape.
//
// With the wgmma wide tiles and ~96-block k splits (2026-11-24, same bench): the direct kernel
// wins up to m = 256 on every 8B / 70B shape but 4096 × 4096, where m = 256 ties (30.9 µs
// against 30.0; m = 128: 18.5 against 26.1; 14336 × 4096 at 256: 87 against 112); at m = 1024
// dequantize + cuBLASLt wins everywhere (4096 × 28672: 408 against 506).
int64_t wq_gemm_max_fast_rows(const WqGpuWeight& w) {
  if (wide_wgmma_available()) return 256;
  return w.n * w.k >= (48 << 20) ? 128 : 64;
}

}  // namespace lowbit::kernels::cuda
