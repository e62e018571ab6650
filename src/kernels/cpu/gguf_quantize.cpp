// fp32 -> GGUF blocks. Every search below repeats ggml-quants.c's arithmetic expression for
// expression (same operand order, fp32 throughout, the same rounding helper), because the
// chosen integer quants depend on each rounding; see gguf_quantize.h.
#include "kernels/cpu/gguf_quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_blocks.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/gguf_quantize_tq_mxfp4.h"

namespace lowbit::kernels::cpu {
namespace {

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

// ---------------------------------------------------------------------------------------------
// Scale searches (ggml-quants.c helpers). L receives quant levels, the return value is the
// scale; "min" variants also return the (negated) offset.

// Symmetric levels in [-nmax, nmax-1] stored biased by nmax. rmse_type 1 weighs by x² unless
// qw is given; the scale is refined over 18 trial inverse scales around nmax/max.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  auto weight = [&](int i) -> float {
    return qw               ? qw[i]
           : rmse_type == 1 ? x[i] * x[i]
           : rmse_type == 2 ? 1
           : rmse_type == 3 ? std::fabs(x[i])
                            : std::sqrt(std::fabs(x[i]));
  };
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
    float w = weight(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's symmetric search: levels refined one at a time (up to 5 passes) to maximise the
// x²-weighted correlation; L biased by nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (do_rmse) {
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      L[i] = int8_t(l);
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
      int n_changed = 0;
      for (int i = 0; i < n; ++i) {
        float w = x[i] * x[i];
        float slx = sumlx - w * x[i] * L[i];
        if (slx > 0) {
          float sl2 = suml2 - w * L[i] * L[i];
          int new_l = nearest_int(x[i] * sl2 / slx);
          new_l = std::max(-nmax, std::min(nmax - 1, new_l));
          if (new_l != L[i]) {
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
              L[i] = int8_t(new_l);
              sumlx = slx;
              suml2 = sl2;
              ++n_changed;
            }
          }
        }
      }
      if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
  }
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = int8_t(l + nmax);
  }
  return 1 / iscale;
}

// Asymmetric levels in [0, nmax] with an offset min <= 0: least-squares (scale, min) over
// nstep+1 trial inverse scales. `weights` null means x² (make_qkx3_quants); make_qkx2_quants
// always has weights. Returns scale, *the_min = -min.
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                      float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                      bool use_mad, bool qkx3) {
  auto weight = [&](int i) -> float { return weights ? weights[i] : x[i] * x[i]; };
  float min = x[0];
  float max = x[0];
  float sum_w = weight(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (qkx3 ? max <= min : max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    float w = weight(i);
    best_error += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = uint8_t(l);
      float w = weight(i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        float w = weight(i);
        cur_error += w * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Non-negative levels in [0, nmax] for the (weighted) super-block scales of the imatrix paths.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
  float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * L[i];
    float w = quant_weights[i];
    best_mse += w * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * is + nmax) / max;
    float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale_is * x[i]);
      l = std::min(nmax, l);
      float diff = x[i] - scale_is * l;
      float w = quant_weights[i];
      mse += w * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::min(nmax, l);
    L[i] = uint8_t(l);
    float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = std::min(nmax, new_l);
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = uint8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Index of the value in the sorted table val[0..n) nearest to x (ties to the upper one).
int best_index_int8(int n, const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (x >= val[n - 1]) return n - 1;
  int ml = 0, mu = n - 1;
  while (mu - ml > 1) {
    int mav = (ml + mu) / 2;
    if (x < val[mav])
      mu = mav;
    else
      ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// ---------------------------------------------------------------------------------------------
// 32-element formats. `row` is one row of n floats; qw the row's importance weights or null.

// Elements j and j+16 share byte j (low, high nibble); bit 4 of each goes to qh bit j / j+16.
template <typename Block>
void pack_nibbles_and_high_bits(Block& b, const int* q /* 32 levels */, bool with_qh) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xi0 = uint8_t(q[j]), xi1 = uint8_t(q[j + 16]);
    b.qs[j] = uint8_t((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  if constexpr (requires { b.qh; }) {
    if (with_qh) std::memcpy(b.qh, &qh, 4);
  }
}

// Q4_0 / Q5_0 (ref): d = max/-2^(bits-1) with max the signed value of largest magnitude.
template <typename Block, int kBits>
void quantize_row_sym_ref(const float* x, Block* y, int64_t k) {
  constexpr int kHalf = 1 << (kBits - 1);
  constexpr int kTop = (1 << kBits) - 1;
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -kHalf;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = std::min(kTop, int(int8_t(int(x[j] * id + (kHalf + 0.5f)))));
    pack_nibbles_and_high_bits(y[i], q, kBits == 5);
  }
}

// Q4_1 / Q5_1 (ref): d = (max - min) / (2^bits - 1), m = min.
template <typename Block, int kBits>
void quantize_row_asym_ref(const float* x, Block* y, int64_t k) {
  constexpr int kTop = (1 << kBits) - 1;
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / kTop;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    y[i].m = fp16(min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) {
      const float v = (x[j] - min) * id;
      q[j] = kBits == 4 ? std::min(15, int(int8_t(int(v + 0.5f)))) : int(uint8_t(int(v + 0.5f)));
    }
    pack_nibbles_and_high_bits(y[i], q, kBits == 5);
  }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

// Per-element importance of the 32-element imatrix paths: qw · sqrt(σ² + x²), σ² the row's
// mean square.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

// Q4_0 / Q5_0 with an imatrix: weighted make_qx_quants per block.
template <typename Block, int kBits>
void quantize_row_sym_impl(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  int8_t L[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    const float* w = qw + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants(kQK, 1 << (kBits - 1), xb, L, 1, weight);
    y[ib].d = fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = uint8_t(L[j]);
    pack_nibbles_and_high_bits(y[ib], q, kBits == 5);
  }
}

// Q4_1 / Q5_1 with an imatrix: weighted make_qkx3_quants per block.
template <typename Block, int kBits>
void quantize_row_asym_impl(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  uint8_t L[kQK], Laux[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    const float* w = qw + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    float min;
    const float d = make_qkx_quants(kQK, (1 << kBits) - 1, xb, weight, L, &min, Laux, -0.9f, 0.05f,
                                    36, false, true);
    y[ib].d = fp16(d);
    y[ib].m = fp16(-min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = L[j];
    pack_nibbles_and_high_bits(y[ib], q, kBits == 5);
  }
}

// ---------------------------------------------------------------------------------------------
// K-quants. `k` elements (a whole number of super-blocks); qw null (ref) or per-element weights.

// 2-bit levels of 4 consecutive 32-element groups interleaved into bytes (Q2_K, Q3_K).
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] =
          uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q4_K / Q5_K: 8 6-bit scales and mins into scales[12] (inverse of get_scale_min_k4).
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* scales) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = uint8_t((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] |= uint8_t((ls[j] >> 4) << 6);
      scales[j - 0] |= uint8_t((lm[j] >> 4) << 6);
    }
  }
}

void quantize_row_q2_K(const float* x, BlockQ2_K* y, int64_t k, const float* qw) {
  uint8_t L[kQK_K], Laux[16], Ls[16], Lm[16];
  float weights[16], mins[16], scales[16], sw[16];
  const float q4scale = 15.f;
  for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
    if (!qw) {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                    0.1f, 15, true, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(nearest_int(iscale * scales[j]));
        y[i].d = fp16(max_scale / q4scale);
      } else {
        for (int j = 0; j < 16; ++j) y[i].scales[j] = 0;
        y[i].d = fp16(0.f);
      }
      if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < 16; ++j) y[i].scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
        y[i].dmin = fp16(max_min / q4scale);
      } else {
        y[i].dmin = fp16(0.f);
      }
    } else {
      const float* w = qw + kQK_K * i;
      std::memset(sw, 0, sizeof sw);
      float sumx2 = 0;
      for (int j = 0; j < kQK_K; ++j) sumx2 += x[j] * x[j];
      float sigma2 = sumx2 / kQK_K;
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l)
          weights[l] = w[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += weights[l];
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f,
                                    0.05f, 36, false, true);
      }
      float dm = make_qp_quants(16, 15, scales, Ls, sw);
      float mm = make_qp_quants(16, 15, mins, Lm, sw);
      y[i].d = fp16(dm);
      y[i].dmin = fp16(mm);
      for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    }
    // Requantize every element with the stored (fp16-rounded) scales.
    for (int j = 0; j < 16; ++j) {
      const float d = from_fp16(y[i].d) * (y[i].scales[j] & 0xF);
      if (!d) continue;
      const float dm = from_fp16(y[i].dmin) * (y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, y[i].qs);
  }
}

void quantize_row_q3_K(const float* x, BlockQ3_K* y, int64_t k, const float* qw) {
  int8_t L[kQK_K], Ls[16];
  float scales[16], weight[16], sw[16];
  for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
    std::memset(y[i].scales, 0, 12);
    auto put_scale = [&](int j, int l /* 0..63 */) {
      if (j < 8)
        y[i].scales[j] = uint8_t(l & 0xF);
      else
        y[i].scales[j - 8] |= uint8_t((l & 0xF) << 4);
      l >>= 4;
      y[i].scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
    };
    if (!qw) {
      float max_scale = 0, amax = 0;
      for (int j = 0; j < 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
        float scale = std::fabs(scales[j]);
        if (scale > amax) {
          amax = scale;
          max_scale = scales[j];
        }
      }
      if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
          int8_t l = int8_t(nearest_int(iscale * scales[j]));
          l = int8_t(std::max<int>(-32, std::min<int>(31, l)) + 32);
          put_scale(j, l);
        }
        y[i].d = fp16(1 / iscale);
      } else {
        y[i].d = fp16(0.f);
      }
    } else {
      const float* w = qw + kQK_K * i;
      float sumx2 = 0;
      for (int j = 0; j < kQK_K; ++j) sumx2 += x[j] * x[j];
      float sigma2 = 2 * sumx2 / kQK_K;
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l)
          weight[l] = w[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
      }
      float d_block = make_qx_quants(16, 32, scales, Ls, 1, sw);
      for (int j = 0; j < 16; ++j) put_scale(j, Ls[j]);
      y[i].d = fp16(d_block);
    }
    for (int j = 0; j < 16; ++j) {
      int8_t sc = int8_t(j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4);
      sc = int8_t((sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
      float d = from_fp16(y[i].d) * sc;
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
      }
    }
    // High bit of element j goes to hmask[j % 32], bit j / 32.
    std::memset(y[i].hmask, 0, 32);
    uint8_t Lu[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
      Lu[j] = uint8_t(L[j]);
      if (Lu[j] > 3) {
        y[i].hmask[j % 32] |= uint8_t(1u << (j / 32));
        Lu[j] = uint8_t(Lu[j] - 4);
      }
    }
    pack_2bit(Lu, y[i].qs);
  }
}

// Q4_K (kBits 4) and Q5_K (kBits 5): 8 sub-blocks of 32 with 6-bit scales and mins.
template <typename Block, int kBits>
void quantize_row_q45_K(const float* x, Block* y, int64_t k, const float* qw) {
  constexpr int kTop = (1 << kBits) - 1;
  uint8_t L[kQK_K], Laux[32], Ls[8], Lm[8];
  float weights[32], mins[8], scales[8], sw[8];
  for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
    std::memset(y[i].scales, 0, 12);
    if (!qw) {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = kBits == 4 ? make_qkx_quants(32, kTop, x + 32 * j, weights, L + 32 * j,
                                                 &mins[j], Laux, -1.f, 0.1f, 20, false, false)
                               : make_qkx_quants(32, kTop, x + 32 * j, weights, L + 32 * j,
                                                 &mins[j], Laux, -0.5f, 0.1f, 15, false, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      for (int j = 0; j < 8; ++j) {
        uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
        uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
        Ls[j] = std::min<uint8_t>(63, ls);
        Lm[j] = std::min<uint8_t>(63, lm);
      }
      pack_scale_min_k4(Ls, Lm, y[i].scales);
      y[i].d = fp16(max_scale / 63.f);
      y[i].dmin = fp16(max_min / 63.f);
    } else {
      const float* w = qw + kQK_K * i;
      float sum_x2 = 0;
      for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
      float sigma2 = 2 * sum_x2 / kQK_K;
      for (int j = 0; j < 8; ++j) {
        for (int l = 0; l < 32; ++l)
          weights[l] = w[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx_quants(32, kTop, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                    -0.9f, 0.05f, 36, false, true);
      }
      float d_block = make_qp_quants(8, 63, scales, Ls, sw);
      float m_block = make_qp_quants(8, 63, mins, Lm, sw);
      for (int j = 0; j < 8; ++j) {
        Ls[j] = std::min<uint8_t>(63, Ls[j]);
        Lm[j] = std::min<uint8_t>(63, Lm[j]);
      }
      pack_scale_min_k4(Ls, Lm, y[i].scales);
      y[i].d = fp16(d_block);
      y[i].dmin = fp16(m_block);
    }
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, y[i].scales, &sc, &m);
      const float d = from_fp16(y[i].d) * sc;
      if (!d) continue;
      const float dm = from_fp16(y[i].dmin) * m;
      for (int ii = 0; ii < 32; ++ii) {
        int l = nearest_int((x[32 * j + ii] + dm) / d);
        L[32 * j + ii] = uint8_t(std::max(0, std::min(kTop, l)));
      }
    }
    // Sub-blocks 2p and 2p+1 share 32 bytes (low, high nibble); Q5_K's 5th bits go to
    // qh[l] bits 2p and 2p+1.
    uint8_t* q = y[i].qs;
    if constexpr (kBits == 5) std::memset(y[i].qh, 0, 32);
    for (int p = 0; p < 4; ++p, q += 32) {
      for (int l = 0; l < 32; ++l) {
        int l1 = L[64 * p + l], l2 = L[64 * p + l + 32];
        if constexpr (kBits == 5) {
          if (l1 > 15) {
            l1 -= 16;
            y[i].qh[l] |= uint8_t(1u << (2 * p));
          }
          if (l2 > 15) {
            l2 -= 16;
            y[i].qh[l] |= uint8_t(2u << (2 * p));
          }
        }
        q[l] = uint8_t(l1 | (l2 << 4));
      }
    }
  }
}

void quantize_row_q6_K(const float* x, BlockQ6_K* y, int64_t k, const float* qw) {
  int8_t L[kQK_K];
  float scales[16];
  for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1,
                                         qw ? qw + kQK_K * i + 16 * ib : nullptr);
      scales[ib] = scale;
      if (std::fabs(scale) > max_abs_scale) {
        max_abs_scale = std::fabs(scale);
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      y[i].d = fp16(0.f);
      continue;
    }
    float iscale = -128.f / max_scale;
    y[i].d = fp16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib)
      y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      float d = from_fp16(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = uint8_t(q1 | (q3 << 4));
        ql[l + 32] = uint8_t(q2 | (q4 << 4));
        qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                        ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL (one 32-element block, super_block 32) and IQ4_XS (256 with 8 6-bit sub-scales):
// nearest kIq4nlValues entries, the block scale tried at 15 inverse scales (ntry = 7).
void quantize_iq4_block(int super_block_size, const float* x, uint16_t* dh, uint8_t* q4,
                        uint16_t* scales_h, uint8_t* scales_l, const float* qw, int ntry) {
  constexpr int block_size = 32;
  const int8_t* values = kIq4nlValues;
  float scales[kQK_K / 32], weight[32];
  uint8_t L[kQK_K];
  float sigma2 = 0;
  for (int j = 0; j < super_block_size; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / super_block_size;
  std::memset(q4, 0, size_t(super_block_size / 2));
  dh[0] = fp16(0.f);
  float max_scale = 0, amax_scale = 0;
  const int nb = super_block_size / block_size;
  for (int ib = 0; ib < nb; ++ib) {
    const float* xb = x + ib * block_size;
    uint8_t* Lb = L + ib * block_size;
    if (qw) {
      const float* w = qw + ib * block_size;
      for (int j = 0; j < block_size; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < block_size; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < block_size; ++j) {
      float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      // ggml leaves these levels unset; with scale 0 every later use re-derives them (below),
      // except that an all-zero IQ4_NL block then takes the level nearest 0.
      for (int j = 0; j < block_size; ++j) Lb[j] = uint8_t(best_index_int8(16, values, 0.f));
      continue;
    }
    float d = ntry > 0 ? -max / values[0] : max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < block_size; ++j) {
      float al = id * xb[j];
      int l = best_index_int8(16, values, al);
      Lb[j] = uint8_t(l);
      float q = values[l];
      float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = (itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < block_size; ++j) {
        float al = id * xb[j];
        int l = best_index_int8(16, values, al);
        float q = values[l];
        float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (nb > 1) {
    std::memset(scales_h, 0, sizeof(uint16_t));
    float d = -max_scale / 32;
    dh[0] = fp16(d);
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < nb; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      float dl = d * l;
      float idl = dl ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * block_size;
      const float* xb = x + ib * block_size;
      for (int j = 0; j < block_size; ++j)
        Lb[j] = uint8_t(best_index_int8(16, values, idl * xb[j]));
      l += 32;
      uint8_t l_l = uint8_t(l & 0xf), l_h = uint8_t(l >> 4);
      if (ib % 2 == 0)
        scales_l[ib / 2] = l_l;
      else
        scales_l[ib / 2] |= uint8_t(l_l << 4);
      scales_h[0] |= uint16_t(l_h << 2 * (ib % 8));
    }
  } else {
    dh[0] = fp16(scales[0]);
    if (ntry > 0) {
      float id = scales[0] ? 1 / scales[0] : 0;
      for (int j = 0; j < super_block_size; ++j)
        L[j] = uint8_t(best_index_int8(16, values, id * x[j]));
    }
  }
  for (int i = 0; i < super_block_size / 32; ++i)
    for (int j = 0; j < 16; ++j)
      q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n, const float* qw) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    uint16_t unused_h;
    quantize_iq4_block(kQK, x + kQK * ib, &y[ib].d, y[ib].qs, &unused_h, nullptr,
                       qw ? qw + kQK * ib : nullptr, 7);
  }
}

void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n, const float* qw) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    uint16_t scales_h;
    quantize_iq4_block(kQK_K, x + kQK_K * ib, &y[ib].d, y[ib].qs, &scales_h, y[ib].scales_l,
                       qw ? qw + kQK_K * ib : nullptr, 7);
    y[ib].scales_h = scales_h;
  }
}

// One row of n elements of type t (n a multiple of the block size).
void quantize_one_row(DType t, const float* x, int64_t n, const float* qw, void* dst) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, x, size_t(n) * 4);
      return;
    case DType::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
      return;
    }
    case DType::BF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case DType::Q4_0:
      if (qw) return quantize_row_sym_impl<BlockQ4_0, 4>(x, static_cast<BlockQ4_0*>(dst), n, qw);
      return quantize_row_sym_ref<BlockQ4_0, 4>(x, static_cast<BlockQ4_0*>(dst), n);
    case DType::Q5_0:
      if (qw) return quantize_row_sym_impl<BlockQ5_0, 5>(x, static_cast<BlockQ5_0*>(dst), n, qw);
      return quantize_row_sym_ref<BlockQ5_0, 5>(x, static_cast<BlockQ5_0*>(dst), n);
    case DType::Q4_1:
      if (qw) return quantize_row_asym_impl<BlockQ4_1, 4>(x, static_cast<BlockQ4_1*>(dst), n, qw);
      return quantize_row_asym_ref<BlockQ4_1, 4>(x, static_cast<BlockQ4_1*>(dst), n);
    case DType::Q5_1:
      if (qw) return quantize_row_asym_impl<BlockQ5_1, 5>(x, static_cast<BlockQ5_1*>(dst), n, qw);
      return quantize_row_asym_ref<BlockQ5_1, 5>(x, static_cast<BlockQ5_1*>(dst), n);
    case DType::Q8_0:
      return quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n);
    case DType::Q2_K:
      return quantize_row_q2_K(x, static_cast<BlockQ2_K*>(dst), n, qw);
    case DType::Q3_K:
      return quantize_row_q3_K(x, static_cast<BlockQ3_K*>(dst), n, qw);
    case DType::Q4_K:
      return quantize_row_q45_K<BlockQ4_K, 4>(x, static_cast<BlockQ4_K*>(dst), n, qw);
    case DType::Q5_K:
      return quantize_row_q45_K<BlockQ5_K, 5>(x, static_cast<BlockQ5_K*>(dst), n, qw);
    case DType::Q6_K:
      return quantize_row_q6_K(x, static_cast<BlockQ6_K*>(dst), n, qw);
    case DType::IQ4_NL:
      return quantize_row_iq4_nl(x, static_cast<BlockIQ4_NL*>(dst), n, qw);
    case DType::IQ4_XS:
      return quantize_row_iq4_xs(x, static_cast<BlockIQ4_XS*>(dst), n, qw);
    case DType::TQ1_0:  // ternary and MXFP4 take no importance matrix, as in ggml
      return quantize_row_tq1_0(x, static_cast<BlockTQ1_0*>(dst), n);
    case DType::TQ2_0:
      return quantize_row_tq2_0(x, static_cast<BlockTQ2_0*>(dst), n);
    case DType::MXFP4:
      return quantize_row_mxfp4(x, static_cast<BlockMXFP4*>(dst), n);
    default:
      fail("cannot quantize to {}: supported types are {}", name(t),
           gguf_quantize_supported_list());
  }
}

constexpr DType kSupported[] = {
    DType::F32,  DType::F16,    DType::BF16,   DType::Q4_0,  DType::Q4_1,  DType::Q5_0,
    DType::Q5_1, DType::Q8_0,   DType::Q2_K,   DType::Q3_K,  DType::Q4_K,  DType::Q5_K,
    DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0, DType::MXFP4};

}  // namespace

bool gguf_quantize_supports(DType t) {
  return std::find(std::begin(kSupported), std::end(kSupported), t) != std::end(kSupported);
}

std::string gguf_quantize_supported_list() {
  std::string s;
  for (DType t : kSupported) s += (s.empty() ? "" : ", ") + std::string(name(t));
  return s;
}

void quantize_rows(DType t, const float* src, int64_t nrows, int64_t n_per_row,
                   const float* imatrix, void* dst) {
  if (!gguf_quantize_supports(t))
    fail("cannot quantize to {}: supported types are {}", name(t), gguf_quantize_supported_list());
  const uint32_t block = traits(t).block_elems;
  if (n_per_row <= 0 || n_per_row % block != 0)
    fail("cannot quantize rows of {} elements to {}: the row length must be a multiple of {}",
         n_per_row, name(t), block);
  const uint64_t row_bytes = *dtype_bytes(t, uint64_t(n_per_row));
  auto* out = static_cast<uint8_t*>(dst);
#pragma omp parallel for schedule(dynamic, 16) if (nrows * n_per_row >= (int64_t(1) << 16))
  for (int64_t r = 0; r < nrows; ++r)
    quantize_one_row(t, src + r * n_per_row, n_per_row, imatrix, out + uint64_t(r) * row_bytes);
}

}  // namespace lowbit::kernels::cpu
