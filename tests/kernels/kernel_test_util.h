// Shared helpers for the kernel tests: random weights in every supported format (random
// valid fp16 scales and random quant bits, never all zeros) and the list of SIMD levels this
// machine runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "kernels/cpu/cpu_features.h"

namespace lowbit::kernels::cpu::testing {

inline const std::vector<DType>& supported_dtypes() {
  static const std::vector<DType> v = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                                       DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1};
  return v;
}

inline std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(i)) out.push_back(i);
  return out;
}

// A random finite, non-zero fp16 with magnitude in about [2^-8, 2^1): realistic scales.
inline uint16_t random_scale(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-8, 0);
  float v = std::ldexp(mant(rng), ex(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
  return f32_to_f16(v);
}

// n rows × k elements of `t`, as raw bytes.
inline std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t k, std::mt19937_64& rng) {
  const auto& tr = traits(t);
  const size_t bytes = size_t(n) * size_t(k) / tr.block_elems * tr.block_bytes;
  std::vector<uint8_t> out(bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    for (size_t i = 0; i < size_t(n * k); ++i) {
      float v = normal(rng);
      if (t == DType::F32) std::memcpy(&out[4 * i], &v, 4);
      uint16_t h = t == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (t != DType::F32) std::memcpy(&out[2 * i], &h, 2);
    }
    return out;
  }
  for (auto& b : out) b = uint8_t(rng());
  const int scales = (t == DType::Q4_1 || t == DType::Q5_1) ? 2 : 1;
  for (size_t off = 0; off < bytes; off += tr.block_bytes)
    for (int s = 0; s < scales; ++s) {
      uint16_t h = random_scale(rng);
      std::memcpy(&out[off + 2 * size_t(s)], &h, 2);
    }
  return out;
}

inline std::vector<float> random_floats(size_t count, std::mt19937_64& rng, float sd = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sd);
  std::vector<float> v(count);
  for (auto& f : v) f = normal(rng);
  return v;
}

}  // namespace lowbit::kernels::cpu::testing
