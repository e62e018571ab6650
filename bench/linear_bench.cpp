// linear_bench: weight-streaming speed of kernels::cpu::linear() per format and SIMD level,
// printed next to a STREAM-like read/copy bandwidth measured in the same process (the
// roofline for token generation: every weight byte is read once per token).
//
//   m = 1  (generation):        GB/s of weight bytes streamed, and the ratio to `read` GB/s.
//                               The matrix is replicated into enough copies (≥ 2 × --mib) and
//                               the copies are cycled, so weights come from DRAM, not L3.
//   m = 64 (prompt processing): GFLOP/s (2·m·n·k per call).
//   q8 columns: the same for linear_q8_isa() (int8 activations, q8_activation.h); 0 where the
//               format has no int8-activation kernel.
//
// Build (CMake target linear_bench), or by hand from a configured build dir:
//   g++ -O3 -march=native -std=c++20 -fopenmp -Isrc bench/linear_bench.cpp \
//       build-x/liblowbit_core.a -lfmt -o linear_bench
// (-march=native only for the bandwidth loops here, as bench/membw.cpp; the kernels pick
// their SIMD level at run time either way.)
// Usage: linear_bench [--threads N] [--n 2048] [--k 8192] [--m 64] [--mib 256] [--secs 0.5]
//                     [--isa scalar|avx2|avx512] [--dtype Q4_0]   (defaults: all levels/types)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/q8_activation.h"

namespace {

using lowbit::DType;
using namespace lowbit::kernels::cpu;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best time of `fn` over repetitions lasting about `secs` in total (at least 3 runs).
template <class F>
double best_time(double secs, F&& fn) {
  double best = 1e30, start = now();
  for (int rep = 0; rep < 3 || now() - start < secs; ++rep) {
    double t0 = now();
    fn(rep);
    best = std::min(best, now() - t0);
  }
  return best;
}

struct Stream {
  double read_gbs, copy_gbs;
};

Stream stream_bandwidth(size_t mib, double secs) {
  const size_t n = mib * (1u << 20) / sizeof(float);
  float* a = static_cast<float*>(std::aligned_alloc(64, n * 4));
  float* b = static_cast<float*>(std::aligned_alloc(64, n * 4));
  // First touch by the same static split of threads that reads it (NUMA placement).
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = float(i & 1023), b[i] = 0.0f;
  volatile float sink = 0;
  double tr = best_time(secs, [&](int) {
    float s = 0;
#pragma omp parallel reduction(+ : s)
    {
      // 32 independent partial sums per thread: the add latency chain must not be the limit.
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
      const size_t lo = n / 32 * t / nt * 32, hi = n / 32 * (t + 1) / nt * 32;
      // Four concurrent streams per thread, like the kernel's four weight rows.
      const size_t q = (hi - lo) / 4 / 32 * 32;
      float part[4][32] = {};
      for (size_t i = 0; i < q; i += 32)
        for (int s4 = 0; s4 < 4; ++s4)
          for (int j = 0; j < 32; ++j) part[s4][j] += a[lo + size_t(s4) * q + i + size_t(j)];
      for (size_t i = lo + 4 * q; i < hi; ++i) part[0][0] += a[i];
      for (auto& row : part)
        for (float p : row) s += p;
    }
    sink = s;
  });
  double tc = best_time(secs, [&](int) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) b[i] = a[i];
  });
  (void)sink;
  std::free(a);
  std::free(b);
  return {double(n) * 4 / tr / 1e9, 2.0 * double(n) * 4 / tc / 1e9};
}

std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t k, std::mt19937_64& rng) {
  const size_t bytes = *lowbit::dtype_bytes(t, uint64_t(n * k));
  std::vector<uint8_t> out(bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    for (int64_t i = 0; i < n * k; ++i) {
      float v = normal(rng);
      if (t == DType::F32) std::memcpy(&out[size_t(4 * i)], &v, 4);
      uint16_t h = t == DType::F16 ? lowbit::f32_to_f16(v) : lowbit::f32_to_bf16(v);
      if (t != DType::F32) std::memcpy(&out[size_t(2 * i)], &h, 2);
    }
    return out;
  }
  for (auto& b : out) b = uint8_t(rng());
  const auto& tr = lowbit::traits(t);
  for (size_t off = 0; off < bytes; off += tr.block_bytes) {
    uint16_t d = lowbit::f32_to_f16(0.01f * (1.0f + normal(rng) * 0.1f));
    std::memcpy(&out[off], &d, 2);
    if (t == DType::Q4_1 || t == DType::Q5_1) std::memcpy(&out[off + 2], &d, 2);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t n = 2048, k = 8192, m_pp = 64;
  size_t mib = 256;
  double secs = 0.5;
  std::string only_isa, only_dtype;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--n")
      n = std::atoll(v.c_str());
    else if (a == "--k")
      k = std::atoll(v.c_str());
    else if (a == "--m")
      m_pp = std::atoll(v.c_str());
    else if (a == "--mib")
      mib = size_t(std::atoll(v.c_str()));
    else if (a == "--secs")
      secs = std::atof(v.c_str());
    else if (a == "--isa")
      only_isa = v;
    else if (a == "--dtype")
      only_dtype = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (threads < 1 || n < 1 || k < 32 || k % 32 || m_pp < 1 || mib < 1) {
    std::fprintf(stderr, "bad sizes: need threads, n, m, mib >= 1 and k a multiple of 32\n");
    return 2;
  }
  omp_set_num_threads(threads);
  Stream st = stream_bandwidth(mib, secs);
  std::printf("threads=%d  W=[%lld x %lld]  max isa=%s\n", threads, (long long)n, (long long)k,
              isa_name(max_isa()));
  std::printf("stream: read %.2f GB/s, copy %.2f GB/s (%zu MiB buffers)\n\n", st.read_gbs,
              st.copy_gbs, mib);
  std::printf("%-6s %-7s %10s %10s %8s %12s %10s %8s %12s\n", "dtype", "isa", "MiB", "m=1 GB/s",
              "/read", "m=64 GFLOP/s", "q8 GB/s", "/read", "q8 GFLOP/s");

  std::mt19937_64 rng(1);
  std::vector<float> x(size_t(m_pp * k)), y(size_t(m_pp * n));
  for (auto& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                  DType::Q5_0, DType::Q5_1}) {
    if (!only_dtype.empty() && only_dtype != lowbit::name(t)) continue;
    const auto one = random_weights(t, n, k, rng);
    const size_t copies = std::max<size_t>(2, 2 * mib * (1u << 20) / one.size() + 1);
    std::vector<std::vector<uint8_t>> ws(copies, one);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (!isa_supported(isa) || (!only_isa.empty() && only_isa != isa_name(isa))) continue;
      auto mat = [&](int rep) { return WeightMatrix{t, ws[size_t(rep) % copies].data(), n, k}; };
      const double t1 = best_time(isa == Isa::kScalar ? secs / 4 : secs, [&](int rep) {
        linear_isa(isa, mat(rep), x.data(), 1, y.data());
      });
      const double gbs = double(one.size()) / t1 / 1e9;
      const double tpp = best_time(isa == Isa::kScalar ? 0 : secs, [&](int rep) {
        linear_isa(isa, mat(0), x.data(), m_pp, y.data());
      });
      const double gflops = 2.0 * double(m_pp) * double(n) * double(k) / tpp / 1e9;
      // q8 columns: the int8-activation path (activation quantization included in the time).
      double qgbs = 0, qgflops = 0;
      if (q8_activation_supports(t)) {
        const double q1 = best_time(isa == Isa::kScalar ? secs / 4 : secs, [&](int rep) {
          linear_q8_isa(isa, mat(rep), x.data(), 1, y.data());
        });
        qgbs = double(one.size()) / q1 / 1e9;
        const double qpp = best_time(isa == Isa::kScalar ? 0 : secs, [&](int rep) {
          linear_q8_isa(isa, mat(0), x.data(), m_pp, y.data());
        });
        qgflops = 2.0 * double(m_pp) * double(n) * double(k) / qpp / 1e9;
      }
      std::printf("%-6s %-7s %10.1f %10.2f %8.2f %12.1f %10.2f %8.2f %12.1f\n",
                  std::string(lowbit::name(t)).c_str(), isa_name(isa),
                  double(one.size()) / (1 << 20), gbs, gbs / st.read_gbs, gflops, qgbs,
                  qgbs / st.read_gbs, qgflops);
      std::fflush(stdout);
    }
  }
  return 0;
}
