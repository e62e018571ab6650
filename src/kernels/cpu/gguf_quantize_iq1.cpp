// IQ1_S / IQ1_M quantizers (see gguf_quantize_iq1.h). Elements are ternary levels {-1, 0, 1}
// shifted by ±δ (δ = kIq1sDelta, the sign per block for IQ1_S, per 8 elements for IQ1_M), times
// a block scale. With three levels the weighted least-squares split of a block is found
// exactly: sort the block, and every pair of cut points (i1, i2) gives the fit from prefix
// sums; then each 8 levels are snapped to the IQ1 grid (gguf_iq_grid_index.h).
#include "kernels/cpu/gguf_quantize_iq1.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/gguf_iq_grid_index.h"
#include "kernels/cpu/gguf_quantize_iq_common.h"
#include "kernels/cpu/gguf_quantize_search.h"

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

constexpr float kEpsS = 1e-12f, kEpsM = 1e-7f;        // ggml's GROUP_MAX_EPS_IQ1_{S,M}
constexpr float kFudgeS = 1.125f, kFudgeM = 1.1125f;  // ggml's d multipliers
// The shifted level values: x_p for shift +δ, x_m for -δ (level l -> value[l]).
constexpr float kShiftPlus[3] = {-1 + kIq1sDelta, kIq1sDelta, 1 + kIq1sDelta};
constexpr float kShiftMinus[3] = {-1 - kIq1sDelta, -kIq1sDelta, 1 - kIq1sDelta};

// Block element indices ordered by value. ggml sorts (value, index) pairs with qsort comparing
// values only; glibc's qsort is a stable merge sort, so equal values keep index order.
template <int kBlock>
void order_by_value(const float* xb, int* idx) {
  for (int j = 0; j < kBlock; ++j) idx[j] = j;
  std::stable_sort(idx, idx + kBlock, [&](int a, int b) { return xb[a] < xb[b]; });
}

// Levels of a split: the first i1 sorted elements -> 0, up to i2 -> 1, the rest -> 2.
template <int kBlock>
void split_levels(const int* idx, int i1, int i2, int8_t* L) {
  for (int j = 0; j < i1; ++j) L[idx[j]] = 0;
  for (int j = i1; j < i2; ++j) L[idx[j]] = 1;
  for (int j = i2; j < kBlock; ++j) L[idx[j]] = 2;
}

// ggml's iq1_find_best_neighbour2: the neighbour of key minimizing Σ w·(scale·xx[l] - x)².
// (ggml's fallback scan over the whole grid, reached only when every distance is non-finite,
// reads out of bounds; lowbit reports the input instead.)
int best_neighbour(const IqGridIndex& g, uint32_t key, const float* x8, const float* w8,
                   float scale, const float* xx, int8_t* L) {
  float best = FLT_MAX;
  int best_index = -1;
  for (uint16_t j : g.neighbours(key)) {
    const auto& pg = g.odd_values(j);
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const float q = xx[(pg[size_t(i)] - 1) / 2];
      const float w = w8[i];
      const float diff = scale * q - x8[i];
      d2 += w * diff * diff;
    }
    if (d2 < best) {
      best = d2;
      best_index = j;
    }
  }
  LOWBIT_CHECK(best_index >= 0, "IQ1 grid search: no neighbour fits (non-finite input?)");
  g.levels(best_index, L);
  return best_index;
}

uint32_t key_of(const int8_t* L) {
  uint32_t key = 0;
  for (int j = 0; j < 8; ++j) key |= uint32_t(L[j]) << 2 * j;
  return key;
}

// Grid index of 8 levels, snapping them to the best neighbour when they are off the grid.
int snap_to_grid(const IqGridIndex& g, const float* x8, const float* w8, float scale,
                 const float* xx, int8_t* L8, bool* on_grid) {
  const uint32_t key = key_of(L8);
  int index = g.find(key);
  if (index < 0) {
    *on_grid = false;
    index = best_neighbour(g, key, x8, w8, scale, xx, L8);
  }
  return index;
}

float max_abs(const float* xb, int n) {
  float max = std::fabs(xb[0]);
  for (int i = 1; i < n; ++i) max = ggml_max(max, std::fabs(xb[i]));
  return max;
}

void block_weights(int n, const float* xb, const float* qw, float sigma2, float* weight) {
  if (qw) {
    for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else {
    for (int i = 0; i < n; ++i) weight[i] = xb[i] * xb[i];
  }
}

// IQ1_M's shift choice k of a 16-element block: bit 1 for the first 8 (0: +δ), bit 0 for the
// second 8 — ggml's order {++, +-, -+, --}.
const float* iq1m_shift_values(int k, int half) {
  const bool plus = half == 0 ? k < 2 : k % 2 == 0;
  return plus ? kShiftPlus : kShiftMinus;
}

}  // namespace

void quantize_row_iq1_s(const float* x, BlockIQ1_S* y, int64_t n, const float* qw) {
  LOWBIT_CHECK(qw != nullptr, "IQ1_S needs importance weights");
  constexpr int kBlock = 32;
  const IqGridIndex& grid = iq_grid_index(IqGrid::kIq1s);
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    BlockIQ1_S& b = y[ibl];
    b.d = fp16(0.f);
    std::memset(b.qs, 0, sizeof(b.qs));
    std::memset(b.qh, 0, sizeof(b.qh));
    const float* xbl = x + kQK_K_IQ * ibl;
    float scales[kQK_K_IQ / kBlock];
    int8_t shifts[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock];
      block_weights(kBlock, xb, qw + kQK_K_IQ * ibl + kBlock * ib, sigma2, weight);
      scales[ib] = 0;
      shifts[ib] = 1;
      if (max_abs(xb, kBlock) < kEpsS) continue;
      int idx[kBlock];
      order_by_value<kBlock>(xb, idx);
      float sumx[kBlock + 1], sumw[kBlock + 1];  // prefix sums over the sorted order
      sumx[0] = sumw[0] = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int i = idx[j];
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
      }
      float best_score = -FLT_MAX, scale = max_abs(xb, kBlock);
      int besti1 = -1, besti2 = -1, best_shift = 0;
      for (int i1 = 0; i1 <= kBlock; ++i1) {
        for (int i2 = i1; i2 <= kBlock; ++i2) {
          for (int shift : {1, -1}) {
            const float* v = shift == 1 ? kShiftPlus : kShiftMinus;
            const float sumqx = (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] +
                                (sumx[kBlock] - sumx[i2]) * v[2];
            const float sumq2 = (sumw[i1] - sumw[0]) * v[0] * v[0] +
                                (sumw[i2] - sumw[i1]) * v[1] * v[1] +
                                (sumw[kBlock] - sumw[i2]) * v[2] * v[2];
            if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
              scale = sumqx / sumq2;
              best_score = scale * sumqx;
              besti1 = i1;
              besti2 = i2;
              best_shift = shift;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_shift == 0) continue;
      int8_t L[kBlock];
      split_levels<kBlock>(idx, besti1, besti2, L);
      if (scale < 0) {  // mirror the levels: -(v[l]) of one shift is v[2-l] of the other
        for (int8_t& l : L) l = int8_t(2 - l);
        scale = -scale;
        best_shift = -best_shift;
      }
      const float* xx = best_shift == 1 ? kShiftPlus : kShiftMinus;
      bool all_on_grid = true;
      int index[kBlock / 8];
      for (int k = 0; k < kBlock / 8; ++k)
        index[k] =
            snap_to_grid(grid, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k, &all_on_grid);
      if (!all_on_grid) {  // refit the scale to the snapped points
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < kBlock / 8; ++k) {
          const auto& pg = grid.odd_values(index[k]);
          for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j];
            const float q = xx[(pg[size_t(j)] - 1) / 2];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
          }
        }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
      }
      uint16_t h = 0;
      for (int k = 0; k < kBlock / 8; ++k) {
        b.qs[(kBlock / 8) * ib + k] = uint8_t(index[k] & 255);
        h |= uint16_t((index[k] >> 8) << 3 * k);
      }
      b.qh[ib] = h;
      scales[ib] = scale;
      shifts[ib] = int8_t(best_shift);
      max_scale = ggml_max(max_scale, scale);
    }
    if (!max_scale) continue;
    const float d = max_scale / 15;
    b.d = fp16(d * kFudgeS);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      int l = nearest_int(0.5f * (id * scales[ib] - 1));
      l = std::max(0, std::min(7, l));
      if (shifts[ib] == -1) l |= 8;
      b.qh[ib] |= uint16_t(l << 12);
    }
  }
}

void quantize_row_iq1_m(const float* x, BlockIQ1_M* y, int64_t n, const float* qw) {
  constexpr int kBlock = 16, kHalf = kBlock / 2;
  constexpr uint8_t kShiftMasks[4] = {0x00, 0x80, 0x08, 0x88};  // qh delta-sign bits per k
  const IqGridIndex& grid = iq_grid_index(IqGrid::kIq1s);
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    BlockIQ1_M& b = y[ibl];
    std::memset(b.qs, 0, sizeof(b.qs));
    std::memset(b.qh, 0, sizeof(b.qh));
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw ? qw + kQK_K_IQ * ibl : nullptr;
    float scales[kQK_K_IQ / kBlock];
    int8_t shifts[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock];
      block_weights(kBlock, xb, qwbl ? qwbl + kBlock * ib : nullptr, sigma2, weight);
      scales[ib] = 0;
      shifts[ib] = 0;
      if (max_abs(xb, kBlock) < kEpsM) continue;
      int idx[kBlock];
      order_by_value<kBlock>(xb, idx);
      // Prefix sums per half (each half picks its own shift). Since v[0]-v[1] = v[1]-v[2] = -1
      // for both shifts, a split's Σw·x·v collapses to T·v[2] - px[i1] - px[i2].
      float px[2][kBlock + 1], pw[2][kBlock + 1];
      px[0][0] = px[1][0] = 0;
      pw[0][0] = pw[1][0] = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int i = idx[j];
        const int h = i < kHalf ? 0 : 1;
        px[h][j + 1] = px[h][j] + weight[i] * xb[i];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + weight[i];
        pw[1 - h][j + 1] = pw[1 - h][j];
      }
      const float txs[2] = {px[0][kBlock], px[1][kBlock]};
      const float tws[2] = {pw[0][kBlock], pw[1][kBlock]};
      const float p2 = kShiftPlus[2], m2 = kShiftMinus[2];
      const float cp1 = kShiftPlus[0] * kShiftPlus[0] - kShiftPlus[1] * kShiftPlus[1];
      const float cp2 = kShiftPlus[1] * kShiftPlus[1] - kShiftPlus[2] * kShiftPlus[2];
      const float cm1 = kShiftMinus[0] * kShiftMinus[0] - kShiftMinus[1] * kShiftMinus[1];
      const float cm2 = kShiftMinus[1] * kShiftMinus[1] - kShiftMinus[2] * kShiftMinus[2];
      float best_score = -FLT_MAX, scale = max_abs(xb, kBlock);
      int besti1 = -1, besti2 = -1, best_k = -1;
      for (int i1 = 0; i1 <= kBlock; ++i1) {
        for (int i2 = i1; i2 <= kBlock; ++i2) {
          float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
          for (int h = 0; h < 2; ++h) {
            const float sx = px[h][i1] + px[h][i2];
            qx_p[h] = txs[h] * p2 - sx;
            qx_m[h] = txs[h] * m2 - sx;
            q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
            q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
          }
          const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1],
                                  qx_m[0] + qx_m[1]};
          const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1],
                                  q2_m[0] + q2_m[1]};
          for (int k = 0; k < 4; ++k) {
            if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
              scale = sumqx[k] / sumq2[k];
              best_score = scale * sumqx[k];
              besti1 = i1;
              besti2 = i2;
              best_k = k;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_k < 0) continue;
      int8_t L[kBlock];
      split_levels<kBlock>(idx, besti1, besti2, L);
      if (scale < 0) {  // mirror levels and both halves' shifts (k -> 3 - k)
        for (int8_t& l : L) l = int8_t(2 - l);
        scale = -scale;
        best_k = 3 - best_k;
      }
      bool all_on_grid = true;
      int index[2];
      for (int k = 0; k < 2; ++k)
        index[k] = snap_to_grid(grid, xb + 8 * k, weight + 8 * k, scale,
                                iq1m_shift_values(best_k, k), L + 8 * k, &all_on_grid);
      if (!all_on_grid) {
        float sumqx_f = 0, sumq2_f = 0;
        for (int k = 0; k < 2; ++k) {
          const float* xx = iq1m_shift_values(best_k, k);
          const auto& pg = grid.odd_values(index[k]);
          for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j];
            const float q = xx[(pg[size_t(j)] - 1) / 2];
            sumqx_f += w * q * xb[8 * k + j];
            sumq2_f += w * q * q;
          }
        }
        if (sumqx_f > 0 && sumq2_f > 0) scale = sumqx_f / sumq2_f;
      }
      b.qs[2 * ib + 0] = uint8_t(index[0] & 255);
      b.qs[2 * ib + 1] = uint8_t(index[1] & 255);
      b.qh[ib] = uint8_t((index[0] >> 8) | ((index[1] >> 8) << 4));
      scales[ib] = scale;
      shifts[ib] = int8_t(best_k);
      max_scale = ggml_max(max_scale, scale);
    }
    uint16_t sc[4] = {};  // 16 3-bit block scales; the fp16 d goes into their top nibbles
    if (!max_scale) {
      std::memcpy(b.scales, sc, sizeof(sc));
      continue;
    }
    float d = max_scale / 15;
    const float id = 1 / d;
    // Refit d to the chosen points and 3-bit scales over the whole super-block.
    float sumqx_f = 0, sumq2_f = 0;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      int l = nearest_int(0.5f * (id * scales[ib] - 1));
      l = std::max(0, std::min(7, l));
      sc[ib / 4] |= uint16_t(l << 3 * (ib % 4));
      b.qh[ib] |= kShiftMasks[shifts[ib]];
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock];
      block_weights(kBlock, xb, qwbl ? qwbl + kBlock * ib : nullptr, sigma2, weight);
      for (int k = 0; k < 2; ++k) {
        const float* xx = iq1m_shift_values(shifts[ib], k);
        const int index = b.qs[2 * ib + k] + ((b.qh[ib] << (8 - 4 * k)) & 0x700);
        const auto& pg = grid.odd_values(index);
        for (int j = 0; j < 8; ++j) {
          const float w = weight[8 * k + j];
          const float q = xx[(pg[size_t(j)] - 1) / 2] * (2 * l + 1);
          sumqx_f += w * q * xb[8 * k + j];
          sumq2_f += w * q * q;
        }
      }
    }
    if (sumq2_f > 0) d = sumqx_f / sumq2_f;
    const uint16_t dh = fp16(d * kFudgeM);
    sc[0] |= uint16_t((dh & 0x000f) << 12);
    sc[1] |= uint16_t((dh & 0x00f0) << 8);
    sc[2] |= uint16_t((dh & 0x0f00) << 4);
    sc[3] |= uint16_t(dh & 0xf000);
    std::memcpy(b.scales, sc, sizeof(sc));
  }
}

}  // namespace lowbit::kernels::cpu::gguf_detail
