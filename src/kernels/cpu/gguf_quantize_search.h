// Internal to the GGUF quantizers (gguf_quantize*.cpp): ggml-quants.c's rounding helper and
// scale searches, shared by the 32-element, K-quant and IQ4 quantizers. Each repeats ggml's fp32
// expressions in ggml's order (the chosen quants depend on every rounding); the .cpp files that
// use them must be compiled without FMA contraction (see gguf_quantize.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/half.h"

namespace lowbit::kernels::cpu::gguf_detail {

constexpr float kGroupMaxEps = 1e-15f;  // below this a group's |max| counts as all zero

inline uint16_t fp16(float f) { return f32_to_f16(f); }
inline float from_fp16(uint16_t h) { return f16_to_f32(h); }

// Round to nearest (ties to even) through the fp32 adder: x + 1.5·2^23 leaves round(x) in the
// low mantissa bits. Valid for |x| <= 2^22 - 1, as in ggml.
inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

// Scale searches; L receives quant levels, the return value is the scale ("min" variants also
// return the negated offset). Documented at their definitions (gguf_quantize_search.cpp).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                      float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                      bool use_mad, bool qkx3);
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);
// Index of the entry of the sorted table val[0..n) nearest to x.
int best_index_int8(int n, const int8_t* val, float x);

}  // namespace lowbit::kernels::cpu::gguf_detail
