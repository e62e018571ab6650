// Reads the CSV that the torch baseline scripts (bench/gpu_quant_gemm_baseline.py,
// bench/gpu_w8a8_baseline.py) write in the same device call as the GPU GEMM benchmarks:
// lines "op,k,n,m,us" (a header line "op,..." and malformed lines are skipped).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

#include "core/error.h"

namespace lowbit::bench {

// (op, k, n, m) -> microseconds per call.
using TorchBaseline = std::map<std::tuple<std::string, int64_t, int64_t, int64_t>, double>;

inline TorchBaseline read_torch_baseline(const std::string& path) {
  TorchBaseline out;
  std::ifstream f(path);
  if (!f) fail("--baseline {}: cannot open", path);
  std::string line;
  while (std::getline(f, line)) {
    std::stringstream ss(line);
    std::string op, ks, ns, ms, us;
    if (!std::getline(ss, op, ',') || !std::getline(ss, ks, ',') || !std::getline(ss, ns, ',') ||
        !std::getline(ss, ms, ',') || !std::getline(ss, us, ','))
      continue;
    if (op == "op") continue;
    try {
      out[{op, std::stoll(ks), std::stoll(ns), std::stoll(ms)}] = std::stod(us);
    } catch (const std::exception&) {  // a number that does not parse: skip the line
    }
  }
  return out;
}

}  // namespace lowbit::bench
