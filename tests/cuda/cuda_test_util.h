// Helpers for GPU tests: random host data, upload/download, bf16 rounding, error norms.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "engine/gpu_device.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"

namespace lowbit::test {

namespace kc = kernels::cuda;

#define LOWBIT_REQUIRE_GPU()                                                \
  do {                                                                      \
    if (::lowbit::engine::cuda_devices().empty()) GTEST_SKIP() << "no GPU"; \
  } while (0)

// stories260K's HF checkpoint: $LOWBIT_STORIES260K_HF (scripts/gpu-check carries a copy to the
// GPU machine, where ../shared does not travel), else ../shared.
inline std::string stories_dir() {
  if (const char* env = std::getenv("LOWBIT_STORIES260K_HF")) return env;
  return std::string(LOWBIT_SOURCE_DIR) + "/../shared/models/stories260K/hf";
}

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// Rounds every value to bf16 (what the GPU sees after upload).
inline std::vector<float> round_bf16(const std::vector<float>& v) { return from_bf16(to_bf16(v)); }

template <typename T>
kc::DeviceBuffer upload(const std::vector<T>& v) {
  kc::DeviceBuffer b(v.size() * sizeof(T), "test data");
  kc::copy_to_device(b.get(), v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> download(const kc::DeviceBuffer& b, size_t n) {
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(n);
  kc::copy_to_host(v.data(), b.get(), n * sizeof(T));
  return v;
}

// A device buffer filled with a NaN-like poison pattern (0xFF bytes), so unwritten outputs show.
inline kc::DeviceBuffer poisoned(size_t bytes) {
  kc::DeviceBuffer b(bytes, "test output");
  LOWBIT_CUDA_CHECK(cudaMemset(b.get(), 0xFF, bytes));
  return b;
}

// ‖a − b‖ / ‖b‖; NaN anywhere gives +inf.
inline double rel_error(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace lowbit::test
