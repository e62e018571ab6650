// Internal to the SIMD variants of kquant_dot.h: unpacking of the small per-super-block scales
// with SSE2 only, shared by x86/kquant_dot_avx2.cpp and x86/kquant_dot_avx512.cpp.
// Everything here has internal linkage: each including file compiles it with its own ISA flags,
// so no out-of-line copy built for AVX-512 can be picked by the linker for an AVX2 caller.
// Results are 16 int8 lanes, lane g = group g of 16 elements (a per-32 scale fills two lanes).
#pragma once

#include <emmintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/gguf_blocks.h"

namespace lowbit::kernels::cpu::kquant_simd {
namespace {

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// 8 bytes b0..b7 -> 16 bytes b0 b0 b1 b1 ... b7 b7 (per-32 values to per-16 lanes).
inline __m128i dup8(uint64_t bytes) {
  const __m128i v = _mm_cvtsi64_si128(int64_t(bytes));
  return _mm_unpacklo_epi8(v, v);
}

// Q4_K / Q5_K scales[12]: the eight 6-bit scales and mins of get_scale_min_k4, as u32 words:
// scales of sub-blocks 0..3 are the low 6 bits of bytes 0..3, mins of 0..3 those of bytes 4..7;
// sub-blocks 4..7 take their low nibbles from bytes 8..11 (scale: low, min: high nibble) and
// their top 2 bits from the top bits of bytes 0..3 (scale) / 4..7 (min).
inline void q4k_scales_mins(const uint8_t* s12, __m128i* scales, __m128i* mins) {
  const uint32_t w0 = load_u32(s12), w1 = load_u32(s12 + 4), w2 = load_u32(s12 + 8);
  const uint32_t sc_lo = w0 & 0x3F3F3F3Fu, mn_lo = w1 & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (w2 & 0x0F0F0F0Fu) | ((w0 >> 6) & 0x03030303u) << 4;
  const uint32_t mn_hi = ((w2 >> 4) & 0x0F0F0F0Fu) | ((w1 >> 6) & 0x03030303u) << 4;
  *scales = dup8(uint64_t(sc_lo) | uint64_t(sc_hi) << 32);
  *mins = dup8(uint64_t(mn_lo) | uint64_t(mn_hi) << 32);
}

// Q3_K scales[12]: 16 6-bit scales minus 32. Scale s takes its low nibble from byte s (s < 8,
// low nibble) or byte s−8 (high nibble), its top 2 bits from byte 8 + s%4, bits 2·(s/4).
inline __m128i q3k_scales(const uint8_t* s12) {
  const uint32_t a0 = load_u32(s12), a1 = load_u32(s12 + 4), a2 = load_u32(s12 + 8);
  const uint32_t m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
  const uint32_t s0 = (a0 & m4) | (a2 & m2) << 4;
  const uint32_t s1 = (a1 & m4) | ((a2 >> 2) & m2) << 4;
  const uint32_t s2 = ((a0 >> 4) & m4) | ((a2 >> 4) & m2) << 4;
  const uint32_t s3 = ((a1 >> 4) & m4) | ((a2 >> 6) & m2) << 4;
  const __m128i v = _mm_set_epi32(int(s3), int(s2), int(s1), int(s0));
  return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

// IQ4_XS: eight 6-bit scales minus 32 (low nibble from scales_l, nibble ib%2 of byte ib/2; top
// 2 bits from scales_h bits 2·ib), duplicated to 16 lanes.
inline __m128i iq4xs_scales(const BlockIQ4_XS& b) {
  const uint32_t sl = load_u32(b.scales_l);
  uint64_t ls = 0;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t lo = (sl >> (4 * ib)) & 0xF;  // byte ib/2, nibble ib%2
    const uint32_t hi = (uint32_t(b.scales_h) >> (2 * ib)) & 3;
    ls |= uint64_t(uint8_t(int((lo | hi << 4)) - 32)) << (8 * ib);
  }
  return dup8(ls);
}

}  // namespace
}  // namespace lowbit::kernels::cpu::kquant_simd
