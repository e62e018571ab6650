// IQ3_XXS / IQ3_S quantizers (see gguf_quantize_iq3.h). Per 32 elements: signs, a search over
// 4-element points of the IQ3 grid (gguf_quantize_iq_common.h) and a block scale; per 256 one
// fp16 super-scale d = max block scale / 31 (times ggml's fudge factor) and 4-bit block scales.
#include "kernels/cpu/gguf_quantize_iq3.h"

#include <cstring>

#include "kernels/cpu/gguf_quantize_iq_common.h"
#include "kernels/cpu/gguf_quantize_search.h"

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

constexpr int kBlock = 32;                              // elements per block scale
constexpr int kMaxQ = 8;                                // levels 0..7
constexpr float kEpsXxs = 1e-8f;                        // ggml's GROUP_MAX_EPS_IQ3_XXS
constexpr float kFudgeXxs = 1.0125f, kFudgeS = 1.033f;  // ggml's d multipliers

}  // namespace

void quantize_row_iq3_xxs(const float* x, BlockIQ3_XXS* y, int64_t n, const float* qw) {
  const IqSearch search{&iq_grid_index(IqGrid::kIq3xxs), kMaxQ, 15, 0.2f,
                        IqRefit::kOffGridGroups,         true};
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw ? qw + kQK_K_IQ * ibl : nullptr;
    // qs: [0,64) one grid index per 4 elements; [64,96) per block u32 = 4×7 sign bits | scale.
    uint8_t q3[96] = {};
    uint32_t scales_and_signs[kQK_K_IQ / kBlock] = {};
    float scales[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock], waux[kBlock], xval[kBlock];
      int8_t L[kBlock];
      iq_block_weights(kBlock, xb, qwbl ? qwbl + kBlock * ib : nullptr, sigma2, 0.f, weight, waux);
      uint8_t block_signs[4];
      iq_block_signs_even(kBlock, xb, weight, xval, block_signs);
      const float max = iq_max(kBlock, xval);
      if (max < kEpsXxs) {
        scales[ib] = 0;
        continue;
      }
      float scale =
          iq_search_block(search, kBlock, xval, weight, waux, max, max / (2 * kMaxQ - 1), L);
      if (scale < 0) {  // rare (only parity-flipped xval are negative): flip the signs
        scale = -scale;
        for (uint8_t& s : block_signs) s = uint8_t(~s & 127);
      }
      for (int k = 0; k < kBlock / 4; ++k)
        q3[8 * ib + k] = uint8_t(iq_grid_index_of(*search.grid, L + 4 * k));
      scales_and_signs[ib] = uint32_t(block_signs[0]) | uint32_t(block_signs[1]) << 7 |
                             uint32_t(block_signs[2]) << 14 | uint32_t(block_signs[3]) << 21;
      scales[ib] = scale;
      max_scale = ggml_max(max_scale, scale);
    }
    y[ibl].d = fp16(0.f);
    if (!max_scale) {
      std::memset(y[ibl].qs, 0, sizeof(y[ibl].qs));
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = fp16(d * kFudgeXxs);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib)
      scales_and_signs[ib] |= uint32_t(iq_scale_nibble(id, scales[ib])) << 28;
    std::memcpy(q3 + 64, scales_and_signs, sizeof(scales_and_signs));
    std::memcpy(y[ibl].qs, q3, sizeof(q3));
  }
}

void quantize_row_iq3_s(const float* x, BlockIQ3_S* y, int64_t n, const float* qw) {
  const IqSearch search{&iq_grid_index(IqGrid::kIq3s),     kMaxQ, 9, 0.2f,
                        IqRefit::kAllGroupsWhenAnyOffGrid, false};
  constexpr int kGroups = kBlock / 4, kSignBytes = kBlock / 8;
  for (int64_t ibl = 0; ibl < n / kQK_K_IQ; ++ibl) {
    BlockIQ3_S& b = y[ibl];
    std::memset(&b, 0, sizeof(b));
    const float* xbl = x + kQK_K_IQ * ibl;
    const float* qwbl = qw ? qw + kQK_K_IQ * ibl : nullptr;
    // ggml advances its qs / signs cursors only past blocks it stores: after an all-zero block
    // the next block's indices and signs land in the zero block's slots (kept for the bytes).
    uint8_t* qs = b.qs;
    uint8_t* signs = b.signs;
    float scales[kQK_K_IQ / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * iq_sum_x2(xbl) / kQK_K_IQ;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock], waux[kBlock], xval[kBlock];
      int8_t L[kBlock];
      iq_block_weights(kBlock, xb, qwbl ? qwbl + kBlock * ib : nullptr, sigma2, 0.f, weight, waux);
      uint8_t block_signs[kSignBytes];
      for (int k = 0; k < kSignBytes; ++k)
        block_signs[k] = iq_signs_plain(xb + 8 * k, xval + 8 * k);
      const float max = iq_max(kBlock, xval);
      if (!max) {
        scales[ib] = 0;
        continue;
      }
      float scale =
          iq_search_block(search, kBlock, xval, weight, waux, max, max / (2 * kMaxQ - 1), L);
      if (scale < 0) {
        scale = -scale;
        for (uint8_t& s : block_signs) s = uint8_t(~s);
      }
      for (int k = 0; k < kGroups; ++k) {
        const int index = iq_grid_index_of(*search.grid, L + 4 * k);
        const int slot = ib * kGroups + k;
        qs[k] = uint8_t(index & 255);
        b.qh[slot / 8] |= uint8_t((index >> 8) << (slot % 8));
      }
      qs += kGroups;
      std::memcpy(signs, block_signs, kSignBytes);
      signs += kSignBytes;
      scales[ib] = scale;
      max_scale = ggml_max(max_scale, scale);
    }
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = fp16(d * kFudgeS);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K_IQ / kBlock; ib += 2)
      b.scales[ib / 2] =
          uint8_t(iq_scale_nibble(id, scales[ib]) | (iq_scale_nibble(id, scales[ib + 1]) << 4));
  }
}

}  // namespace lowbit::kernels::cpu::gguf_detail
