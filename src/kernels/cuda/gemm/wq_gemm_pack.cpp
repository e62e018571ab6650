// Host side of wq_gemm: checks a WqSource against what the kernels take, repacks it into the
// fragment-ordered layout of wq_gemm_layout.h (act-order columns moved into group order) and
// uploads it.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/gemm/wq_gemm.h"
#include "kernels/cuda/gemm/wq_gemm_layout.h"

namespace lowbit::kernels::cuda {

using cpu::WqKind;
using cpu::WqSource;

WqGpuWeight::WqGpuWeight() : impl(std::make_unique<Impl>()) {}
WqGpuWeight::~WqGpuWeight() = default;

namespace {

// Zero range that keeps (bias | q) − zoff and q − z exact in bf16 (integers up to 256).
bool zero_in_range(WqKind kind, float z) {
  return kind == WqKind::kInt4 ? (z >= -128.0f && z <= 128.0f) : (z >= 0.0f && z <= 255.0f);
}

// The stream-K GEMV's per-column-group counters (zeroed) and the device's partial slots.
void alloc_streamk_counts(WqGpuWeight::Impl& im, int64_t n, cudaStream_t stream) {
  const size_t bytes = size_t(n / 32) * sizeof(int);
  im.streamk_counts = DeviceBuffer(bytes, "wq_gemv stream-K counters");
  LOWBIT_CUDA_CHECK(cudaMemsetAsync(im.streamk_counts.get(), 0, bytes, stream));
  wq_device::reserve_streamk_workspace();
}

}  // namespace

std::string wq_gemm_unsupported_reason(const WqSource& s) {
  if (s.kind != WqKind::kInt4 && s.kind != WqKind::kInt8)
    return fmt::format("weight kind {} (expected int4 or int8)", cpu::wq_kind_name(s.kind));
  if (s.n <= 0 || s.n % 64 != 0) return fmt::format("n = {} is not a multiple of 64", s.n);
  if (s.k <= 0 || s.k % 32 != 0) return fmt::format("k = {} is not a multiple of 32", s.k);
  if (s.k > (int64_t(1) << 30)) return fmt::format("k = {} is larger than 2^30", s.k);
  const bool pow2_group = s.group_size >= 32 && (s.group_size & (s.group_size - 1)) == 0;
  if (s.group_size <= 0 || s.k % s.group_size != 0 || (!pow2_group && s.group_size != s.k))
    return fmt::format("group_size = {} (expected a power of two >= 32 dividing k = {}, or k)",
                       s.group_size, s.k);
  if (s.zeros) {
    const int64_t nz = s.n * (s.k / s.group_size);
    for (int64_t i = 0; i < nz; ++i) {
      const float z = s.zeros[i];
      if (!std::isfinite(z) || !zero_in_range(s.kind, std::nearbyint(z)))
        return fmt::format("zeros[{}, {}] = {} (expected a value that rounds into [{}, {}])",
                           i / (s.k / s.group_size), i % (s.k / s.group_size), z,
                           s.kind == WqKind::kInt4 ? -128 : 0, s.kind == WqKind::kInt4 ? 128 : 255);
    }
  }
  return "";
}

std::unique_ptr<WqGpuWeight> wq_gemm_pack(const WqSource& s, const std::string& what,
                                          cudaStream_t stream) {
  const std::string reason = wq_gemm_unsupported_reason(s);
  if (!reason.empty())
    fail("{}: {} weight [{}, {}] cannot use the GPU weight-only GEMM: {}", what,
         cpu::wq_kind_name(s.kind), s.n, s.k, reason);
  const char* kind = cpu::wq_kind_name(s.kind);
  if (!s.codes || !s.scales)
    fail("{}: {} weight [{}, {}]: codes or scales is null", what, kind, s.n, s.k);
  const int64_t n = s.n, k = s.k, groups = k / s.group_size;
  const uint8_t code_max = s.kind == WqKind::kInt4 ? 15 : 255;
  for (int64_t i = 0; i < n * k; ++i)
    if (s.codes[i] > code_max)
      fail("{}: {} codes[{}, {}] = {}, expected 0..{}", what, kind, i / k, i % k, int(s.codes[i]),
           int(code_max));
  for (int64_t i = 0; i < n * groups; ++i)
    if (!std::isfinite(s.scales[i]))
      fail("{}: {} scales[{}, {}] = {}, expected a finite value", what, kind, i / groups,
           i % groups, s.scales[i]);
  std::vector<int32_t> perm;
  if (s.perm) {
    std::vector<uint8_t> seen(size_t(k), 0);
    for (int64_t c = 0; c < k; ++c) {
      const int32_t p = s.perm[c];
      if (p < 0 || p >= k || seen[size_t(p)])
        fail("{}: {} perm[{}] = {}, expected a permutation of 0..{}", what, kind, c, p, k - 1);
      seen[size_t(p)] = 1;
    }
    perm.assign(s.perm, s.perm + k);
  }
  // Source column of packed column c.
  auto src_col = [&](int64_t c) { return perm.empty() ? c : int64_t(perm[size_t(c)]); };

  auto w = std::make_unique<WqGpuWeight>();
  w->n = n;
  w->k = k;
  w->kind = s.kind;
  w->group_size = s.group_size;
  w->act_order = !perm.empty();
  WqGpuWeight::Impl& im = *w->impl;
  im.has_zeros = s.zeros != nullptr;

  // Codes in fragment order (wq_gemm_layout.h).
  const bool int8 = s.kind == WqKind::kInt8;
  const int step_k = wq_step_k(s.kind);
  const int64_t cgs = n / 32, steps = k / step_k;
  std::vector<uint32_t> codes(size_t(cgs * steps * 32 * 4), 0);
  const int koff[4] = {0, 1, 8, 9};
#pragma omp parallel for schedule(static)
  for (int64_t cg = 0; cg < cgs; ++cg)
    for (int64_t st = 0; st < steps; ++st)
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        uint32_t* words = &codes[size_t(((st * cgs + cg) * 32 + lane) * 4)];
        for (int j = 0; j < 4; ++j) {
          uint32_t word = 0;
          if (int8) {
            const int64_t col = cg * 32 + j * 8 + g;
            for (int v = 0; v < 4; ++v)
              word |= uint32_t(s.codes[col * k + src_col(st * 16 + 2 * t + koff[v])]) << (8 * v);
          } else {
            static const int kNibble[2][4] = {{0, 4, 1, 5}, {2, 6, 3, 7}};
            for (int f = 0; f < 2; ++f) {
              const int ks = j / 2, nt = 2 * (j % 2) + f;
              const int64_t col = cg * 32 + nt * 8 + g;
              for (int v = 0; v < 4; ++v) {
                const int64_t c = st * 32 + ks * 16 + 2 * t + koff[v];
                word |= uint32_t(s.codes[col * k + src_col(c)]) << (4 * kNibble[f][v]);
              }
            }
          }
          words[j] = word;
        }
      }

  // Per-group parameters, one array per activation type.
  const size_t entries = size_t(groups * cgs * 32);
  for (int act = 0; act < 2; ++act) {
    const bool f16 = act == int(ActType::kF16);
    auto to16 = [&](float v) { return f16 ? f32_to_f16(v) : f32_to_bf16(v); };
    std::vector<uint32_t> p32;  // with zeros: 2 words per entry
    std::vector<uint16_t> p16;
    (im.has_zeros ? p32.resize(2 * entries) : p16.resize(entries));
    for (int64_t gi = 0; gi < groups; ++gi)
      for (int64_t cg = 0; cg < cgs; ++cg)
        for (int g = 0; g < 8; ++g)
          for (int nt = 0; nt < 4; ++nt) {
            const int64_t col = cg * 32 + nt * 8 + g;
            const size_t e = size_t(((gi * cgs + cg) * 8 + g) * 4 + nt);
            const uint16_t sc = to16(s.scales[col * groups + gi]);
            if (!im.has_zeros) {
              p16[e] = sc;
              continue;
            }
            // z = zi + zf: (q − zi) is exact in the kernel, −zf·scale is added by the fma.
            const float z = s.zeros[col * groups + gi], zi = std::nearbyint(z);
            if (z != zi) im.fractional_zeros = true;
            const uint16_t zoff =
                int8 ? uint16_t(int16_t(zi)) : to16((f16 ? 1024.0f : 128.0f) + zi);
            const float scale16 = f16 ? f16_to_f32(sc) : bf16_to_f32(sc);
            p32[2 * e] = uint32_t(sc) | uint32_t(zoff) << 16;
            p32[2 * e + 1] = to16(-(z - zi) * scale16);
          }
    const size_t bytes = im.has_zeros ? entries * 8 : entries * 2;
    // +256 B: the kernel copies 256 B per symmetric 64 B entry (the neighbours are ignored).
    im.params[act] = DeviceBuffer(bytes + 256, what + " (wq_gemm scales)");
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(im.params[act].get(), 0, bytes + 256, stream));
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(im.params[act].get(),
                                      im.has_zeros ? (const void*)p32.data() : p16.data(), bytes,
                                      cudaMemcpyHostToDevice, stream));
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
    im.param_bytes = bytes;
  }
  im.code_bytes = codes.size() * 4;
  im.codes = DeviceBuffer(im.code_bytes, what + " (wq_gemm codes)");
  LOWBIT_CUDA_CHECK(
      cudaMemcpyAsync(im.codes.get(), codes.data(), im.code_bytes, cudaMemcpyHostToDevice, stream));
  if (!perm.empty()) {
    im.perm = DeviceBuffer(size_t(k) * 4, what + " (wq_gemm perm)");
    LOWBIT_CUDA_CHECK(
        cudaMemcpyAsync(im.perm.get(), perm.data(), size_t(k) * 4, cudaMemcpyHostToDevice, stream));
  }
  alloc_streamk_counts(im, n, stream);
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return w;
}

std::unique_ptr<WqGpuWeight> wq_gemm_clone(const WqGpuWeight& w, cudaStream_t stream) {
  auto c = std::make_unique<WqGpuWeight>();
  c->n = w.n;
  c->k = w.k;
  c->kind = w.kind;
  c->group_size = w.group_size;
  c->act_order = w.act_order;
  const WqGpuWeight::Impl& a = *w.impl;
  WqGpuWeight::Impl& b = *c->impl;
  b.has_zeros = a.has_zeros;
  b.fractional_zeros = a.fractional_zeros;
  b.code_bytes = a.code_bytes;
  b.param_bytes = a.param_bytes;
  auto copy = [&](const DeviceBuffer& from, DeviceBuffer& to) {
    if (!from) return;
    to = DeviceBuffer(from.bytes(), "wq_gemm weight copy");
    LOWBIT_CUDA_CHECK(
        cudaMemcpyAsync(to.get(), from.get(), from.bytes(), cudaMemcpyDeviceToDevice, stream));
  };
  copy(a.codes, b.codes);
  copy(a.params[0], b.params[0]);
  copy(a.params[1], b.params[1]);
  copy(a.perm, b.perm);
  alloc_streamk_counts(b, w.n, stream);
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return c;
}

uint64_t wq_gpu_bytes(const WqGpuWeight& w) { return w.impl->code_bytes + w.impl->param_bytes; }

}  // namespace lowbit::kernels::cuda
