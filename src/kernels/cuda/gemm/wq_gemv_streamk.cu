// wq_gemv for m <= 8: a stream-K GEMV over the packed layout of wq_gemm_layout.h.
//
// Why: the one-block-per-column-group GEMV (wq_gemv.cu) leaves the GPU partly idle on the
// decode shapes: 4096 × 6144 gives 192 blocks for 264 slots (2 per SM on 132 SMs), 28672
// columns 896 blocks = 3.4 waves, and every block pays the memory latency on its own. Here the
// grid is one wave (2 blocks of 8 warps per SM) and the units of work — warp-steps, one 16-byte
// code word per lane (int4: 32 k × 32 columns), numbered u = column group · steps + step — are
// cut into equal contiguous ranges, one per warp: every warp streams the same number of bytes
// from the first cycle to the last.
//
// The mma roles are swapped against wq_gemm: the decoded weights are the A operand (16 output
// columns × k16, two of the GEMM's B fragments side by side) and x the B operand (k16 × 8
// tokens), so one mma.m16n8k16 covers 256 weights instead of 128 and m <= 8 wastes no rows.
//
// A warp's range crosses column groups: a column group it covers whole is stored directly; a
// partial one goes as 32 × m fp32 sums to a per-device slot (2 per warp: the group its range
// starts in, the group it ends in), then the warp adds its step count to the group's counter;
// the warp that completes the count sums every contributor's slot in warp order (the same
// order each run: deterministic), adds the bias, stores y and resets the counter to 0 for the
// next launch. Contributors of group c are the warps whose ranges meet [c·steps, (c+1)·steps).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/gemm/wq_gemm_device.cuh"

namespace lowbit::kernels::cuda::wq_device {
namespace {

constexpr int kWarps = 8;
constexpr int kBlockThreads = kWarps * 32;
constexpr int kBlocksPerSm = 2;
constexpr int kSlotFloats = kStreamKMaxRows * 32;  // one partial: [8 rows][32 columns] fp32

struct StreamK {
  int64_t units;    // column groups · steps
  int steps;        // k-steps per column group
  int warps;        // warps of the grid
  float* partials;  // [2 · warps][kSlotFloats]
  int* counts;      // [column groups]: steps summed so far; 0 between launches
};

// First unit of warp w's range; the range is [range_start(w), range_start(w + 1)).
__device__ __forceinline__ int64_t range_start(const StreamK& sk, int w) {
  return sk.units * w / sk.warps;
}
// The warp whose range holds unit u: the largest w with range_start(w) <= u.
__device__ __forceinline__ int warp_of(const StreamK& sk, int64_t u) {
  return int(((u + 1) * sk.warps - 1) / sk.units);
}
// Partial slot of warp w in column group cg: 2w where its range starts, 2w + 1 where it ends.
__device__ __forceinline__ int slot_of(const StreamK& sk, int w, int cg) {
  return 2 * w + (range_start(sk, w) / sk.steps == cg ? 0 : 1);
}

// kScaleAfter (no zeros or integer zeros): the mma takes (q − z) exactly and each group's fp32
// sum is multiplied by its column's scale (a third fewer instructions per code word than a
// scaled decode, and no bf16 rounding of (q − z)·s); fractional zeros keep the scaled decode.
template <bool kInt8, bool kF16, bool kZeros, bool kScaleAfter>
__global__ void __launch_bounds__(kBlockThreads, kBlocksPerSm)
    wq_gemv_streamk_kernel(KernelArgs a, StreamK sk) {
  constexpr int kStep = kInt8 ? 16 : 32;
  constexpr int kHalves = kInt8 ? 1 : 2;  // k16 halves per step
  constexpr int U = kInt8 ? 8 : 6;        // steps per warp in flight (128 registers, no spills)
  constexpr int kPBytes = kZeros ? 32 : 8;
  constexpr int kPStride = kZeros ? 256 : 64;  // param bytes per (group, column group)
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int w = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int64_t lo = range_start(sk, w), hi = range_start(sk, w + 1);
  const int cgs = a.n / 32, steps = sk.steps;
  const int64_t p_gstride = int64_t(cgs) * kPStride, c_stride = int64_t(cgs) * 32;
  // B operand: token g's x pairs (k 2t, 2t + 1) and (2t + 8, 2t + 9); tokens past m are zeros.
  const bool x_row = g < a.m;
  const uint16_t* xg = static_cast<const uint16_t*>(a.x) + int64_t(x_row ? g : 0) * a.ldx + 2 * t;
  auto ld_x2 = [&](int64_t kk) {
    return x_row ? __ldg(reinterpret_cast<const unsigned int*>(xg + kk)) : 0u;
  };

  for (int64_t u = lo; u < hi;) {
    const int cg = int(u / steps);
    const int s_lo = int(u - int64_t(cg) * steps);
    const int64_t left = hi - int64_t(cg) * steps;
    const int s_hi = left < steps ? int(left) : steps;
    u = int64_t(cg) * steps + s_hi;
    const uint4* codes = a.codes + int64_t(cg) * 32 + lane;
    const uint8_t* params =
        static_cast<const uint8_t*>(a.params) + int64_t(cg) * kPStride + g * kPBytes;
    // acc[p]: C of columns 16p .. 16p + 15 × tokens 0..7 (rows g, g + 8; tokens 2t, 2t + 1).
    float acc[2][4] = {};
    // kScaleAfter: part = the current group's unscaled sums, sc = its columns' scales.
    float part[2][4] = {}, sc[4] = {};
    int group = -1;
    auto fold = [&] {
#pragma unroll
      for (int p = 0; p < 2; ++p)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          acc[p][e] = fmaf(sc[2 * p + (e >> 1)], part[p][e], acc[p][e]);
          part[p][e] = 0.0f;
        }
    };
    for (int s0 = s_lo; s0 < s_hi; s0 += U) {
      uint4 q[U], p0[U], p1[U];
      uint32_t xb[U][kHalves][2];
#pragma unroll
      for (int j = 0; j < U; ++j)
        q[j] = s0 + j < s_hi ? ld_stream16(codes + (s0 + j) * c_stride) : make_uint4(0, 0, 0, 0);
      pdl_wait();  // x comes from the kernel before (returns at once after the first batch)
#pragma unroll
      for (int j = 0; j < U; ++j) {
        const int s = min(s0 + j, s_hi - 1);
        const uint8_t* p = params + int64_t(s >> a.group_shift) * p_gstride;
        load_param_entry<kZeros>(p, p0[j], p1[j]);
#pragma unroll
        for (int ks = 0; ks < kHalves; ++ks) {
          const int64_t kk = int64_t(s) * kStep + ks * 16;
          xb[j][ks][0] = ld_x2(kk);
          xb[j][ks][1] = ld_x2(kk + 8);
        }
      }
#pragma unroll
      for (int j = 0; j < U; ++j) {
        if (s0 + j >= s_hi) break;  // uniform per warp
        GroupParams gp;
        unpack_params<kInt8, kF16>(gp, p0[j], p1[j], kZeros);
        if constexpr (kScaleAfter) {
          const int gi = (s0 + j) >> a.group_shift;  // uniform per warp
          if (gi != group) {
            if (group >= 0) fold();
            group = gi;
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) sc[nt] = scale_of<kF16>(gp.scale2[nt]);
          }
        }
#pragma unroll
        for (int ks = 0; ks < kHalves; ++ks) {
          uint32_t f[4][2];
          decode_fragments<kInt8, kF16, !kScaleAfter>(q[j], ks, gp, f);
#pragma unroll
          for (int p = 0; p < 2; ++p) {
            // A rows g / g + 8 = columns 16p + g / 16p + 8 + g: fragments nt = 2p and 2p + 1.
            const uint32_t afrag[4] = {f[2 * p][0], f[2 * p + 1][0], f[2 * p][1], f[2 * p + 1][1]};
            mma16816<kF16>(kScaleAfter ? part[p] : acc[p], afrag, xb[j][ks][0], xb[j][ks][1]);
          }
        }
      }
    }
    if constexpr (kScaleAfter) fold();

    // acc[p][e]: column 16p + 8·(e / 2) + g, token 2t + e % 2.
    auto each = [&](auto&& fn) {
#pragma unroll
      for (int p = 0; p < 2; ++p)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = 2 * t + (e & 1);
          if (r < a.m) fn(r, 16 * p + 8 * (e >> 1) + g, acc[p][e]);
        }
    };
    if (s_lo == 0 && s_hi == steps) {  // the whole column group is this warp's
      each([&](int r, int c, float v) {
        const int col = cg * 32 + c;
        store_y<kF16>(a, int64_t(r) * a.ldy + col, a.bias ? v + a.bias[col] : v);
      });
      continue;
    }
    float* slot = sk.partials + int64_t(slot_of(sk, w, cg)) * kSlotFloats;
    each([&](int r, int c, float v) { slot[r * 32 + c] = v; });
    __threadfence();  // the partial is visible before the count says it is there
    __syncwarp();
    int before = 0;
    if (lane == 0) before = atomicAdd(&sk.counts[cg], s_hi - s_lo);
    before = __shfl_sync(0xffffffffu, before, 0);
    if (before + (s_hi - s_lo) != steps) continue;
    // The last contributor: sum the slots in warp order. Lane j finds contributor j's slot once
    // (64-bit divisions) and the sums take them by shuffle, up to 32 loads in flight at once (one
    // L2 round trip per contributor in a row was ~6 µs on the 8B shapes: ~18 contributors).
    __threadfence();
    const int w_first = warp_of(sk, int64_t(cg) * steps);
    const int w_last = warp_of(sk, int64_t(cg) * steps + steps - 1);
    const int col = cg * 32 + lane;
    const float b = a.bias ? a.bias[col] : 0.0f;
    for (int r = 0; r < a.m; ++r) {
      float sum = 0.0f;
      for (int base = w_first; base <= w_last; base += 32) {
        const int c = base + lane;
        const bool has = c <= w_last && range_start(sk, c) < range_start(sk, c + 1);
        const int my_slot = has ? slot_of(sk, c, cg) : -1;  // -1: past the end or no units
        const int count = min(32, w_last - base + 1);
        float v[32];
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          const int slot = __shfl_sync(0xffffffffu, my_slot, j);
          v[j] = j < count && slot >= 0
                     ? __ldcg(sk.partials + int64_t(slot) * kSlotFloats + r * 32 + lane)
                     : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 32; ++j) sum += v[j];
      }
      store_y<kF16>(a, int64_t(r) * a.ldy + col, sum + b);
    }
    if (lane == 0) sk.counts[cg] = 0;
  }
  pdl_wait();  // a warp without units still orders the next kernel behind the previous one
  pdl_launch_dependents();
}

// Per-device partial slots: 2 per warp of the largest grid (2 blocks × 8 warps per SM).
struct Workspace {
  std::mutex mu;
  std::vector<DeviceBuffer> partials;  // by device ordinal
};

Workspace& workspace() {
  static Workspace* ws = new Workspace;  // never destroyed: buffers outlive static teardown
  return *ws;
}

float* partials_for_current_device() {
  int dev = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&dev));
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mu);
  if (ws.partials.size() <= size_t(dev)) ws.partials.resize(size_t(dev) + 1);
  DeviceBuffer& b = ws.partials[size_t(dev)];
  if (!b) {
    const size_t warps = size_t(device_facts().sms) * kBlocksPerSm * kWarps;
    b = DeviceBuffer(2 * warps * kSlotFloats * sizeof(float), "wq_gemv stream-K partial sums");
  }
  return b.get<float>();
}

template <bool kInt8, bool kF16, bool kZeros, bool kScaleAfter>
void launch(const KernelArgs& a, int* counts, cudaStream_t stream) {
  const int steps = a.k / (kInt8 ? 16 : 32);
  StreamK sk{};
  sk.units = int64_t(a.n / 32) * steps;
  sk.steps = steps;
  // One wave; fewer blocks when there are not U units per warp (small test shapes).
  const int64_t want = (sk.units + kWarps * 6 - 1) / (kWarps * 6);
  const int blocks = int(std::clamp<int64_t>(want, 1, int64_t(device_facts().sms) * kBlocksPerSm));
  sk.warps = blocks * kWarps;
  sk.partials = partials_for_current_device();
  sk.counts = counts;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(blocks));
  cfg.blockDim = dim3(kBlockThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  set_cluster_pdl_attributes(cfg, attrs, 1);
  LOWBIT_CUDA_CHECK(
      cudaLaunchKernelEx(&cfg, wq_gemv_streamk_kernel<kInt8, kF16, kZeros, kScaleAfter>, a, sk));
}

template <bool kInt8, bool kF16>
void launch_zeros(const KernelArgs& a, int* counts, cudaStream_t stream) {
  if (!a.has_zeros)
    launch<kInt8, kF16, false, true>(a, counts, stream);
  else if (!a.fractional_zeros)
    launch<kInt8, kF16, true, true>(a, counts, stream);
  else
    launch<kInt8, kF16, true, false>(a, counts, stream);
}

}  // namespace

void reserve_streamk_workspace() { partials_for_current_device(); }

void release_streamk_workspace() {
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mu);
  ws.partials.clear();
}

void launch_gemv_streamk(const KernelArgs& a, bool int8, bool f16, int* counts,
                         cudaStream_t stream) {
  if (a.m < 1 || a.m > kStreamKMaxRows)
    fail("wq_gemv stream-K: m = {}, expected 1..{}", a.m, kStreamKMaxRows);
  if (int8)
    f16 ? launch_zeros<true, true>(a, counts, stream)
        : launch_zeros<true, false>(a, counts, stream);
  else
    f16 ? launch_zeros<false, true>(a, counts, stream)
        : launch_zeros<false, false>(a, counts, stream);
}

}  // namespace lowbit::kernels::cuda::wq_device

namespace lowbit::kernels::cuda {
void wq_release_device_scratch() { wq_device::release_streamk_workspace(); }
}  // namespace lowbit::kernels::cuda
