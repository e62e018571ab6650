// W8A8 linear layers (FP8 per-tensor / rowwise / block128, INT8) against bf16 on the
// Llama-3-8B and -70B layer shapes, on one GPU. Each time is the median over CUDA-event-timed
// batches of 10 back-to-back calls (activation quantization included), with the weights
// rotated over enough copies to exceed the 50 MB L2 several times; random data from
// fill_uniform.
//
// Bounds measured in the same run: memory bandwidth (device-to-device copy) and the peak rate
// of each arithmetic (the best of large square GEMMs: cuBLASLt bf16 / fp8 / int8). A row's
// bound is max(bytes / bandwidth, flops / peak) with bytes = weight + x (bf16) + y (bf16).
//
// With --baseline FILE (CSV "op,k,n,m,us" from bench/gpu_w8a8_baseline.py in the same device
// call), ratios are against torch.matmul bf16 (cuBLAS) and torch's _scaled_mm / _int_mm.
//
//   gpu_w8a8_bench [--quick] [--baseline torch.csv] [--reps 7]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "kernels/cuda/ops/elementwise.h"
#include "torch_baseline_csv.h"

using namespace lowbit;
namespace kc = lowbit::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

constexpr double kRotateBytes = 256e6;  // weights rotated over >= 5× the 50 MB L2

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    LOWBIT_CUDA_CHECK(cudaEventCreate(&a));
    LOWBIT_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // µs per call: median over `trials` event-timed batches of `batch` back-to-back calls fn(i)
  // (i counts on, so callers rotate weights), after 3 warm-up calls. Batches keep launch gaps
  // out of the numbers, as a CUDA graph would.
  template <typename F>
  double median_us(int trials, F&& fn, int batch = 10) {
    for (int i = 0; i < 3; ++i) fn(i);
    int next = 3;
    std::vector<double> t;
    for (int r = 0; r < trials; ++r) {
      LOWBIT_CUDA_CHECK(cudaEventRecord(a));
      for (int i = 0; i < batch; ++i) fn(next++);
      LOWBIT_CUDA_CHECK(cudaEventRecord(b));
      LOWBIT_CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms * 1e3 / batch);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

double copy_bandwidth(Timer& timer) {
  const size_t bytes = size_t(1) << 30;
  kc::DeviceBuffer a(bytes, "bandwidth test"), b(bytes, "bandwidth test");
  kc::fill_uniform(a.get<bf16>(), int64_t(bytes / 2), 1, 1.0f, nullptr);
  const double us = timer.median_us(10, [&](int) {
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  });
  return 2.0 * double(bytes) / (us * 1e-6);
}

struct Shape {
  int64_t k, n;
};

}  // namespace

int main(int argc, char** argv) try {
  bool quick = false;
  int reps = 7;  // timed batches of 10 calls
  std::string baseline_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--baseline") && i + 1 < argc)
      baseline_path = argv[++i];
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else
      fail("unknown argument {} (use --quick, --baseline FILE, --reps N)", argv[i]);
  }
  std::vector<Shape> shapes = {{4096, 6144},  {4096, 4096}, {4096, 28672}, {14336, 4096},
                               {8192, 10240}, {8192, 8192}, {8192, 57344}, {28672, 8192}};
  std::vector<int64_t> ms = {1, 4, 16, 32, 64, 128, 256, 1024, 4096};
  if (quick) {
    shapes = {{4096, 6144}, {14336, 4096}, {8192, 57344}};
    ms = {1, 4, 16, 128, 1024, 4096};
    reps = std::min(reps, 5);
  }
  bench::TorchBaseline base;
  if (!baseline_path.empty()) base = bench::read_torch_baseline(baseline_path);

  Timer timer;
  kc::GemmRunner bf16_gemm;
  kc::W8A8Runner runner;
  const int64_t max_m = *std::max_element(ms.begin(), ms.end());
  int64_t max_k = 0, max_n = 0;
  for (auto s : shapes) max_k = std::max(max_k, s.k), max_n = std::max(max_n, s.n);
  runner.reserve(max_m, max_k, max_n);

  const double bw = copy_bandwidth(timer);
  // Peak rates: the best of square GEMMs of 8192 (bf16 by cuBLASLt, fp8 per-tensor, int8).
  double peak_bf16 = 0, peak_fp8 = 0, peak_int8 = 0;
  {
    const int64_t s = 8192;
    kc::DeviceBuffer w(size_t(s * s) * 2, "peak w"), x(size_t(s * s) * 2, "peak x"),
        y(size_t(s * s) * 2, "peak y");
    kc::fill_uniform(w.get<bf16>(), s * s, 2, 1.0f, nullptr);
    kc::fill_uniform(x.get<bf16>(), s * s, 3, 1.0f, nullptr);
    const double flops = 2.0 * s * s * s;
    peak_bf16 = flops / (timer.median_us(5, [&](int) {
                  bf16_gemm.linear(x.get<bf16>(), s, w.get<bf16>(), nullptr, y.get(), s,
                                   kc::OutType::kBf16, s, s, s, nullptr);
                }) * 1e-6);
    auto wf = kc::fp8_quantize_weight(w.get<bf16>(), s, s, kc::Fp8Scaling::kPerTensor, nullptr);
    peak_fp8 = flops / (timer.median_us(5, [&](int) {
                 runner.fp8_linear(*wf, x.get<bf16>(), s, nullptr, y.get(), s, kc::OutType::kBf16,
                                   s, nullptr);
               }) * 1e-6);
    auto wi = kc::int8_quantize_weight(w.get<bf16>(), s, s, nullptr);
    peak_int8 = flops / (timer.median_us(5, [&](int) {
                  runner.int8_linear(*wi, x.get<bf16>(), s, nullptr, y.get(), s, kc::OutType::kBf16,
                                     s, nullptr);
                }) * 1e-6);
  }
  std::printf(
      "measured: copy bandwidth %.0f GB/s; 8192^3 GEMM: bf16 %.0f, fp8 %.0f, int8 %.0f "
      "TFLOP/s (lowbit, incl. activation quantization)\n",
      bw / 1e9, peak_bf16 / 1e12, peak_fp8 / 1e12, peak_int8 / 1e12);

  const char* variants[] = {"bf16", "fp8-tensor", "fp8-row", "fp8-block", "int8"};
  std::printf("\n%-6s %-6s %-5s %-10s %9s %8s %8s %9s %9s %7s  %s\n", "k", "n", "m", "kernel", "us",
              "%bound", "vs_bf16", "torch_us", "vs_torch", "path", "");
  std::vector<std::string> summary;
  for (auto [k, n] : shapes) {
    kc::DeviceBuffer src(size_t(n * k) * 2, "bf16 weight");
    kc::fill_uniform(src.get<bf16>(), n * k, 10 + uint64_t(n), 0.05f, nullptr);
    kc::DeviceBuffer xbuf(size_t(max_m * k) * 2, "x");
    kc::fill_uniform(xbuf.get<bf16>(), max_m * k, 5, 1.0f, nullptr);
    kc::DeviceBuffer ybuf(size_t(max_m * n) * 4, "y");
    const int rot8 = int(std::max(1.0, std::ceil(kRotateBytes / double(n * k))));
    const int rot16 = int(std::max(1.0, std::ceil(kRotateBytes / double(n * k * 2))));
    std::vector<kc::DeviceBuffer> w16;
    for (int r = 0; r < rot16; ++r) {
      w16.emplace_back(size_t(n * k) * 2, "bf16 weight copy");
      LOWBIT_CUDA_CHECK(
          cudaMemcpy(w16.back().get(), src.get(), size_t(n * k) * 2, cudaMemcpyDeviceToDevice));
    }
    std::vector<std::unique_ptr<kc::Fp8GpuWeight>> wt, wr, wb;
    std::vector<std::unique_ptr<kc::Int8GpuWeight>> wi;
    for (int r = 0; r < rot8; ++r) {
      wt.push_back(
          kc::fp8_quantize_weight(src.get<bf16>(), n, k, kc::Fp8Scaling::kPerTensor, nullptr));
      wr.push_back(
          kc::fp8_quantize_weight(src.get<bf16>(), n, k, kc::Fp8Scaling::kRowwise, nullptr));
      wb.push_back(
          kc::fp8_quantize_weight(src.get<bf16>(), n, k, kc::Fp8Scaling::kBlock128, nullptr));
      wi.push_back(kc::int8_quantize_weight(src.get<bf16>(), n, k, nullptr));
    }
    for (int64_t m : ms) {
      double bf16_us = 0;
      const double flops = 2.0 * double(m) * n * k;
      for (int v = 0; v < 5; ++v) {
        std::string path = "cublaslt";
        const bf16* x = xbuf.get<bf16>();
        void* y = ybuf.get();
        double us = 0;
        try {
          us = timer.median_us(reps, [&](int i) {
            switch (v) {
              case 0:
                bf16_gemm.linear(x, k, w16[size_t(i % rot16)].get<bf16>(), nullptr, y, n,
                                 kc::OutType::kBf16, m, n, k, nullptr);
                break;
              case 1:
                runner.fp8_linear(*wt[size_t(i % rot8)], x, k, nullptr, y, n, kc::OutType::kBf16, m,
                                  nullptr);
                break;
              case 2:
                runner.fp8_linear(*wr[size_t(i % rot8)], x, k, nullptr, y, n, kc::OutType::kBf16, m,
                                  nullptr);
                break;
              case 3:
                runner.fp8_linear(*wb[size_t(i % rot8)], x, k, nullptr, y, n, kc::OutType::kBf16, m,
                                  nullptr);
                break;
              case 4:
                runner.int8_linear(*wi[size_t(i % rot8)], x, k, nullptr, y, n, kc::OutType::kBf16,
                                   m, nullptr);
                break;
            }
          });
        } catch (const std::exception& e) {
          std::printf("%-6lld %-6lld %-5lld %-10s failed: %s\n", (long long)k, (long long)n,
                      (long long)m, variants[v], e.what());
          continue;
        }
        if (v > 0) path = runner.last_path();
        if (v == 0) {
          bf16_us = us;
          path = m <= kc::kGemvMaxRows ? "gemv" : "cublaslt";
        }
        const double wbytes = double(n * k) * (v == 0 ? 2 : 1);
        const double bytes = wbytes + double(m * k) * 2 + double(m * n) * 2;
        const double peak = v == 0 ? peak_bf16 : v == 4 ? peak_int8 : peak_fp8;
        const double bound_us = std::max(bytes / bw, flops / peak) * 1e6;
        // torch reference for this row: bf16 matmul for every variant, plus the matching
        // torch 8-bit op.
        const char* torch_op = v == 0   ? "bf16"
                               : v == 1 ? "scaled_mm_tensor"
                               : v == 2 ? "scaled_mm_row"
                               : v == 4 ? "int_mm"
                                        : "";
        double torch_bf16 = 0, torch_same = 0;
        if (auto it = base.find({"bf16", k, n, m}); it != base.end()) torch_bf16 = it->second;
        if (auto it = base.find({torch_op, k, n, m}); it != base.end()) torch_same = it->second;
        const double ref = torch_bf16 > 0 ? torch_bf16 : bf16_us;
        char vs_torch[32] = "-";
        if (torch_same > 0) std::snprintf(vs_torch, sizeof vs_torch, "%.2fx", torch_same / us);
        char torch_col[32] = "-";
        if (torch_same > 0) std::snprintf(torch_col, sizeof torch_col, "%.1f", torch_same);
        std::printf("%-6lld %-6lld %-5lld %-10s %9.1f %7.0f%% %7.2fx %9s %9s  %s\n", (long long)k,
                    (long long)n, (long long)m, variants[v], us, 100.0 * bound_us / us, ref / us,
                    torch_col, vs_torch, path.c_str());
        if (v == 1 || v == 2 || v == 3) {
          char line[160];
          std::snprintf(line, sizeof line, "%s k=%lld n=%lld m=%lld: %.2fx bf16%s", variants[v],
                        (long long)k, (long long)n, (long long)m, ref / us,
                        torch_bf16 > 0 ? " (torch)" : " (lowbit bf16)");
          if ((m == 1 && ref / us < 1.8) || (m >= 1024 && ref / us < 1.7))
            summary.push_back(std::string("BELOW TARGET: ") + line);
        }
      }
    }
    std::fflush(stdout);
  }
  std::printf("\nFP8 targets (>= 1.8x bf16 at m=1, >= 1.7x at m>=1024): %zu rows below\n",
              summary.size());
  for (auto& s : summary) std::printf("  %s\n", s.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_w8a8_bench: %s\n", e.what());
  return 1;
}
