// Shared helpers for the kernel tests: random weights in every supported format (random
// valid fp16 scales and random quant bits, never all zeros) and the list of SIMD levels this
// machine runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
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

// Every GGUF block format (32- and 256-element blocks) the reference decoders handle.
inline const std::vector<DType>& gguf_block_dtypes() {
  static const std::vector<DType> v = {
      DType::Q4_0,    DType::Q4_1,   DType::Q5_0,   DType::Q5_1,    DType::Q8_0,  DType::Q8_1,
      DType::Q2_K,    DType::Q3_K,   DType::Q4_K,   DType::Q5_K,    DType::Q6_K,  DType::Q8_K,
      DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,  DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S,
      DType::IQ1_M,   DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0,   DType::TQ2_0, DType::MXFP4};
  return v;
}

// Byte offsets of the fp16 scale fields (d, m, dmin, s) in one block of `t` (ggml-common.h).
inline std::vector<size_t> fp16_field_offsets(DType t) {
  switch (t) {
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q8_1:
    case DType::Q4_K:
    case DType::Q5_K:
      return {0, 2};
    case DType::Q2_K:
      return {80, 82};
    case DType::Q3_K:
      return {108};
    case DType::Q6_K:
      return {208};
    case DType::TQ1_0:
      return {52};
    case DType::TQ2_0:
      return {64};
    case DType::IQ1_M:  // d lives in the scale words' top nibbles
    case DType::Q8_K:   // d is fp32
    case DType::MXFP4:  // E8M0 exponent
      return {};
    default:  // Q4_0, Q5_0, Q8_0, IQ4_NL and the other IQ types: d first
      return {0};
  }
}

// Overwrites the scale fields of one block of random bytes with valid random scales, so
// decoded values are finite and not all zero.
inline void set_valid_scales(DType t, uint8_t* block, std::mt19937_64& rng) {
  for (size_t off : fp16_field_offsets(t)) {
    uint16_t h = random_scale(rng);
    std::memcpy(block + off, &h, 2);
  }
  if (t == DType::IQ1_M) {  // spread d's 4 nibbles over the top nibbles of 4 u16 words
    const uint16_t d = random_scale(rng);
    for (int i = 0; i < 4; ++i) {
      uint16_t w;
      std::memcpy(&w, block + 48 + 2 * i, 2);
      w = uint16_t((w & 0x0FFF) | ((d >> (4 * i)) & 0xF) << 12);
      std::memcpy(block + 48 + 2 * i, &w, 2);
    }
  } else if (t == DType::Q8_K) {
    const float d = f16_to_f32(random_scale(rng)) / 64.0f;
    std::memcpy(block, &d, 4);
  } else if (t == DType::MXFP4) {
    block[0] = uint8_t(120 + rng() % 10);  // 2^-7 .. 2^2 (halved)
  }
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
  for (size_t off = 0; off < bytes; off += tr.block_bytes) set_valid_scales(t, &out[off], rng);
  return out;
}

// The bytes of a fixture file (empty when it cannot be read).
inline std::vector<uint8_t> read_binary_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::vector<float> random_floats(size_t count, std::mt19937_64& rng, float sd = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sd);
  std::vector<float> v(count);
  for (auto& f : v) f = normal(rng);
  return v;
}

}  // namespace lowbit::kernels::cpu::testing
