#include "kernels/gpu_kernel_registry.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace lowbit::kernels {
namespace {

using F = GpuWeightFormat;

// H100 SXM figures the cost rules are scaled by (only the ratios between kernels matter: the
// choice is the cheapest, never an absolute prediction). Bandwidth: a device-to-device copy
// measures ~3.0 TB/s; dense throughputs: what cuBLASLt sustains on large shapes.
constexpr double kBandwidth = 3.0e12;   // bytes / s
constexpr double kBf16Flops = 650e12;   // dense bf16 (of 989 peak)
constexpr double kFp8Flops = 1250e12;   // dense fp8 e4m3 (of 1979 peak)
constexpr double kInt8Flops = 1100e12;  // dense int8 (of 1979 peak)
constexpr double kLaunchUs = 3.0;       // one kernel launch + tail

double us(double seconds) { return seconds * 1e6; }

double roofline_us(double bytes, double bw_efficiency, double flops, double throughput) {
  return std::max(us(bytes / (kBandwidth * bw_efficiency)), us(flops / throughput));
}

double weight_bits(const GpuLinearShape& s) {
  switch (s.format) {
    case F::kBf16:
      return 16;
    case F::kW4A16:
      return 4;
    case F::kW8A16:
    case F::kFp8PerTensor:
    case F::kFp8Rowwise:
    case F::kFp8Block:
    case F::kInt8W8A8:
      return 8;
  }
  return 16;
}

// Bytes of scales (+ zeros) a weight-only kernel reads: bf16 per group and row, ×2 with zeros
// (counted always: an upper bound that changes no choice).
double group_bytes(const GpuLinearShape& s) {
  const int64_t g = s.group_size > 0 ? s.group_size : s.k;
  return double(s.n) * double((s.k + g - 1) / g) * 4.0;
}

double bf16_cublaslt_us(const GpuLinearShape& s, int64_t m) {
  const double bytes = double(s.n) * double(s.k) * 2 + double(m) * double(s.k + s.n) * 2;
  // Small-m cuBLASLt runs at ~80% of the bandwidth (split-k tails).
  return roofline_us(bytes, 0.8, 2.0 * double(m) * double(s.n) * double(s.k), kBf16Flops) +
         kLaunchUs + 1.0;
}

double bf16_gemv_us(const GpuLinearShape& s, int64_t m) {
  const double bytes = double(s.n) * double(s.k) * 2 + double(m) * double(s.k + s.n) * 2;
  return us(bytes / (kBandwidth * 0.9)) + kLaunchUs;
}

// Weight-only tensor-core kernel (dequantization in registers): one pass per 64 rows of x, each
// reading the (small) weight; at large m its tensor-core throughput is lower than cuBLASLt's
// (dequantization competes with the MMAs), counted as 60% of the dense bf16 rate. Above the
// kernel's measured crossover (wq_fast_max_m) it is only a fallback: cost ×1000.
double wq_gemm_us(const GpuLinearShape& s, int64_t m) {
  const double passes = double((m + 63) / 64);
  const double bytes = passes * (double(s.n) * double(s.k) * weight_bits(s) / 8 + group_bytes(s)) +
                       double(m) * double(s.k + s.n) * 2;
  const double t =
      roofline_us(bytes, 0.85, 2.0 * double(m) * double(s.n) * double(s.k), 0.6 * kBf16Flops) +
      kLaunchUs;
  return s.wq_fast_max_m > 0 && m > s.wq_fast_max_m ? t * 1000 : t;
}

// Decode GEMV on the same packed weight (m <= kWqGemvRows): one pass over the codes straight
// to registers (wq_gemv.cu, int4 at m <= 2 the stream-K kernel of wq_gemv_streamk.cu; see
// use_streamk_gemv in wq_gemm.cu). H100 (bench/gpu_wq_gemm_notes.md): W8A16 at 87–98% of the
// copy rate on the large 8B shapes; the int4 8B decode 324 tok/s at batch 1 and 605 at batch 2
// against 282 / 563 with wq_gemm. W4A16 at m = 3..8 runs the per-group kernel, slower than
// wq_gemm end to end in earlier runs (batch 8 with stream-K: 1582 against 1821 tok/s). So:
// counted at 0.9 against wq_gemm's 0.85 for W8A16 and for W4A16 up to m = 2, at 0.8 above.
double wq_gemv_us(const GpuLinearShape& s, int64_t m) {
  const double bytes = double(s.n) * double(s.k) * weight_bits(s) / 8 + group_bytes(s) +
                       double(m) * double(s.k + s.n) * 2;
  const double efficiency = s.format == F::kW4A16 && m > 2 ? 0.8 : 0.9;
  return us(bytes / (kBandwidth * efficiency)) + kLaunchUs;
}

// Dequantize the whole weight into a bf16 scratch, then cuBLASLt: the dense GEMM plus one pass
// reading the codes and writing n·k bf16.
double wq_dequant_us(const GpuLinearShape& s, int64_t m) {
  const double dequant_bytes =
      double(s.n) * double(s.k) * (weight_bits(s) / 8 + 2) + group_bytes(s);
  GpuLinearShape dense = s;
  dense.format = F::kBf16;
  return us(dequant_bytes / (kBandwidth * 0.85)) + kLaunchUs + bf16_cublaslt_us(dense, m);
}

// W8A8 (FP8 / INT8): a fused activation-quantization pass (read bf16, write 8-bit + scales),
// then an 8-bit GEMM with a dequantizing epilogue.
double w8a8_us(const GpuLinearShape& s, int64_t m, double throughput) {
  const double act_quant = us(double(m) * double(s.k) * 3 / (kBandwidth * 0.7)) + kLaunchUs;
  const double bytes = double(s.n) * double(s.k) + double(m) * double(s.k) +
                       double(m) * double(s.n) * 2 + double(s.n) * 4;
  return act_quant +
         roofline_us(bytes, 0.8, 2.0 * double(m) * double(s.n) * double(s.k), throughput) +
         kLaunchUs;
}

// GEMV over an 8-bit weight (bf16 activations): bandwidth-bound.
double w8_gemv_us(const GpuLinearShape& s, int64_t m) {
  const double bytes =
      double(s.n) * double(s.k) + double(s.n) * 4 + double(m) * double(s.k + s.n) * 2;
  return us(bytes / (kBandwidth * 0.85)) + kLaunchUs;
}

std::vector<GpuKernelInfo> make_kernels() {
  std::vector<GpuKernelInfo> k;
  // bf16: the same two paths as GemmRunner::linear.
  k.push_back({"bf16_gemv", {F::kBf16}, 1, kBf16GemvRows, 80, bf16_gemv_us});
  k.push_back({"bf16_cublaslt", {F::kBf16}, 1, INT64_MAX, 80, bf16_cublaslt_us});
  k.push_back({"wq_gemv", {F::kW4A16, F::kW8A16}, 1, kWqGemvRows, 80, wq_gemv_us});
  k.push_back({"wq_gemm", {F::kW4A16, F::kW8A16}, 1, INT64_MAX, 80, wq_gemm_us});
  k.push_back({"wq_dequant_cublaslt", {F::kW4A16, F::kW8A16}, 1, INT64_MAX, 80, wq_dequant_us});
  // W8A8 (kernels/cuda/gemm/w8a8_gemm.h): a GEMV reading the 8-bit weight with bf16
  // activations for the smallest m, else the fused activation quantization + cuBLASLt (fp8
  // tensor cores: sm_89+). Without them, fp8 runs weight-only: the GEMV 8 rows per weight pass
  // up to m = 16, dequantize + bf16 GEMM above (fp8_weight_only; only offered below sm_89).
  const std::vector<F> fp8 = {F::kFp8PerTensor, F::kFp8Rowwise, F::kFp8Block};
  k.push_back({"fp8_gemv", fp8, 1, kW8GemvRows, 80, w8_gemv_us});
  k.push_back({"fp8_cublaslt", fp8, 1, INT64_MAX, 89,
               [](const GpuLinearShape& s, int64_t m) { return w8a8_us(s, m, kFp8Flops); }});
  k.push_back({"fp8_weight_only", fp8, 1, INT64_MAX, 80,
               [](const GpuLinearShape& s, int64_t m) {
                 return m <= 16 ? double((m + 7) / 8) * w8_gemv_us(s, 8) : wq_dequant_us(s, m);
               },
               88});
  k.push_back({"int8_gemv", {F::kInt8W8A8}, 1, kW8GemvRows, 80, w8_gemv_us});
  k.push_back(
      {"int8_cublaslt", {F::kInt8W8A8}, 1, INT64_MAX, 80, [](const GpuLinearShape& s, int64_t m) {
         return w8a8_us(s, m, kInt8Flops);
       }});
  return k;
}

std::string known_names() {
  std::string out;
  for (const auto& k : gpu_linear_kernels()) out += (out.empty() ? "" : ", ") + std::string(k.name);
  return out;
}

}  // namespace

const char* gpu_weight_format_name(GpuWeightFormat f) {
  switch (f) {
    case F::kBf16:
      return "bf16";
    case F::kW4A16:
      return "w4a16";
    case F::kW8A16:
      return "w8a16";
    case F::kFp8PerTensor:
      return "fp8_per_tensor";
    case F::kFp8Rowwise:
      return "fp8_rowwise";
    case F::kFp8Block:
      return "fp8_block128";
    case F::kInt8W8A8:
      return "int8_w8a8";
  }
  return "?";
}

const std::vector<GpuKernelInfo>& gpu_linear_kernels() {
  static const std::vector<GpuKernelInfo> kernels = make_kernels();
  return kernels;
}

std::vector<std::string> parse_disabled_kernels(const std::string& value) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    const auto& all = gpu_linear_kernels();
    if (std::none_of(all.begin(), all.end(), [&](const GpuKernelInfo& k) { return cur == k.name; }))
      fail("LOWBIT_DISABLE_KERNELS names '{}', which is not a GPU kernel; known: {}", cur,
           known_names());
    out.push_back(cur);
    cur.clear();
  };
  for (char c : value) {
    if (c == ',') {
      flush();
    } else if (c != ' ' && c != '\t') {
      cur += c;
    }
  }
  flush();
  return out;
}

std::vector<std::string> disabled_kernels_from_env() {
  const char* v = std::getenv("LOWBIT_DISABLE_KERNELS");
  return v ? parse_disabled_kernels(v) : std::vector<std::string>{};
}

GpuKernelPlan GpuKernelPlan::make(
    const GpuLinearShape& shape, const std::vector<std::string>& disabled,
    const std::function<std::string(const GpuKernelInfo&)>& shape_reason) {
  GpuKernelPlan p;
  p.shape_ = shape;
  for (const GpuKernelInfo& k : gpu_linear_kernels()) {
    if (std::find(k.formats.begin(), k.formats.end(), shape.format) == k.formats.end()) continue;
    std::string why;
    if (shape.capability < k.min_capability) {
      why = fmt::format("needs compute capability {}.{}, the GPU has {}.{}", k.min_capability / 10,
                        k.min_capability % 10, shape.capability / 10, shape.capability % 10);
    } else if (shape.capability > k.max_capability) {
      why = fmt::format("only offered up to compute capability {}.{} (a fallback for older GPUs)",
                        k.max_capability / 10, k.max_capability % 10);
    } else if (std::find(disabled.begin(), disabled.end(), k.name) != disabled.end()) {
      why = "disabled by LOWBIT_DISABLE_KERNELS";
    } else if (shape_reason) {
      why = shape_reason(k);
      if (!why.empty()) p.shape_refusals_.emplace_back(k.name, why);
    }
    if (why.empty()) {
      p.usable_.push_back(&k);
    } else {
      p.refusals_.emplace_back(k.name, why);
    }
  }
  return p;
}

const GpuKernelInfo* GpuKernelPlan::choose(int64_t m) const {
  const GpuKernelInfo* best = nullptr;
  double best_cost = 0;
  for (const GpuKernelInfo* k : usable_) {
    if (m < k->min_m || m > k->max_m) continue;
    const double c = k->cost_us(shape_, m);
    if (!best || c < best_cost) {
      best = k;
      best_cost = c;
    }
  }
  return best;
}

std::string GpuKernelPlan::reasons() const {
  std::string out;
  for (const auto& [name, why] : refusals_) out += (out.empty() ? "" : "; ") + name + ": " + why;
  if (out.empty()) out = "no kernel serves " + std::string(gpu_weight_format_name(shape_.format));
  return out;
}

}  // namespace lowbit::kernels
