// q8_gemm_bench: the GEMM on repacked weights (q8_gemm.h) against the row-wise int8 kernels it
// replaces (linear_q8_isa / linear_kquant_isa), both at the AVX-512 level,
// in the same process on the same data. Times are CPU time of the process (on a shared machine
// other processes' load does not count, only cache / frequency interference does), best of
// repetitions lasting about --secs; both sides include the activation quantization.
//
// Usage: q8_gemm_bench [--threads 1] [--m 512] [--secs 0.5] [--dtype Q4_0] [--n N --k K]
// Shapes: SmolLM2-135M's (n, k) = (576, 576), (1536, 576), (576, 1536), or the one --n/--k
// give (e.g. --m 1 --n 32768 --k 16384: generation with weights larger than the L3 cache).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/kquant_dot.h"
#include "kernels/cpu/q8_activation.h"
#include "kernels/cpu/q8_gemm.h"

namespace {

using lowbit::DType;
using namespace lowbit::kernels::cpu;

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
double best_time(double secs, F&& fn) {
  double best = 1e30, start = cpu_now();
  for (int rep = 0; rep < 3 || cpu_now() - start < secs; ++rep) {
    const double t0 = cpu_now();
    fn();
    best = std::min(best, cpu_now() - t0);
  }
  return best;
}

// Random blocks with valid fp16 scales in [2^-8, 2).
std::vector<uint8_t> random_blocks(DType t, int64_t n, int64_t k, std::mt19937_64& rng) {
  const size_t bb = lowbit::traits(t).block_bytes;
  const size_t blocks = size_t(n * k / lowbit::traits(t).block_elems);
  std::vector<uint8_t> out(blocks * bb);
  for (auto& b : out) b = uint8_t(rng());
  std::uniform_real_distribution<float> u(0.004f, 2.0f);
  for (size_t b = 0; b < blocks; ++b) {
    const uint16_t d = lowbit::f32_to_f16(u(rng) / 64);
    std::memcpy(&out[b * bb + (t == DType::Q6_K ? 208 : 0)], &d, 2);
    if (t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K)
      std::memcpy(&out[b * bb + 2], &d, 2);  // m / dmin
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  int64_t m = 512;
  double secs = 0.5;
  std::string only;
  int64_t n_arg = 0, k_arg = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    if (a == "--m") m = std::atoll(argv[i + 1]);
    if (a == "--secs") secs = std::atof(argv[i + 1]);
    if (a == "--dtype") only = argv[i + 1];
    if (a == "--n") n_arg = std::atoll(argv[i + 1]);
    if (a == "--k") k_arg = std::atoll(argv[i + 1]);
  }
  if (!isa_supported(Isa::kAvx512)) {
    std::printf("no AVX-512 VNNI: nothing to compare\n");
    return 0;
  }
  omp_set_num_threads(threads);
  std::printf("threads=%d m=%lld, CPU ms per call (best), GOP/s = 2·m·n·k / time\n", threads,
              (long long)m);
  std::printf("%-7s %5s %5s %10s %10s %9s %9s %7s %9s\n", "dtype", "n", "k", "old ms", "new ms",
              "old GOP/s", "new GOP/s", "speedup", "pack MB/s");
  std::mt19937_64 rng(1);
  const DType types[] = {DType::Q4_0, DType::Q5_0,   DType::Q8_0, DType::IQ4_NL, DType::Q4_1,
                         DType::Q5_1, DType::IQ4_XS, DType::Q4_K, DType::Q5_K,   DType::Q6_K};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{576, 576}, {1536, 576}, {576, 1536}};
  if (n_arg > 0 && k_arg > 0) shapes = {{n_arg, k_arg}};
  for (DType t : types) {
    if (!only.empty() && only != lowbit::name(t)) continue;
    for (const auto& s : shapes) {
      const auto [n, k] = s;
      if (k % int64_t(lowbit::traits(t).block_elems) != 0) continue;  // K-quants: k = 1536
      const auto bytes = random_blocks(t, n, k, rng);
      const WeightMatrix w{t, bytes.data(), n, k};
      const double pack_t0 = cpu_now();
      const PackedGemmWeights packed = pack_gemm_weights(w);
      const double pack_s = cpu_now() - pack_t0;
      std::vector<float> x(size_t(m * k));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (auto& v : x) v = normal(rng);
      std::vector<float> y(size_t(m * n));
      const double old_s = best_time(secs, [&] {
        if (kquant_supports(t))
          linear_kquant_isa(Isa::kAvx512, w, x.data(), m, y.data());
        else
          linear_q8_isa(Isa::kAvx512, w, x.data(), m, y.data());
      });
      const double new_s =
          best_time(secs, [&] { linear_gemm_isa(Isa::kAvx512, packed, x.data(), m, y.data()); });
      const double ops = 2.0 * double(m) * double(n) * double(k);
      std::printf("%-7s %5lld %5lld %10.3f %10.3f %9.1f %9.1f %6.2fx %9.0f\n",
                  std::string(lowbit::name(t)).c_str(), (long long)n, (long long)k, old_s * 1e3,
                  new_s * 1e3, ops / old_s * 1e-9, ops / new_s * 1e-9, old_s / new_s,
                  double(bytes.size()) / pack_s * 1e-6);
    }
  }
  return 0;
}
