// membw: a STREAM-like main-memory bandwidth meter, used as the roofline for token generation
// (decode reads every weight once per token, so tg tok/s <= read_bandwidth / weight_bytes).
//
// Kernels (each timed best-of-N; GB = 1e9 bytes):
//   read : s += a[i] over a buffer of --mib MiB (default 1024)       bytes = size
//   copy : b[i] = a[i] between two such buffers                       bytes = 2 * size
//          (STREAM convention: the write-allocate read of b is not counted)
// Buffers are first-touched by the same OpenMP threads (static schedule) that later use them.
//
// Build: g++ -O3 -march=native -fopenmp -std=c++20 bench/membw.cpp -o build/bin/membw
//        (bench/run-cpu-bench.sh does this itself)
// Usage: membw [--threads N] [--mib M] [--reps R] [--json]
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct Options {
  int threads = 2;
  size_t mib = 1024;
  int reps = 7;
  bool json = false;
};

double NowSeconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

bool ParseInt(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int Usage(const char* why) {
  std::fprintf(stderr, "membw: %s\nusage: membw [--threads N] [--mib M] [--reps R] [--json]\n",
               why);
  return 2;
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

Buffer AllocAligned(size_t n) {
  // 2 MiB alignment lets the kernel back the buffer with huge pages where THP is enabled.
  size_t bytes = (n * sizeof(float) + (2u << 20) - 1) / (2u << 20) * (2u << 20);
  return Buffer(static_cast<float*>(std::aligned_alloc(2u << 20, bytes)));
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    long v = 0;
    if (a == "--json") {
      opt.json = true;
    } else if (i + 1 < argc && a == "--threads") {
      if (!ParseInt(argv[++i], 1, 1024, &v)) return Usage("--threads expects 1..1024");
      opt.threads = static_cast<int>(v);
    } else if (i + 1 < argc && a == "--mib") {
      if (!ParseInt(argv[++i], 1, 1 << 20, &v)) return Usage("--mib expects 1..1048576");
      opt.mib = static_cast<size_t>(v);
    } else if (i + 1 < argc && a == "--reps") {
      if (!ParseInt(argv[++i], 1, 1000, &v)) return Usage("--reps expects 1..1000");
      opt.reps = static_cast<int>(v);
    } else {
      return Usage(("unknown or incomplete argument '" + a + "'").c_str());
    }
  }
  omp_set_num_threads(opt.threads);

  const size_t n = opt.mib * (size_t{1} << 20) / sizeof(float);
  const double bytes = static_cast<double>(n) * sizeof(float);
  Buffer a = AllocAligned(n);
  Buffer b = AllocAligned(n);
  if (!a || !b) {
    std::fprintf(stderr, "membw: cannot allocate 2 x %zu MiB\n", opt.mib);
    return 1;
  }
  float* pa = a.get();
  float* pb = b.get();
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    pa[i] = static_cast<float>(i & 1023) * 0.001f;  // non-constant data, small magnitude
    pb[i] = 0.0f;
  }

  double best_read = 1e30, best_copy = 1e30;
  double checksum = 0.0;
  for (int r = 0; r < opt.reps; ++r) {
    double t0 = NowSeconds();
    float s = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; ++i) s += pa[i];
    double t1 = NowSeconds();
    checksum += s;  // keeps the reduction observable
    if (t1 - t0 < best_read) best_read = t1 - t0;

    t0 = NowSeconds();
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) pb[i] = pa[i];
    t1 = NowSeconds();
    if (t1 - t0 < best_copy) best_copy = t1 - t0;
    checksum += pb[(r * 7919u) % n];
  }

  const double read_gbps = bytes / best_read / 1e9;
  const double copy_gbps = 2.0 * bytes / best_copy / 1e9;
  if (opt.json) {
    std::printf(
        "{\"threads\":%d,\"buffer_mib\":%zu,\"reps\":%d,\"read_gbps\":%.3f,\"copy_gbps\":%.3f,"
        "\"checksum\":%.6g}\n",
        opt.threads, opt.mib, opt.reps, read_gbps, copy_gbps, checksum);
  } else {
    std::printf("membw: threads=%d buffer=%zu MiB best of %d\n", opt.threads, opt.mib, opt.reps);
    std::printf("read  %8.2f GB/s\n", read_gbps);
    std::printf("copy  %8.2f GB/s  (read+write, no write-allocate)\n", copy_gbps);
    std::printf("(checksum %.6g)\n", checksum);
  }
  return 0;
}
