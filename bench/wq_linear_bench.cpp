// wq_linear_bench: weight-only int4 / int8 / NF4 kernels (kernels/cpu/wq_linear.h) against the
// BF16 and Q4_0 paths of kernels::cpu::linear() on the linear-layer shapes of SmolLM2-135M and
// Llama-3.2-1B, at the SIMD level the process would use (active_isa()).
//
//   m = 1  (generation): weight copies are cycled (≥ 2 × --mib in total) so weights stream
//                        from DRAM; GB/s = packed weight bytes (codes + scales) per second.
//   m = 64 (prompt):     GFLOP/s = 2·m·n·k per second, one weight copy.
//   x bf16 / x q4_0:     time of BF16 / Q4_0 divided by the row's time (> 1 = faster).
// Formats: bf16 and q4_0 through linear() (q4_0 with int8 activations, its default), int4 with
// group 128 (64 where 128 does not divide k) and zero points (int8 activations, and "exact" = fp32
// activations), int8 per-channel symmetric (int8 activations), nf4 with group 64 (fp32
// activations).
//
// Build: CMake target wq_linear_bench. Usage:
//   wq_linear_bench [--threads 2] [--mib 128] [--secs 0.3] [--m 64]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/wq_linear.h"
#include "kernels/cpu/wq_linear_kernels.h"

namespace {

using lowbit::DType;
using namespace lowbit::kernels::cpu;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double best_time(double secs, F&& fn) {
  double best = 1e30, start = now();
  for (int rep = 0; rep < 3 || now() - start < secs; ++rep) {
    const double t0 = now();
    fn(rep);
    best = std::min(best, now() - t0);
  }
  return best;
}

// Raw GGUF-style weights (BF16 or Q4_0) with small realistic fp16 scales.
std::vector<uint8_t> block_weights(DType t, int64_t n, int64_t k, std::mt19937_64& rng) {
  const size_t bytes = *lowbit::dtype_bytes(t, uint64_t(n * k));
  std::vector<uint8_t> out(bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (t == DType::BF16) {
    for (int64_t i = 0; i < n * k; ++i) {
      const uint16_t h = lowbit::f32_to_bf16(0.02f * normal(rng));
      std::memcpy(&out[size_t(2 * i)], &h, 2);
    }
    return out;
  }
  for (auto& b : out) b = uint8_t(rng());
  for (size_t off = 0; off < bytes; off += lowbit::traits(t).block_bytes) {
    const uint16_t d = lowbit::f32_to_f16(0.01f * (1.0f + normal(rng) * 0.1f));
    std::memcpy(&out[off], &d, 2);
  }
  return out;
}

std::shared_ptr<const WqWeight> wq_weight(WqKind kind, int64_t n, int64_t k, int64_t group,
                                          bool zeros, std::mt19937_64& rng) {
  std::vector<uint8_t> codes(size_t(n * k));
  for (auto& c : codes) c = uint8_t(rng() % (kind == WqKind::kInt8 ? 256 : 16));
  std::vector<float> scales(size_t(n * k / group)), zs(scales.size());
  for (auto& s : scales) s = 0.01f * (1.0f + float(rng() % 100) / 100.0f);
  for (auto& z : zs) z = float(rng() % 16);
  WqSource src;
  src.kind = kind;
  src.n = n;
  src.k = k;
  src.group_size = group;
  src.codes = codes.data();
  src.scales = scales.data();
  src.zeros = zeros ? zs.data() : nullptr;
  return pack_wq_weight(src, "bench");
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t m_pp = 64;
  size_t mib = 128;
  double secs = 0.3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--mib")
      mib = size_t(std::atoll(v.c_str()));
    else if (a == "--secs")
      secs = std::atof(v.c_str());
    else if (a == "--m")
      m_pp = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (threads < 1 || mib < 1 || m_pp < 1) {
    std::fprintf(stderr, "bad options: --threads, --mib and --m must be >= 1\n");
    return 2;
  }
  omp_set_num_threads(threads);
  std::mt19937_64 rng(1);

  // Times fn(copy) for m = 1 over `copies` copies, or for m > 1 on copy 0.
  auto timed = [&](int64_t m, size_t copies, auto&& fn) {
    return best_time(secs, [&](int rep) { fn(m == 1 ? size_t(rep) % copies : 0); });
  };
  auto copies_for = [&](double bytes) {
    return std::max<size_t>(2, size_t(2.0 * double(mib) * (1 << 20) / bytes) + 1);
  };

  struct Shape {
    const char* model;
    const char* layer;
    int64_t n, k;
  };
  const Shape shapes[] = {
      {"SmolLM2-135M", "q_proj/o_proj", 576, 576}, {"SmolLM2-135M", "gate/up", 1536, 576},
      {"SmolLM2-135M", "down", 576, 1536},         {"Llama-3.2-1B", "q_proj/o_proj", 2048, 2048},
      {"Llama-3.2-1B", "gate/up", 8192, 2048},     {"Llama-3.2-1B", "down", 2048, 8192},
  };
  std::printf(
      "threads=%d  isa=%s  (GB/s: packed weight bytes per second; x bf16 / x q4_0: "
      "speed relative to those formats)\n",
      threads, isa_name(active_isa()));
  for (const Shape& s : shapes)
    for (int64_t m : {int64_t(1), m_pp}) {
      std::vector<float> x(size_t(m * s.k)), y(size_t(m * s.n));
      for (auto& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
      std::printf("\n%s %s  W=[%lld x %lld]  m=%lld\n", s.model, s.layer, (long long)s.n,
                  (long long)s.k, (long long)m);
      std::printf("  %-16s %9s %10s %9s %10s %8s %8s\n", "format", "KiB", "time us", "GB/s",
                  "GFLOP/s", "x bf16", "x q4_0");
      double t_bf16 = 0, t_q4_0 = 0;
      auto report = [&](const char* name, double bytes, double t) {
        std::printf("  %-16s %9.0f %10.1f %9.2f %10.1f %8.2f %8.2f\n", name, bytes / 1024, t * 1e6,
                    bytes / t / 1e9, 2.0 * double(m * s.n * s.k) / t / 1e9, t_bf16 / t,
                    t_q4_0 > 0 ? t_q4_0 / t : 0.0);
        std::fflush(stdout);
      };
      // kernels::cpu::linear formats.
      for (DType t : {DType::BF16, DType::Q4_0}) {
        const auto one = block_weights(t, s.n, s.k, rng);
        const size_t copies = m == 1 ? copies_for(double(one.size())) : 1;
        std::vector<std::vector<uint8_t>> ws(copies, one);
        const double sec = timed(m, copies, [&](size_t c) {
          linear(WeightMatrix{t, ws[c].data(), s.n, s.k}, x.data(), m, y.data());
        });
        if (t == DType::BF16) t_bf16 = sec;
        if (t == DType::Q4_0) t_q4_0 = sec;
        report(t == DType::BF16 ? "bf16" : "q4_0 (q8 act)", double(one.size()), sec);
      }
      // Weight-only formats.
      struct Wq {
        const char* name;
        WqKind kind;
        int64_t group;
        bool zeros, exact;
      };
      // Group 128 where it divides k (GPTQ/AWQ default), else 64 (k = 576).
      const int64_t g = s.k % 128 == 0 ? 128 : 64;
      const std::string gi4 = "int4 g" + std::to_string(g);
      const std::string q8 = gi4 + " (q8)", ex = gi4 + " exact";
      const Wq wqs[] = {{q8.c_str(), WqKind::kInt4, g, true, false},
                        {ex.c_str(), WqKind::kInt4, g, true, true},
                        {"int4 g32 (q8)", WqKind::kInt4, 32, true, false},
                        {"int8 chan (q8)", WqKind::kInt8, s.k, false, false},
                        {"nf4 g64", WqKind::kNf4, 64, false, true}};
      for (const Wq& f : wqs) {
        const auto one = wq_weight(f.kind, s.n, s.k, f.group, f.zeros, rng);
        const double bytes = double(wq_bytes(*one));
        const size_t copies = m == 1 ? copies_for(bytes) : 1;
        std::vector<std::shared_ptr<const WqWeight>> ws(copies);
        for (auto& w : ws) w = std::make_shared<WqWeight>(*one);
        const double sec = timed(m, copies, [&](size_t c) {
          wq_linear_isa(active_isa(), f.exact, *ws[c], x.data(), m, y.data());
        });
        report(f.name, bytes, sec);
      }
    }
  return 0;
}
