// Steps shared by the IQ2_* / IQ3_* quantizers (see gguf_quantize_iq_common.h).
#include "kernels/cpu/gguf_quantize_iq_common.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/gguf_quantize_search.h"

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

uint32_t key_of(const IqGridIndex& g, const int8_t* L) {
  uint32_t key = 0;
  for (int i = 0; i < g.group(); ++i) key |= uint32_t(L[i]) << (g.bits() * i);
  return key;
}

// ggml's iq{2,3}_find_best_neighbour: the neighbour of `key` nearest to xval / scale in
// waux-weighted squared distance (the first on ties); writes its levels to L.
int best_neighbour(const IqGridIndex& g, uint32_t key, const float* xval, const float* waux,
                   float scale, int8_t* L) {
  float best_d2 = FLT_MAX;
  int best = -1;
  for (uint16_t j : g.neighbours(key)) {
    const auto& pg = g.odd_values(j);
    float d2 = 0;
    for (int i = 0; i < g.group(); ++i) {
      const float q = pg[size_t(i)];
      const float diff = scale * q - xval[i];
      d2 += waux[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = j;
    }
  }
  LOWBIT_CHECK(best >= 0, "IQ grid search: no neighbour of key {} fits (non-finite input?)", key);
  g.levels(best, L);
  return best;
}

// Rounds one group to levels at inverse scale id; snaps it to the grid. Returns whether the
// rounded levels were a grid point already.
bool round_group(const IqSearch& p, float id, float this_scale, const float* xval,
                 const float* waux, int8_t* L) {
  const IqGridIndex& g = *p.grid;
  for (int i = 0; i < g.group(); ++i) {
    const int l = nearest_int(0.5f * (id * xval[i] - 1));
    L[i] = int8_t(std::max(0, std::min(p.kmax_q - 1, l)));
  }
  const uint32_t key = key_of(g, L);
  if (g.find(key) >= 0) return true;
  best_neighbour(g, key, xval, waux, this_scale, L);
  return false;
}

// Σ w·x·q and Σ w·q² of levels L (q = 2l + 1).
void weighted_fit(int n, const float* xval, const float* weight, const int8_t* L, float* sumqx,
                  float* sumq2) {
  float qx = 0, q2 = 0;
  for (int i = 0; i < n; ++i) {
    const float w = weight[i];
    const float q = 2 * L[i] + 1;
    qx += w * xval[i] * q;
    q2 += w * q * q;
  }
  *sumqx = qx;
  *sumq2 = q2;
}

}  // namespace

float iq_sum_x2(const float* xbl) {
  float sumx2 = 0;
  for (int i = 0; i < kQK_K_IQ; ++i) sumx2 += xbl[i] * xbl[i];
  return sumx2;
}

void iq_block_weights(int n, const float* xb, const float* qw, float sigma2, float no_imatrix_bias,
                      float* weight, float* waux) {
  if (qw) {
    for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else if (no_imatrix_bias != 0) {
    for (int i = 0; i < n; ++i) weight[i] = no_imatrix_bias + xb[i] * xb[i];
  } else {
    for (int i = 0; i < n; ++i) weight[i] = xb[i] * xb[i];
  }
  for (int i = 0; i < n; ++i) waux[i] = std::sqrt(weight[i]);
}

uint8_t iq_signs_plain(const float* x8, float* xval8) {
  uint8_t s = 0;
  for (int i = 0; i < 8; ++i) {
    if (x8[i] >= 0) {
      xval8[i] = x8[i];
    } else {
      xval8[i] = -x8[i];
      s |= uint8_t(1 << i);
    }
  }
  return s;
}

uint8_t iq_signs_even(const float* x8, const float* weight8, float* xval8) {
  uint8_t s = iq_signs_plain(x8, xval8);
  if (std::popcount(s) % 2) {
    int imin = 0;
    float min = weight8[0] * x8[0] * x8[0];
    for (int i = 1; i < 8; ++i) {
      const float ax = weight8[i] * x8[i] * x8[i];
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    xval8[imin] = -xval8[imin];
    s ^= uint8_t(1 << imin);
  }
  return s & 127;
}

void iq_block_signs_even(int n, const float* xb, const float* weight, float* xval, uint8_t* signs) {
  for (int k = 0; k < n / 8; ++k)
    signs[k] = iq_signs_even(xb + 8 * k, weight + 8 * k, xval + 8 * k);
}

float iq_max(int n, const float* xval) {
  float max = xval[0];
  for (int i = 1; i < n; ++i) max = ggml_max(max, xval[i]);
  return max;
}

float iq_search_block(const IqSearch& p, int n, const float* xval, const float* weight,
                      const float* waux, float denom, float scale, int8_t* L) {
  const int group = p.grid->group();
  const int n_groups = n / group;
  bool on_grid[8], on_grid_aux[8];  // n_groups <= 8
  int8_t Laux[32];
  std::fill(on_grid, on_grid + n_groups, p.assume_on_grid);
  std::memset(L, 0, size_t(n));
  float best = 0;
  for (int is = -p.n_try; is <= p.n_try; ++is) {
    const float id = (2 * p.kmax_q - 1 + is * p.step) / denom;
    const float this_scale = 1 / id;
    for (int k = 0; k < n_groups; ++k)
      on_grid_aux[k] =
          round_group(p, id, this_scale, xval + group * k, waux + group * k, Laux + group * k);
    float sumqx, sumq2;
    weighted_fit(n, xval, weight, Laux, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, Laux, size_t(n));
      std::copy(on_grid_aux, on_grid_aux + n_groups, on_grid);
    }
  }
  const bool any_off_grid = std::find(on_grid, on_grid + n_groups, false) != on_grid + n_groups;
  const bool refit = p.refit == IqRefit::kAllGroups ? scale > 0 : any_off_grid && scale > 0;
  if (refit) {
    const float id = 1 / scale;
    for (int k = 0; k < n_groups; ++k) {
      if (p.refit == IqRefit::kOffGridGroups && on_grid[k]) continue;
      round_group(p, id, scale, xval + group * k, waux + group * k, L + group * k);
    }
    float sumqx, sumq2;
    weighted_fit(n, xval, weight, L, &sumqx, &sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  return scale;
}

int iq_grid_index_of(const IqGridIndex& g, const int8_t* L) {
  const int index = g.find(key_of(g, L));
  LOWBIT_CHECK(index >= 0, "IQ quantizer: levels of key {} are not on the grid", key_of(g, L));
  return index;
}

int iq_scale_nibble(float id, float scale) {
  const int l = nearest_int(0.5f * (id * scale - 1));
  return std::max(0, std::min(15, l));
}

}  // namespace lowbit::kernels::cpu::gguf_detail
