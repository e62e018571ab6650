#include "kernels/cpu/dequantize.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_dequantize.h"

namespace lowbit::kernels::cpu {
namespace {

// Every format with a reference decoder: the plain floats, the 32-element GGUF blocks below
// and the K / IQ / TQ / MXFP4 formats of gguf_dequantize.cpp.
constexpr DType kSupported[] = {
    DType::F32,     DType::F16,   DType::BF16,  DType::Q8_0,    DType::Q4_0,   DType::Q4_1,
    DType::Q5_0,    DType::Q5_1,  DType::Q8_1,  DType::Q2_K,    DType::Q3_K,   DType::Q4_K,
    DType::Q5_K,    DType::Q6_K,  DType::Q8_K,  DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
    DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M,   DType::IQ4_NL, DType::IQ4_XS,
    DType::TQ1_0,   DType::TQ2_0, DType::MXFP4};

template <typename Block>
const Block* blocks(const void* src) {
  return static_cast<const Block*>(src);
}

uint32_t load_qh(const uint8_t qh[4]) {
  uint32_t v;
  std::memcpy(&v, qh, 4);  // little-endian u32, as ggml reads it
  return v;
}

}  // namespace

bool cpu_kernel_supports(DType t) {
  for (DType s : kSupported)
    if (s == t) return true;
  return false;
}

std::string cpu_kernel_supported_list() {
  std::string out;
  for (DType s : kSupported) out += (out.empty() ? "" : ", ") + std::string(name(s));
  return out;
}

void dequantize_ref(DType t, const void* src, int64_t k, float* out) {
  const int64_t nb = k / 32;
  switch (t) {
    case DType::F32:
      std::memcpy(out, src, size_t(k) * 4);
      return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < k; ++i) out[i] = f16_to_f32(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < k; ++i) out[i] = bf16_to_f32(h[i]);
      return;
    }
    case DType::Q8_0:
      for (int64_t b = 0; b < nb; ++b, out += 32) {
        const BlockQ8_0& blk = blocks<BlockQ8_0>(src)[b];
        const float d = f16_to_f32(blk.d);
        for (int j = 0; j < 32; ++j) out[j] = float(blk.qs[j]) * d;
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < nb; ++b, out += 32) {
        const BlockQ4_0& blk = blocks<BlockQ4_0>(src)[b];
        const float d = f16_to_f32(blk.d);
        for (int j = 0; j < 16; ++j) {
          out[j] = float((blk.qs[j] & 0xF) - 8) * d;
          out[j + 16] = float((blk.qs[j] >> 4) - 8) * d;
        }
      }
      return;
    case DType::Q4_1:
      for (int64_t b = 0; b < nb; ++b, out += 32) {
        const BlockQ4_1& blk = blocks<BlockQ4_1>(src)[b];
        const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
        // q·d is exact in fp32 (4-bit × 11-bit significand), so this equals ggml's x·d + m.
        for (int j = 0; j < 16; ++j) {
          out[j] = float(blk.qs[j] & 0xF) * d + m;
          out[j + 16] = float(blk.qs[j] >> 4) * d + m;
        }
      }
      return;
    case DType::Q5_0:
      for (int64_t b = 0; b < nb; ++b, out += 32) {
        const BlockQ5_0& blk = blocks<BlockQ5_0>(src)[b];
        const float d = f16_to_f32(blk.d);
        const uint32_t qh = load_qh(blk.qh);
        for (int j = 0; j < 16; ++j) {
          const int x0 = (blk.qs[j] & 0xF) | int((qh >> j) & 1u) << 4;
          const int x1 = (blk.qs[j] >> 4) | int((qh >> (j + 16)) & 1u) << 4;
          out[j] = float(x0 - 16) * d;
          out[j + 16] = float(x1 - 16) * d;
        }
      }
      return;
    case DType::Q5_1:
      for (int64_t b = 0; b < nb; ++b, out += 32) {
        const BlockQ5_1& blk = blocks<BlockQ5_1>(src)[b];
        const float d = f16_to_f32(blk.d), m = f16_to_f32(blk.m);
        const uint32_t qh = load_qh(blk.qh);
        for (int j = 0; j < 16; ++j) {
          const int x0 = (blk.qs[j] & 0xF) | int((qh >> j) & 1u) << 4;
          const int x1 = (blk.qs[j] >> 4) | int((qh >> (j + 16)) & 1u) << 4;
          out[j] = float(x0) * d + m;
          out[j + 16] = float(x1) * d + m;
        }
      }
      return;
    default:
      if (dequantize_gguf_ref(t, src, k, out)) return;
      fail("dequantize: no CPU codec for {} (supported: {})", name(t), cpu_kernel_supported_list());
  }
}

}  // namespace lowbit::kernels::cpu
