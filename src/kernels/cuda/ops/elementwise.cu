#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/attention/kv_convert.cuh"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/ops/elementwise.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < int(blockDim.x >> 5) ? partial[lane] : 0.0f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

__global__ void embedding_kernel(const bf16* table, const int32_t* ids, int64_t width, float* out) {
  pdl_launch_dependents();
  pdl_wait();  // reads the previous kernel's output
  const int64_t t = blockIdx.x;
  const bf16* row = table + int64_t(ids[t]) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
    out[t * width + i] = __bfloat162float(row[i]);
}

__global__ void add_rms_norm_kernel(float* x, const bf16* delta, const float* w, float eps,
                                    int64_t width, bf16* out) {
  pdl_launch_dependents();
  pdl_wait();  // reads the previous kernel's output
  const int64_t r = blockIdx.x;
  float* xr = x + r * width;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    float v = xr[i];
    if (delta) {
      v += __bfloat162float(delta[r * width + i]);
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / float(width) + eps);
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
    out[r * width + i] = __float2bfloat16(xr[i] * inv * w[i]);
}

// The same with the row held in registers: K float4 vectors per thread (width % 4 == 0,
// width / 4 <= K · blockDim.x), x read and written once, one block reduction.
template <int K>
__global__ void add_rms_norm_vec_kernel(float* x, const bf16* delta, const float* w, float eps,
                                        int width, bf16* out) {
  pdl_launch_dependents();
  pdl_wait();  // x and delta come from the kernels before
  const int64_t r = blockIdx.x;
  float4* xr = reinterpret_cast<float4*>(x + r * width);
  const uint2* dr = reinterpret_cast<const uint2*>(delta + r * width);
  const int nvec = width / 4;
  float4 v[K];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      v[j] = xr[i];
      if (delta) {
        const uint2 d = dr[i];
        const float2 d01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&d.x));
        const float2 d23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&d.y));
        v[j].x += d01.x;
        v[j].y += d01.y;
        v[j].z += d23.x;
        v[j].w += d23.y;
        xr[i] = v[j];
      }
      ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
    }
  }
  ss = block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / float(width) + eps);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  uint2* o = reinterpret_cast<uint2*>(out + r * width);
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      const float4 g = w4[i];
      const __nv_bfloat162 lo = __floats2bfloat162_rn(v[j].x * inv * g.x, v[j].y * inv * g.y);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(v[j].z * inv * g.z, v[j].w * inv * g.w);
      o[i] = make_uint2(*reinterpret_cast<const uint32_t*>(&lo),
                        *reinterpret_cast<const uint32_t*>(&hi));
    }
  }
}

__global__ void silu_mul_kernel(const bf16* gate_up, int64_t n, int64_t inter, bf16* out) {
  pdl_launch_dependents();
  pdl_wait();  // reads the previous kernel's output
  const int64_t total = n * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / inter, c = i % inter;
    float g = __bfloat162float(gate_up[r * 2 * inter + c]);
    float u = __bfloat162float(gate_up[r * 2 * inter + inter + c]);
    out[i] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
  }
}

__global__ void add_bias_kernel(bf16* y, const float* bias, int64_t n, int64_t width) {
  pdl_launch_dependents();
  pdl_wait();  // reads the previous kernel's output
  const int64_t total = n * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(__bfloat162float(y[i]) + bias[i % width]);
}

template <KvDtype D>
__device__ void store_kv(void* cache, const float* scale, const PagedKvLayer& c, int32_t slot,
                         int32_t head, int32_t d, float value) {
  using T = typename KvElem<D>::T;
  const int64_t block = slot / c.block_size, offset = slot % c.block_size;
  const int64_t index = ((block * c.num_kv_heads + head) * c.block_size + offset) * c.head_dim + d;
  float v = D == KvDtype::kBf16 ? value : value / scale[head * c.scale_stride];
  static_cast<T*>(cache)[index] = float_to_kv<D>(v);
}

// One warp per (token, head) over the q, k and v heads of a token; grid: [n, ceil(heads/warps)].
template <KvDtype D>
__global__ void rope_kv_write_kernel(RopeKvArgs a, PagedKvLayer cache) {
  pdl_launch_dependents();
  pdl_wait();  // reads the previous kernel's output
  const int64_t t = blockIdx.x;
  const int warps = blockDim.x >> 5;
  const int head = blockIdx.y * warps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int total_heads = a.num_heads + 2 * a.num_kv_heads;
  if (head >= total_heads) return;
  const int hd = a.head_dim;
  bf16* x = a.qkv + t * int64_t(total_heads) * hd + int64_t(head) * hd;
  const bool is_q = head < a.num_heads;
  const bool is_v = head >= a.num_heads + a.num_kv_heads;
  const int kv_head = is_q ? 0 : (head - a.num_heads) % a.num_kv_heads;
  const int32_t slot = a.slot_mapping ? a.slot_mapping[t] : 0;

  if (is_v) {
    if (a.store)
      for (int d = lane; d < hd; d += 32)
        store_kv<D>(cache.v, cache.v_scale, cache, slot, kv_head, d, __bfloat162float(x[d]));
    return;
  }
  const bool write_back = a.rotate && (is_q || !a.store);
  const bool store = a.store && !is_q;
  float inv = 1.0f;
  const float* norm_w = is_q ? a.q_norm : a.k_norm;
  if (a.rotate && norm_w) {
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32) {
      float v = __bfloat162float(x[d]);
      ss += v * v;
    }
    ss = warp_sum(ss);
    inv = 1.0f / sqrtf(ss / float(hd) + a.norm_eps);
  }
  __syncwarp();
  auto norm = [&](int d) {
    float v = __bfloat162float(x[d]);
    // Qwen3's q/k norm: the normed value is rounded to bf16 before RoPE, as HF does in bf16.
    return (a.rotate && norm_w) ? __bfloat162float(__float2bfloat16(v * inv * norm_w[d])) : v;
  };
  auto emit = [&](int d, float v) {
    if (write_back) x[d] = __float2bfloat16(v);
    if (store) store_kv<D>(cache.k, cache.k_scale, cache, slot, kv_head, d, v);
  };
  const int half = a.rope_dim / 2;
  const float pos = float(a.positions[t]);
  for (int i = lane; i < half; i += 32) {
    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
    float x0 = norm(ia), x1 = norm(ib);
    if (a.rotate) {
      float s, c;
      sincosf(pos * a.inv_freq[i], &s, &c);  // fp32 angle, as the CPU model and HF
      float r0 = x0 * c - x1 * s, r1 = x1 * c + x0 * s;
      x0 = r0;
      x1 = r1;
    }
    emit(ia, x0);
    emit(ib, x1);
  }
  for (int d = a.rope_dim + lane; d < hd; d += 32) emit(d, norm(d));
}

__device__ __forceinline__ void atomic_max_nonneg(float* addr, float v) {
  // Non-negative floats order like their bit patterns as signed ints.
  atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
}

// amax[h] = max |k| and amax[num_kv_heads + h] = max |v| of kv head h = blockIdx.y over the n
// rows; blocks along x split the rows' n · head_dim elements of that head.
__global__ void kv_amax_kernel(const bf16* qkv, int64_t n, int32_t num_heads, int32_t num_kv_heads,
                               int32_t head_dim, float* amax) {
  const int64_t row_width = int64_t(num_heads + 2 * num_kv_heads) * head_dim;
  const int h = blockIdx.y;
  const int64_t k0 = int64_t(num_heads + h) * head_dim;
  const int64_t v0 = int64_t(num_heads + num_kv_heads + h) * head_dim;
  float mk = 0.0f, mv = 0.0f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * head_dim;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / head_dim, d = i % head_dim;
    mk = fmaxf(mk, fabsf(__bfloat162float(qkv[r * row_width + k0 + d])));
    mv = fmaxf(mv, fabsf(__bfloat162float(qkv[r * row_width + v0 + d])));
  }
  mk = warp_max(mk);
  mv = warp_max(mv);
  if ((threadIdx.x & 31) == 0) {
    atomic_max_nonneg(&amax[h], mk);
    atomic_max_nonneg(&amax[num_kv_heads + h], mv);
  }
}

// One thread per kv head: scale = amax / fp8_max, per head or (per_head false) the max over all
// heads, written to every head.
__global__ void kv_scale_kernel(const float* amax, int32_t num_kv_heads, bool per_head,
                                float fp8_max, float* k_scale, float* v_scale) {
  for (int h = threadIdx.x; h < num_kv_heads; h += blockDim.x) {
    float mk = amax[h], mv = amax[num_kv_heads + h];
    if (!per_head)
      for (int g = 0; g < num_kv_heads; ++g) {
        mk = fmaxf(mk, amax[g]);
        mv = fmaxf(mv, amax[num_kv_heads + g]);
      }
    // An all-zero head would give scale 0 (and 0/0 later): keep a tiny positive scale.
    k_scale[h] = fmaxf(mk, 1e-12f) / fp8_max;
    v_scale[h] = fmaxf(mv, 1e-12f) / fp8_max;
  }
}

// (value, index) with the argmax order: larger value first, then the smaller index; NaN never
// wins (comparisons with NaN are false).
struct ArgmaxPair {
  float v;
  int32_t i;
};

__device__ __forceinline__ bool better(float v, int32_t i, const ArgmaxPair& b) {
  return v > b.v || (v == b.v && i < b.i);
}

__device__ ArgmaxPair block_argmax(ArgmaxPair p) {
  __shared__ ArgmaxPair s[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, p.v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, p.i, o);
    if (better(ov, oi, p)) p = {ov, oi};
  }
  if (lane == 0) s[warp] = p;
  __syncthreads();
  if (warp == 0) {
    p = lane < int(blockDim.x >> 5) ? s[lane] : ArgmaxPair{-FLT_MAX, 0x7fffffff};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, p.v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, p.i, o);
      if (better(ov, oi, p)) p = {ov, oi};
    }
    if (lane == 0) s[0] = p;
  }
  __syncthreads();
  return s[0];
}

// grid [parts, rows]: block (part, row) takes the slice [part·chunk, (part + 1)·chunk) of the
// row and writes its best pair to partial[row, part]; the last block of a row to finish (a
// counter per row) reduces the row's parts into ids[row] and resets the counter for the next
// call. One launch, every SM busy on a 128k vocabulary (one block per row took ~110 µs).
__global__ void argmax_kernel(const float* logits, int64_t vocab, int64_t chunk, int32_t* ids,
                              ArgmaxPair* partial, unsigned* counters) {
  pdl_launch_dependents();
  pdl_wait();  // the logits come from the kernel before
  const int64_t row = blockIdx.y;
  const int parts = gridDim.x;
  const float* x = logits + row * vocab;
  const int64_t lo = blockIdx.x * chunk, hi = min(vocab, lo + chunk);
  ArgmaxPair best{-FLT_MAX, 0x7fffffff};
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const float v = x[i];
    if (better(v, int32_t(i), best)) best = {v, int32_t(i)};
  }
  best = block_argmax(best);
  __shared__ bool last;
  if (threadIdx.x == 0) {
    partial[row * parts + blockIdx.x] = best;
    __threadfence();  // the pair is visible before the counter says so
    last = atomicAdd(&counters[row], 1u) == unsigned(parts - 1);
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  best = {-FLT_MAX, 0x7fffffff};
  for (int p = threadIdx.x; p < parts; p += blockDim.x) {
    // L2, not L1: other blocks wrote these pairs during this kernel.
    const float2 raw = __ldcg(reinterpret_cast<const float2*>(partial) + row * parts + p);
    const ArgmaxPair q{raw.x, __float_as_int(raw.y)};
    if (better(q.v, q.i, best)) best = q;
  }
  best = block_argmax(best);
  if (threadIdx.x == 0) {
    ids[row] = best.i == 0x7fffffff ? 0 : best.i;
    counters[row] = 0;
  }
}

__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
  // splitmix64 of (seed, index) -> [-1, 1)
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_bf16_kernel(bf16* out, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(hash_uniform(seed, uint64_t(i)) * scale);
}

__global__ void fill_f32_kernel(float* out, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = offset + hash_uniform(seed, uint64_t(i)) * scale;
}

__global__ void fill_fp8_kernel(uint8_t* out, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    // Clearing bits 3 and 7 keeps the exponent below all-ones in e4m3 and e5m2: no NaN/inf.
    uint32_t h = uint32_t((hash_uniform(seed, uint64_t(i)) + 1.0f) * 8388608.0f);
    out[i] = uint8_t(h & 0x77u) | uint8_t((h >> 8) & 0x80u);
  }
}

unsigned grid_for(int64_t total) {
  int64_t blocks = (total + kThreads - 1) / kThreads;
  return unsigned(blocks < 1 ? 1 : blocks > 65535 * 4 ? 65535 * 4 : blocks);
}

}  // namespace

void embedding(const bf16* table, const int32_t* ids, int64_t n, int64_t width, float* out,
               cudaStream_t stream) {
  if (n == 0) return;
  launch_pdl(embedding_kernel, unsigned(n), kThreads, 0, stream, table, ids, width, out);
}

void add_rms_norm(float* x, const bf16* delta, const float* w, float eps, int64_t n, int64_t width,
                  bf16* out, cudaStream_t stream) {
  if (n == 0) return;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const int64_t nvec = width / 4;
  if (width % 4 == 0 && nvec <= 4 * 1024 && aligned(x) && aligned(w) && aligned(out) &&
      (!delta || aligned(delta))) {
    // Fewest vectors per thread with at most 1024 threads: 4096 wide = one float4 per thread.
    const int k = nvec <= 1024 ? 1 : nvec <= 2048 ? 2 : 4;
    const int threads = int(std::min<int64_t>(1024, ((nvec + k - 1) / k + 31) / 32 * 32));
    auto kernel = k == 1   ? add_rms_norm_vec_kernel<1>
                  : k == 2 ? add_rms_norm_vec_kernel<2>
                           : add_rms_norm_vec_kernel<4>;
    launch_pdl(kernel, unsigned(n), threads, 0, stream, x, delta, w, eps, int(width), out);
    return;
  }
  int threads = width >= 4096 ? 1024 : width >= 1024 ? 512 : 128;
  launch_pdl(add_rms_norm_kernel, unsigned(n), threads, 0, stream, x, delta, w, eps, width, out);
}

void silu_mul(const bf16* gate_up, int64_t n, int64_t inter, bf16* out, cudaStream_t stream) {
  if (n * inter == 0) return;
  launch_pdl(silu_mul_kernel, grid_for(n * inter), kThreads, 0, stream, gate_up, n, inter, out);
}

void add_bias(bf16* y, const float* bias, int64_t n, int64_t width, cudaStream_t stream) {
  if (n * width == 0) return;
  launch_pdl(add_bias_kernel, grid_for(n * width), kThreads, 0, stream, y, bias, n, width);
}

void rope_kv_write(const RopeKvArgs& a, const PagedKvLayer& cache, cudaStream_t stream) {
  if (a.n == 0) return;
  const int warps = 4;
  const int total_heads = a.num_heads + 2 * a.num_kv_heads;
  dim3 grid(unsigned(a.n), unsigned((total_heads + warps - 1) / warps));
  switch (cache.dtype) {
    case KvDtype::kBf16:
      launch_pdl(rope_kv_write_kernel<KvDtype::kBf16>, grid, warps * 32, 0, stream, a, cache);
      break;
    case KvDtype::kFp8E4M3:
      launch_pdl(rope_kv_write_kernel<KvDtype::kFp8E4M3>, grid, warps * 32, 0, stream, a, cache);
      break;
    case KvDtype::kFp8E5M2:
      launch_pdl(rope_kv_write_kernel<KvDtype::kFp8E5M2>, grid, warps * 32, 0, stream, a, cache);
      break;
  }
}

void calibrate_kv_scales(const bf16* qkv, int64_t n, int32_t num_heads, int32_t num_kv_heads,
                         int32_t head_dim, float fp8_max, bool per_head, float* amax_scratch,
                         float* k_scale, float* v_scale, cudaStream_t stream) {
  LOWBIT_CUDA_CHECK(
      cudaMemsetAsync(amax_scratch, 0, 2 * size_t(num_kv_heads) * sizeof(float), stream));
  const int64_t per_head_elems = n * int64_t(head_dim);
  const unsigned blocks = grid_for(per_head_elems) > 256 ? 256 : grid_for(per_head_elems);
  kv_amax_kernel<<<dim3(blocks, unsigned(num_kv_heads)), kThreads, 0, stream>>>(
      qkv, n, num_heads, num_kv_heads, head_dim, amax_scratch);
  LOWBIT_CUDA_CHECK_LAUNCH();
  kv_scale_kernel<<<1, 32, 0, stream>>>(amax_scratch, num_kv_heads, per_head, fp8_max, k_scale,
                                        v_scale);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

int64_t argmax_parts(int64_t vocab) { return std::clamp<int64_t>((vocab + 4095) / 4096, 1, 64); }

int64_t argmax_scratch_bytes(int64_t rows, int64_t vocab) {
  return rows * (argmax_parts(vocab) * int64_t(sizeof(ArgmaxPair)) + int64_t(sizeof(unsigned)));
}

void argmax_rows(const float* logits, int64_t rows, int64_t vocab, int32_t* ids, void* scratch,
                 cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t parts = argmax_parts(vocab), chunk = (vocab + parts - 1) / parts;
  auto* partial = static_cast<ArgmaxPair*>(scratch);
  auto* counters = reinterpret_cast<unsigned*>(partial + rows * parts);
  launch_pdl(argmax_kernel, dim3(unsigned(parts), unsigned(rows)), kThreads, 0, stream, logits,
             vocab, chunk, ids, partial, counters);
}

void fill_uniform(bf16* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n == 0) return;
  fill_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, n, seed, scale);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void fill_uniform(float* out, int64_t n, uint64_t seed, float scale, float offset,
                  cudaStream_t stream) {
  if (n == 0) return;
  fill_f32_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, n, seed, scale, offset);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

void fill_random_fp8(uint8_t* out, int64_t n, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return;
  fill_fp8_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, n, seed);
  LOWBIT_CUDA_CHECK_LAUNCH();
}

}  // namespace lowbit::kernels::cuda
