// Ternary and MXFP4 quantizers (see the header): the order of operations follows ggml's
// reference quantizers, since fp32 rounding decides every trit and index.
#include "kernels/cpu/gguf_quantize_tq_mxfp4.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "core/half.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_grids.h"

namespace lowbit::kernels::cpu {
namespace {

float block_amax(const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

// -1, 0, 1 (times d) -> trit 0, 1, 2; lroundf rounds halves away from zero, as ggml does.
inline int trit(float x, float id) { return int(std::lround(x * id)) + 1; }

// n trits as a base-3 number scaled to a byte: ceil(v · 256 / 243) (243 = 3^5), so the
// decoder recovers trit i as ((byte · 3^i) mod 256) · 3 >> 8.
inline uint8_t pack_trits_fixed_point(unsigned v) { return uint8_t((v * 256 + 242) / 243); }

}  // namespace

void quantize_row_tq1_0(const float* x, BlockTQ1_0* y, int64_t k) {
  constexpr size_t kQs = sizeof(y->qs), kQh = sizeof(y->qh);  // 48, 4
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = block_amax(x, kQK_K);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    // Bytes 0..31: 5 trits each, elements m + 32·n.
    for (size_t j = 0; j < kQs - kQs % 32; j += 32) {
      for (size_t m = 0; m < 32; ++m) {
        uint8_t q = 0;
        for (size_t n = 0; n < 5; ++n) q = uint8_t(q * 3 + trit(x[m + n * 32], id));
        y[i].qs[j + m] = pack_trits_fixed_point(q);
      }
      x += 5 * 32;
    }
    // Bytes 32..47: 5 trits each, elements m + 16·n.
    for (size_t j = kQs - kQs % 32; j < kQs; j += 16) {
      for (size_t m = 0; m < 16; ++m) {
        uint8_t q = 0;
        for (size_t n = 0; n < 5; ++n) q = uint8_t(q * 3 + trit(x[m + n * 16], id));
        y[i].qs[j + m] = pack_trits_fixed_point(q);
      }
      x += 5 * 16;
    }
    // qh: 4 trits each (elements j + 4·m), shifted up one trit to fill the 5-trit byte.
    for (size_t j = 0; j < kQh; ++j) {
      uint8_t q = 0;
      for (size_t m = 0; m < 4; ++m) q = uint8_t(q * 3 + trit(x[j + m * kQh], id));
      y[i].qh[j] = pack_trits_fixed_point(unsigned(q) * 3);
    }
    x += 4 * kQh;
  }
}

void quantize_row_tq2_0(const float* x, BlockTQ2_0* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = block_amax(x, kQK_K);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    // Byte j + m holds elements m + 32·n (n = 0..3) of each 128-element half, 2 bits each.
    for (size_t j = 0; j < sizeof(y->qs); j += 32) {
      for (size_t m = 0; m < 32; ++m) {
        uint8_t q = 0;
        for (size_t n = 0; n < 4; ++n) q = uint8_t(q + ((trit(x[m + n * 32], id) & 3) << (2 * n)));
        y[i].qs[j + m] = q;
      }
      x += 4 * 32;
    }
  }
}

void quantize_row_mxfp4(const float* x, BlockMXFP4* y, int64_t k) {
  constexpr int kQk = 32;
  for (int64_t i = 0; i < k / kQk; ++i, x += kQk) {
    float amax = 0.0f;
    for (int j = 0; j < kQk; ++j)
      if (amax < std::fabs(x[j])) amax = std::fabs(x[j]);
    // ggml converts the float exponent straight to uint8_t; amax >= 2^-125 keeps it in range.
    const uint8_t e =
        amax > 0.0f ? uint8_t(int(std::floor(std::log2(amax)) - 2 + 127) & 0xff) : uint8_t(0);
    const float d = e8m0_to_f32_half(e);
    y[i].e = e;
    // First of the 16 table entries with the least |value·d - x| (ties keep the lower index).
    auto nearest = [d](float v) {
      int best = 0;
      float best_err = std::fabs(float(kMxfp4Values[0]) * d - v);
      for (int t = 1; t < 16; ++t) {
        const float err = std::fabs(float(kMxfp4Values[t]) * d - v);
        if (err < best_err) best = t, best_err = err;
      }
      return best;
    };
    for (int j = 0; j < kQk / 2; ++j)
      y[i].qs[j] = uint8_t(nearest(x[j]) | nearest(x[kQk / 2 + j]) << 4);
  }
}

}  // namespace lowbit::kernels::cpu
