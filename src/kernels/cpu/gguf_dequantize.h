// Reference decoders of the GGUF K-quant, i-quant, ternary and MXFP4 block formats
// (Q8_1, Q2_K..Q8_K, IQ1_S..IQ4_XS, TQ1_0, TQ2_0, MXFP4), one per format, each computing every
// value with the same fp32 operations in the same order as ggml's dequantize_row_* (and the
// PyPI gguf package's gguf/quants.py), so the output is bit-exact with llama.cpp.
//   x: k / block_elems consecutive blocks (gguf_blocks.h), y: k floats; k a multiple of the
//   format's block size (32 or 256).
// dequantize_ref() (dequantize.h) dispatches here; SIMD kernels may call them directly.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu {

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t k);
void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t k);
void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t k);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t k);
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t k);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t k);
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t k);
void dequantize_row_iq2_xxs(const BlockIQ2_XXS* x, float* y, int64_t k);
void dequantize_row_iq2_xs(const BlockIQ2_XS* x, float* y, int64_t k);
void dequantize_row_iq2_s(const BlockIQ2_S* x, float* y, int64_t k);
void dequantize_row_iq3_xxs(const BlockIQ3_XXS* x, float* y, int64_t k);
void dequantize_row_iq3_s(const BlockIQ3_S* x, float* y, int64_t k);
void dequantize_row_iq1_s(const BlockIQ1_S* x, float* y, int64_t k);
void dequantize_row_iq1_m(const BlockIQ1_M* x, float* y, int64_t k);
void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t k);
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t k);
void dequantize_row_tq1_0(const BlockTQ1_0* x, float* y, int64_t k);
void dequantize_row_tq2_0(const BlockTQ2_0* x, float* y, int64_t k);
void dequantize_row_mxfp4(const BlockMXFP4* x, float* y, int64_t k);

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) packed in scales[12].
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *mn = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// IQ1_M: the fp16 super-block scale, spread over the top nibbles of the four u16 scale words.
inline uint16_t iq1m_scale_bits(const BlockIQ1_M& b) {
  uint16_t sc[4];
  for (int i = 0; i < 4; ++i) sc[i] = uint16_t(b.scales[2 * i] | b.scales[2 * i + 1] << 8);
  return uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) |
                  (sc[3] & 0xF000));
}

// MXFP4: E8M0 exponent e -> 2^(e-127) / 2 (the value table is doubled), as ggml's
// GGML_E8M0_TO_FP32_HALF: e < 2 gives the subnormals 2^-128 and 2^-127.
inline float e8m0_to_f32_half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : uint32_t(e - 1) << 23;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// Decodes `k` elements of any format above; false when `t` is not one of them.
bool dequantize_gguf_ref(DType t, const void* src, int64_t k, float* out);

}  // namespace lowbit::kernels::cpu
