// IEEE fp16, bfloat16 and fp8 (e4m3fn, e5m2) <-> fp32 scalar conversions. Bit-exact,
// round-to-nearest-even on the way down; used by reference codecs and tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lowbit {

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    // Subnormal or zero: value = mant * 2^-24.
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // overflow (incl. inf) after rounding
  if (abs < 0x38800000u) {                        // result is subnormal or zero
    float v = bits_to_f32(abs);
    // Scale so that the fp16 subnormal unit (2^-24) becomes 1, then round to nearest even.
    return sign | uint16_t(std::nearbyint(v * 16777216.0f));
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | uint16_t((rounded - 0x38000000u) >> 13);
}

// OCP FP8 E4M3FN: no infinities, one NaN pattern per sign (S.1111.111), max 448.
inline float fp8_e4m3_to_f32(uint8_t v) {
  uint32_t sign = uint32_t(v & 0x80u) << 24;
  uint32_t exp = (v >> 3) & 0xfu;
  uint32_t mant = v & 0x7u;
  if (exp == 0xf && mant == 0x7) return bits_to_f32(sign | 0x7fc00000u);
  if (exp == 0) {
    float r = std::ldexp(float(mant), -9);
    return sign ? -r : r;
  }
  return bits_to_f32(sign | ((exp + 120) << 23) | (mant << 20));
}

// FP8 E5M2: IEEE-like (has infinities and NaNs); it is the top byte of an fp16.
inline float fp8_e5m2_to_f32(uint8_t v) { return f16_to_f32(uint16_t(v) << 8); }

// fp32 -> FP8 E4M3FN (e4m3 = true) or E5M2, round to nearest even, saturating to the largest
// finite value (±448 / ±57344, as CUDA's __NV_SATFINITE); NaN stays NaN. Both decoders rise
// monotonically over the positive codes 0 .. max, so the two neighbours are found by bisection
// and an exact tie takes the even code (the one whose mantissa ends in 0).
inline uint8_t f32_to_fp8(float f, bool e4m3) {
  auto decode = [e4m3](int c) {
    return e4m3 ? fp8_e4m3_to_f32(uint8_t(c)) : fp8_e5m2_to_f32(uint8_t(c));
  };
  if (f != f) return 0x7f;  // a NaN in both formats
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const int max_code = e4m3 ? 0x7e : 0x7b;
  const float a = std::fabs(f);
  if (a >= decode(max_code)) return uint8_t(sign | max_code);
  int lo = 0, hi = max_code;  // decode(lo) <= a < decode(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (decode(mid) <= a ? lo : hi) = mid;
  }
  const float below = a - decode(lo), above = decode(hi) - a;
  const int code = below < above ? lo : above < below ? hi : (lo % 2 == 0 ? lo : hi);
  return uint8_t(sign | code);
}

}  // namespace lowbit
