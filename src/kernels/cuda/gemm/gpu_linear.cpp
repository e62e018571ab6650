#include "kernels/cuda/gemm/gpu_linear.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "kernels/cuda/gemm/wq_gemm.h"

namespace lowbit::kernels::cuda {

static_assert(kBf16GemvRows == kGemvMaxRows, "gpu_kernel_registry.h mirrors linear.h");
static_assert(kW8GemvRows == kW8GemvMaxRows, "gpu_kernel_registry.h mirrors w8a8_gemm.h");
static_assert(kWqGemvRows <= kWqGemvMaxRows, "wq_gemv is offered only for the m it takes");

struct GpuLinear::Owned {
  std::unique_ptr<Fp8GpuWeight> fp8;
  std::unique_ptr<Int8GpuWeight> int8;
  std::unique_ptr<WqGpuWeight> wq;
  DeviceBuffer dense;          // bf16 copy of a wq weight no wq kernel can take
  std::string wq_unsupported;  // wq_gemm_unsupported_reason of the source
};

namespace {

using F = GpuWeightFormat;

bool is_fp8(F f) { return f == F::kFp8PerTensor || f == F::kFp8Rowwise || f == F::kFp8Block; }

F fp8_format(Fp8Scaling s) {
  switch (s) {
    case Fp8Scaling::kPerTensor:
      return F::kFp8PerTensor;
    case Fp8Scaling::kRowwise:
      return F::kFp8Rowwise;
    case Fp8Scaling::kBlock128:
      return F::kFp8Block;
  }
  return F::kFp8Rowwise;
}

std::string describe(const std::string& what, const GpuLinearShape& s) {
  std::string out =
      fmt::format("{} ({} weight [{}, {}]", what, gpu_weight_format_name(s.format), s.n, s.k);
  if (s.group_size > 0) out += fmt::format(", group {}", s.group_size);
  return out + ")";
}

// The logical weight of `src` as bf16 [n, k] in input order, decoded on the host.
std::vector<uint16_t> dequantize_on_host(const cpu::WqSource& src, const std::string& what) {
  std::vector<float> w = cpu::wq_dequantize(*cpu::pack_wq_weight(src, what));
  std::vector<uint16_t> bits(w.size());
  for (size_t i = 0; i < w.size(); ++i) bits[i] = f32_to_bf16(w[i]);
  return bits;
}

// bf16 bits of a stored 8-bit weight [n, k]: code · its scale (scales laid out as for
// fp8_upload_weight; int8 codes per row).
std::vector<uint16_t> dequantize_stored(const uint8_t* codes, bool is_fp8,
                                        const std::vector<float>& scales, int64_t n, int64_t k,
                                        Fp8Scaling scaling) {
  std::vector<uint16_t> bits(size_t(n * k));
  const int64_t kb = (k + 127) / 128;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t q = codes[r * k + c];
      float s = scales[size_t(r)];  // int8 and rowwise
      if (is_fp8 && scaling == Fp8Scaling::kPerTensor) s = scales[0];
      if (is_fp8 && scaling == Fp8Scaling::kBlock128) s = scales[size_t((r / 128) * kb + c / 128)];
      const float v = is_fp8 ? fp8_e4m3_to_f32(q) : float(int8_t(q));
      bits[size_t(r * k + c)] = f32_to_bf16(v * s);
    }
  return bits;
}

}  // namespace

GpuLinear::GpuLinear() = default;
GpuLinear::~GpuLinear() = default;
GpuLinear::GpuLinear(GpuLinear&&) noexcept = default;
GpuLinear& GpuLinear::operator=(GpuLinear&&) noexcept = default;

GpuLinear GpuLinear::bf16(const __nv_bfloat16* w, int64_t n, int64_t k, const std::string& what,
                          const GpuLinearOptions& options) {
  GpuLinear l;
  l.shape_.format = F::kBf16;
  l.shape_.n = n;
  l.shape_.k = k;
  l.dense_ = w;
  l.make_plan(what, options);
  return l;
}

// A copy of a device bf16 weight, run by the bf16 kernels: the fallback for a layer no 8-bit
// kernel can take (one notice line; throws with both formats' reasons when bf16 fails too).
GpuLinear GpuLinear::dense_fallback(const __nv_bfloat16* w, const std::string& what,
                                    const GpuLinearOptions& options, const std::string& why) {
  std::fprintf(stderr, "lowbit: %s: %s; running it in bf16\n", describe(what, shape_).c_str(),
               why.c_str());
  GpuLinear l;
  l.shape_.format = F::kBf16;
  l.shape_.n = shape_.n;
  l.shape_.k = shape_.k;
  l.owned_ = std::make_unique<Owned>();
  l.owned_->dense = DeviceBuffer(size_t(shape_.n * shape_.k) * 2, what + " (bf16 copy)");
  LOWBIT_CUDA_CHECK(
      cudaMemcpy(l.owned_->dense.get(), w, l.owned_->dense.bytes(), cudaMemcpyDeviceToDevice));
  l.dense_ = l.owned_->dense.get<__nv_bfloat16>();
  try {
    l.make_plan(what, options);
  } catch (const Error& e) {
    fail("{}; and as {}: {}", e.what(), gpu_weight_format_name(shape_.format), why);
  }
  return l;
}

GpuLinear GpuLinear::dense_fallback_from_host(const std::vector<uint16_t>& bits,
                                              const std::string& what,
                                              const GpuLinearOptions& options,
                                              const std::string& why) {
  DeviceBuffer staging(bits.size() * 2, what + " (bf16 staging)");
  copy_to_device(staging.get(), bits.data(), bits.size() * 2);
  return dense_fallback(staging.get<__nv_bfloat16>(), what, options, why);
}

GpuLinear GpuLinear::fp8(const __nv_bfloat16* w, int64_t n, int64_t k, Fp8Scaling scaling,
                         const std::string& what, const GpuLinearOptions& options,
                         cudaStream_t stream) {
  GpuLinear l;
  l.shape_.format = fp8_format(scaling);
  l.shape_.n = n;
  l.shape_.k = k;
  try {
    l.make_plan(what, options);  // before quantizing: a shape no kernel takes falls back
  } catch (const Error& e) {
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return l.dense_fallback(w, what, options, l.plan_.reasons());
  }
  l.owned_ = std::make_unique<Owned>();
  l.owned_->fp8 = fp8_quantize_weight(w, n, k, scaling, stream);
  return l;
}

GpuLinear GpuLinear::int8(const __nv_bfloat16* w, int64_t n, int64_t k, const std::string& what,
                          const GpuLinearOptions& options, cudaStream_t stream) {
  GpuLinear l;
  l.shape_.format = F::kInt8W8A8;
  l.shape_.n = n;
  l.shape_.k = k;
  try {
    l.make_plan(what, options);
  } catch (const Error& e) {
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return l.dense_fallback(w, what, options, l.plan_.reasons());
  }
  l.owned_ = std::make_unique<Owned>();
  l.owned_->int8 = int8_quantize_weight(w, n, k, stream);
  return l;
}

GpuLinear GpuLinear::bf16_copy(const uint16_t* bits, int64_t n, int64_t k, const std::string& what,
                               const GpuLinearOptions& options) {
  GpuLinear l;
  l.shape_.format = F::kBf16;
  l.shape_.n = n;
  l.shape_.k = k;
  l.owned_ = std::make_unique<Owned>();
  l.owned_->dense = DeviceBuffer(size_t(n * k) * 2, what + " (bf16)");
  copy_to_device(l.owned_->dense.get(), bits, size_t(n * k) * 2);
  l.dense_ = l.owned_->dense.get<__nv_bfloat16>();
  l.make_plan(what, options);
  return l;
}

GpuLinear GpuLinear::fp8_stored(const uint8_t* codes, const std::vector<float>& scales, int64_t n,
                                int64_t k, Fp8Scaling scaling, const std::string& what,
                                const GpuLinearOptions& options, cudaStream_t stream) {
  if (int64_t(scales.size()) != fp8_scale_count(n, k, scaling))
    fail("{}: {} fp8 {} weight scales for [{}, {}], expected {}", what, scales.size(),
         fp8_scaling_name(scaling), n, k, fp8_scale_count(n, k, scaling));
  GpuLinear l;
  l.shape_.format = fp8_format(scaling);
  l.shape_.n = n;
  l.shape_.k = k;
  try {
    l.make_plan(what, options);
  } catch (const Error& e) {
    return l.dense_fallback_from_host(dequantize_stored(codes, true, scales, n, k, scaling), what,
                                      options, l.plan_.reasons());
  }
  l.owned_ = std::make_unique<Owned>();
  l.owned_->fp8 =
      fp8_upload_weight(codes, scales.data(), int64_t(scales.size()), n, k, scaling, what, stream);
  return l;
}

GpuLinear GpuLinear::int8_stored(const int8_t* codes, const std::vector<float>& scales, int64_t n,
                                 int64_t k, const std::string& what,
                                 const GpuLinearOptions& options, cudaStream_t stream) {
  if (int64_t(scales.size()) != n)
    fail("{}: {} int8 weight scales for [{}, {}], expected {} (one per output row)", what,
         scales.size(), n, k, n);
  GpuLinear l;
  l.shape_.format = F::kInt8W8A8;
  l.shape_.n = n;
  l.shape_.k = k;
  try {
    l.make_plan(what, options);
  } catch (const Error& e) {
    return l.dense_fallback_from_host(dequantize_stored(reinterpret_cast<const uint8_t*>(codes),
                                                        false, scales, n, k, Fp8Scaling::kRowwise),
                                      what, options, l.plan_.reasons());
  }
  l.owned_ = std::make_unique<Owned>();
  l.owned_->int8 = int8_upload_weight(codes, scales.data(), n, n, k, what, stream);
  return l;
}

const Fp8GpuWeight* GpuLinear::fp8_weight() const { return owned_ ? owned_->fp8.get() : nullptr; }
const Int8GpuWeight* GpuLinear::int8_weight() const {
  return owned_ ? owned_->int8.get() : nullptr;
}

GpuLinear GpuLinear::wq(const cpu::WqSource& src, const std::string& what,
                        const GpuLinearOptions& options, cudaStream_t stream) {
  if (src.kind != cpu::WqKind::kInt4 && src.kind != cpu::WqKind::kInt8)
    fail("{}: {} weights have no CUDA kernel (int4 and int8 codes do); use --device cpu", what,
         cpu::wq_kind_name(src.kind));
  GpuLinear l;
  l.shape_.format = src.kind == cpu::WqKind::kInt4 ? F::kW4A16 : F::kW8A16;
  l.shape_.n = src.n;
  l.shape_.k = src.k;
  l.shape_.group_size = src.group_size;
  l.shape_.capability = options.capability;
  l.owned_ = std::make_unique<Owned>();
  l.owned_->wq_unsupported = wq_gemm_unsupported_reason(src);
  GpuKernelPlan p = GpuKernelPlan::make(l.shape_, options.disabled,
                                        [&](const GpuKernelInfo& k) { return l.shape_reason(k); });
  if (p.empty()) {
    // Neither wq kernel: run a bf16 copy (correct for any shape, 4× the bytes of int4).
    std::fprintf(stderr, "lowbit: %s: %s; running a bf16 copy of it\n",
                 describe(what, l.shape_).c_str(), p.reasons().c_str());
    std::vector<uint16_t> bits = dequantize_on_host(src, what);
    l.owned_->dense = DeviceBuffer(bits.size() * 2, what + " (bf16 copy)");
    copy_to_device(l.owned_->dense.get(), bits.data(), bits.size() * 2);
    l.shape_.format = F::kBf16;
    l.shape_.group_size = 0;
    l.dense_ = l.owned_->dense.get<__nv_bfloat16>();
    try {
      l.make_plan(what, options);
    } catch (const Error& e) {
      fail("{}; and for the {} weight itself: {}", e.what(),
           src.kind == cpu::WqKind::kInt4 ? "w4a16" : "w8a16", p.reasons());
    }
    return l;
  }
  l.owned_->wq = wq_gemm_pack(src, what, stream);
  l.shape_.wq_fast_max_m = wq_gemm_max_fast_rows(*l.owned_->wq);
  l.make_plan(what, options);
  return l;
}

std::string GpuLinear::shape_reason(const GpuKernelInfo& k) const {
  const int cc = shape_.capability;
  if (is_fp8(shape_.format)) {
    const Fp8Scaling scaling = shape_.format == F::kFp8PerTensor ? Fp8Scaling::kPerTensor
                               : shape_.format == F::kFp8Rowwise ? Fp8Scaling::kRowwise
                                                                 : Fp8Scaling::kBlock128;
    // On GPUs without fp8 tensor cores fp8_linear runs weight-only by itself (fp8_weight_only).
    return fp8_unsupported_reason(shape_.n, shape_.k, scaling, cc);
  }
  if (shape_.format == F::kInt8W8A8) return int8_unsupported_reason(shape_.n, shape_.k, cc);
  if (shape_.format == F::kW4A16 || shape_.format == F::kW8A16)
    return owned_->wq_unsupported;  // both wq kernels start from the packed weight
  return "";
}

void GpuLinear::make_plan(const std::string& what, const GpuLinearOptions& options) {
  shape_.capability = options.capability;
  plan_ = GpuKernelPlan::make(shape_, options.disabled,
                              [&](const GpuKernelInfo& k) { return shape_reason(k); });
  if (plan_.empty())
    fail("{}: no GPU kernel can run this layer: {}", describe(what, shape_), plan_.reasons());
  // Every m a step can have must be served; kernel m ranges are intervals, so a gap can only
  // start at 1 or right after some kernel's max_m.
  std::vector<int64_t> starts = {1};
  for (const GpuKernelInfo* k : plan_.usable())
    if (k->max_m < options.max_m) starts.push_back(k->max_m + 1);
  for (int64_t m : starts)
    if (!plan_.choose(m))
      fail("{}: no GPU kernel can run this layer with {} rows (steps of up to {} tokens): {}",
           describe(what, shape_), m, options.max_m, plan_.reasons());
  for (const auto& [name, why] : plan_.shape_refusals())
    std::fprintf(stderr, "lowbit: %s: kernel %s cannot take it (%s); using %s\n",
                 describe(what, shape_).c_str(), name.c_str(), why.c_str(),
                 plan_.usable().front()->name);
}

const char* GpuLinear::kernel_for(int64_t m) const {
  const GpuKernelInfo* k = plan_.choose(m);
  return k ? k->name : "none";
}

int64_t GpuLinear::scratch_elems_for(int64_t max_m) const {
  if (shape_.format != F::kW4A16 && shape_.format != F::kW8A16) return 0;
  for (int64_t m = 1;; m = std::min(max_m, m * 2)) {
    if (std::strcmp(kernel_for(m), "wq_dequant_cublaslt") == 0) return shape_.n * shape_.k;
    if (m >= max_m) return 0;
  }
}

bool GpuLinear::needs_warm_up() const { return owned_ && owned_->wq && owned_->wq->act_order; }

uint64_t GpuLinear::weight_bytes() const {
  switch (shape_.format) {
    case F::kBf16:
      return uint64_t(shape_.n) * uint64_t(shape_.k) * 2;
    case F::kInt8W8A8:
      return owned_->int8->device_bytes();
    case F::kW4A16:
    case F::kW8A16:
      return wq_gpu_bytes(*owned_->wq);
    default:
      return owned_->fp8->device_bytes();
  }
}

void GpuLinear::forward(const GpuLinearContext& ctx, const __nv_bfloat16* x, int64_t ldx,
                        const float* bias, void* y, int64_t ldy, OutType out_type, int64_t m,
                        cudaStream_t stream) const {
  const GpuKernelInfo* k = plan_.choose(m);
  if (!k) fail("GPU linear [{}, {}]: no kernel planned for m = {}", shape_.n, shape_.k, m);
  const char* name = k->name;
  const int64_t n = shape_.n, kk = shape_.k;
  switch (shape_.format) {
    case F::kBf16:
      // The same call as before GpuLinear existed: the benchmark baseline stays as it was.
      ctx.gemm->linear(x, ldx, dense_, bias, y, ldy, out_type, m, n, kk, stream,
                       std::strcmp(name, "bf16_cublaslt") == 0);
      return;
    case F::kInt8W8A8:
      ctx.w8a8->int8_linear(*owned_->int8, x, ldx, bias, y, ldy, out_type, m, stream,
                            std::strcmp(name, "int8_cublaslt") == 0);
      return;
    case F::kW4A16:
    case F::kW8A16:
      if (std::strcmp(name, "wq_gemv") == 0) {
        wq_gemv(*owned_->wq, ActType::kBf16, x, ldx, bias, y, ldy, out_type, m, stream);
      } else if (std::strcmp(name, "wq_gemm") == 0) {
        wq_gemm(*owned_->wq, ActType::kBf16, x, ldx, bias, y, ldy, out_type, m, stream);
      } else {
        LOWBIT_CHECK(ctx.scratch && ctx.scratch_elems >= n * kk,
                     "dequantization scratch of {} elements for a [{}, {}] weight",
                     ctx.scratch_elems, n, kk);
        wq_dequantize(*owned_->wq, ActType::kBf16, ctx.scratch, stream);
        ctx.gemm->linear(x, ldx, ctx.scratch, bias, y, ldy, out_type, m, n, kk, stream, true);
      }
      return;
    default:
      ctx.w8a8->fp8_linear(*owned_->fp8, x, ldx, bias, y, ldy, out_type, m, stream,
                           std::strcmp(name, "fp8_cublaslt") == 0);
      return;
  }
}

}  // namespace lowbit::kernels::cuda
