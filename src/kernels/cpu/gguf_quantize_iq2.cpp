// IQ2_XXS / IQ2_XS / IQ2_S quantizers (see gguf_quantize_iq2.h). Per block (32 elements for
// IQ2_XXS, 16 for the others): signs, a search over 8-element points of the IQ2 grid
// (gguf_quantize_iq_common.h) and a block scale; per 256 one fp16 d = max block scale / 31 (IQ2_S
// times ggml's fudge factor) and 4-bit block scales.
#include "kernels/cpu/gguf_quantize_iq2.h"

#include <cstring>

#include "core/error.h"
#include "kernels/cpu/gguf_quantize_iq_common.h"
#include "kernels/cpu/gguf_quantize_search.h"

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

constexpr int kMaxQ = 3;            // levels 0..2
constexpr float kEpsS = 1e-8f;      // ggml's GROUP_MAX_EPS_IQ2_S (the others: kGroupMaxEps)
constexpr float kFudgeS = 0.9875f;  // ggml's IQ2_S d multiplier

}  // namespace

void quantize_row_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t n, const float* qw) {
  LOWBIT_CHECK(qw != nullptr, "IQ2_XXS needs importance weights");
  constexpr int kBlock = 32;
  const IqSearch search{&iq_grid_index(IqGrid::kIq2xxs), kMaxQ, 6, 0.1f, IqRefit::kAllGroups, true};
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw + kQK_K_IQ * ibl;
    // Per block two u32: 4 grid indices (one byte each), then 4×7 sign bits | scale << 28.
    uint32_t q2[2 * (kQK_K_IQ / kBlock)] = {};
    float scales[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock], waux[kBlock], xval[kBlock];
      int8_t L[kBlock];
      iq_block_weights(kBlock, xb, qwbl + kBlock * ib, sigma2, 0.f, weight, waux);
      uint8_t block_signs[4];
      iq_block_signs_even(kBlock, xb, weight, xval, block_signs);
      const float max = iq_max(kBlock, xval);
      if (max < kGroupMaxEps) {
        scales[ib] = 0;
        continue;
      }
      // IQ2_XXS alone starts from make_qp_quants' scale and tries around its effective max.
      uint8_t qp_levels[kBlock];
      float scale = make_qp_quants(kBlock, kMaxQ + 1, xval, qp_levels, weight);
      const float eff_max = scale * kMaxQ;
      if (eff_max <= 0) {
        scales[ib] = 0;
        continue;
      }
      scale = iq_search_block(search, kBlock, xval, weight, waux, eff_max, scale, L);
      if (scale < 0) {
        scale = -scale;
        for (uint8_t& s : block_signs) s = uint8_t(~s & 127);
      }
      for (int k = 0; k < 4; ++k) {
        q2[2 * ib + 0] |= uint32_t(iq_grid_index_of(*search.grid, L + 8 * k)) << 8 * k;
        q2[2 * ib + 1] |= uint32_t(block_signs[k]) << 7 * k;
      }
      scales[ib] = scale;
      max_scale = ggml_max(max_scale, scale);
    }
    y[ibl].d = fp16(0.f);
    if (!max_scale) {
      std::memset(y[ibl].qs, 0, sizeof(y[ibl].qs));
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = fp16(d);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib)
      q2[2 * ib + 1] |= uint32_t(iq_scale_nibble(id, scales[ib])) << 28;
    std::memcpy(y[ibl].qs, q2, sizeof(q2));
  }
}

void quantize_row_iq2_xs(const float* x, BlockIQ2_XS* y, int64_t n, const float* qw) {
  LOWBIT_CHECK(qw != nullptr, "IQ2_XS needs importance weights");
  constexpr int kBlock = 16;
  const IqSearch search{&iq_grid_index(IqGrid::kIq2xs), kMaxQ, 9, 0.1f,
                        IqRefit::kOffGridGroups,        true};
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    BlockIQ2_XS& b = y[ibl];
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw + kQK_K_IQ * ibl;
    uint16_t q2[2 * (kQK_K_IQ / kBlock)] = {};  // 9-bit grid index | 7 sign bits << 9
    std::memset(b.scales, 0, sizeof(b.scales));
    float scales[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock], waux[kBlock], xval[kBlock];
      int8_t L[kBlock];
      iq_block_weights(kBlock, xb, qwbl + kBlock * ib, sigma2, 0.f, weight, waux);
      uint8_t block_signs[2];
      iq_block_signs_even(kBlock, xb, weight, xval, block_signs);
      const float max = iq_max(kBlock, xval);
      if (max < kGroupMaxEps) {
        scales[ib] = 0;
        continue;
      }
      float scale =
          iq_search_block(search, kBlock, xval, weight, waux, max, max / (2 * kMaxQ - 1), L);
      if (scale < 0) {
        scale = -scale;
        for (uint8_t& s : block_signs) s = uint8_t(~s & 127);
      }
      for (int k = 0; k < 2; ++k)
        q2[2 * ib + k] =
            uint16_t(iq_grid_index_of(*search.grid, L + 8 * k) | (block_signs[k] << 9));
      scales[ib] = scale;
      max_scale = ggml_max(max_scale, scale);
    }
    b.d = fp16(0.f);
    if (!max_scale) {
      std::memset(b.qs, 0, sizeof(b.qs));
      continue;
    }
    const float d = max_scale / 31;
    b.d = fp16(d);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const int l = iq_scale_nibble(id, scales[ib]);
      if (ib % 2 == 0)
        b.scales[ib / 2] = uint8_t(l);
      else
        b.scales[ib / 2] |= uint8_t(l << 4);
    }
    std::memcpy(b.qs, q2, sizeof(q2));
  }
}

void quantize_row_iq2_s(const float* x, BlockIQ2_S* y, int64_t n, const float* qw) {
  constexpr int kBlock = 16;
  const IqSearch search{&iq_grid_index(IqGrid::kIq2s), kMaxQ, 9, 0.1f,
                        IqRefit::kOffGridGroups,       true};
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    BlockIQ2_S& b = y[ibl];
    std::memset(&b, 0, sizeof(b));
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw ? qw + kQK_K_IQ * ibl : nullptr;
    float scales[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock], waux[kBlock], xval[kBlock];
      int8_t L[kBlock];
      iq_block_weights(kBlock, xb, qwbl ? qwbl + kBlock * ib : nullptr, sigma2, 0.25f * sigma2,
                       weight, waux);
      uint8_t block_signs[2];
      for (int k = 0; k < 2; ++k) block_signs[k] = iq_signs_plain(xb + 8 * k, xval + 8 * k);
      const float max = iq_max(kBlock, xval);
      if (max < kEpsS) {
        scales[ib] = 0;
        continue;
      }
      float scale =
          iq_search_block(search, kBlock, xval, weight, waux, max, max / (2 * kMaxQ - 1), L);
      if (scale < 0) {
        scale = -scale;
        for (uint8_t& s : block_signs) s = uint8_t(~s);
      }
      for (int k = 0; k < 2; ++k) {
        const int index = iq_grid_index_of(*search.grid, L + 8 * k);
        const int i8 = 2 * ib + k;
        b.qs[i8] = uint8_t(index & 255);
        b.qh[i8 / 4] |= uint8_t((index >> 8) << 2 * (i8 % 4));
        b.qs[kQK_K_IQ / 8 + i8] = block_signs[k];
      }
      scales[ib] = scale;
      max_scale = ggml_max(max_scale, scale);
    }
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = fp16(d * kFudgeS);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const int l = iq_scale_nibble(id, scales[ib]);
      if (ib % 2 == 0)
        b.scales[ib / 2] = uint8_t(l);
      else
        b.scales[ib / 2] |= uint8_t(l << 4);
    }
  }
}

}  // namespace lowbit::kernels::cpu::gguf_detail
