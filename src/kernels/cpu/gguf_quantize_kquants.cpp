// The K-quant quantizers (see gguf_quantize_kquants.h), ggml's arithmetic step by step.
#include "kernels/cpu/gguf_quantize_kquants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_quantize_search.h"

namespace lowbit::kernels::cpu::gguf_detail {

// ---------------------------------------------------------------------------------------------
// K-quants. `k` elements (a whole number of super-blocks); qw null (ref) or per-element weights.

// 2-bit levels of 4 consecutive 32-element groups interleaved into bytes (Q2_K, Q3_K).
namespace {

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

}  // namespace

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
namespace {

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

}  // namespace

void quantize_row_q4_K(const float* x, BlockQ4_K* y, int64_t k, const float* qw) {
  quantize_row_q45_K<BlockQ4_K, 4>(x, y, k, qw);
}

void quantize_row_q5_K(const float* x, BlockQ5_K* y, int64_t k, const float* qw) {
  quantize_row_q45_K<BlockQ5_K, 5>(x, y, k, qw);
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

}  // namespace lowbit::kernels::cpu::gguf_detail
