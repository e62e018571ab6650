// Reference decoders of the GGUF K / IQ / TQ / MXFP4 formats (gguf_dequantize.h). Each line
// keeps ggml's fp32 operation order (e.g. Q4_K: (d·sc)·q − (dmin·mn); IQ2_*: (db·grid)·sign)
// so results are bit-exact; this file is built without FMA flags, so nothing is contracted.
#include "kernels/cpu/gguf_dequantize.h"

#include <cstring>

#include "core/half.h"
#include "kernels/cpu/gguf_grids.h"

namespace lowbit::kernels::cpu {
namespace {

inline float sign_of(uint8_t signs, int j) { return (signs >> j) & 1 ? -1.0f : 1.0f; }

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

// 16 sub-blocks of 16: y = (d·scale)·q − (dmin·min), q = 2 bits of qs.
void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {  // elements l and 16 + l of this 32-chunk
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * float((q[16 * part + l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

// 16 sub-blocks of 16, signed 6-bit scales; q = low 2 bits − (hmask bit ? 0 : 4).
void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* s = x[i].scales;
    int8_t scales[16];
    for (int j = 0; j < 16; ++j) {
      const int low4 = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
      const int high2 = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
      scales[j] = int8_t((low4 | high2 << 4) - 32);
    }
    const uint8_t* q = x[i].qs;
    uint8_t m = 1;  // hmask bit of the current 32-element chunk
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1)) {
        for (int part = 0; part < 2; ++part) {
          const float dl = d * float(scales[is++]);
          for (int l = 0; l < 16; ++l) {
            const int lo = (q[16 * part + l] >> shift) & 3;
            const int hi = (x[i].hmask[16 * part + l] & m) ? 0 : 4;
            *y++ = dl * float(lo - hi);
          }
        }
      }
    }
  }
}

// 8 sub-blocks of 32 with 6-bit scale and min: y = (d·sc)·q − (dmin·mn).
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(2 * c, x[i].scales, &sc, &mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

// As Q4_K with a 5th bit per element from qh (bit 2c / 2c+1 of qh[l] in chunk c).
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t sc, mn;
      get_scale_min_k4(2 * c, x[i].scales, &sc, &mn);
      const float d1 = d * float(sc), m1 = dmin * float(mn);
      get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &mn);
      const float d2 = d * float(sc), m2 = dmin * float(mn);
      const uint8_t u1 = uint8_t(1 << (2 * c)), u2 = uint8_t(2 << (2 * c));
      for (int l = 0; l < 32; ++l)
        *y++ = d1 * float((q[l] & 0xF) + (x[i].qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((q[l] >> 4) + (x[i].qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// 16 sub-blocks of 16 with int8 scales: y = (d·scale)·(q − 32), q = 4 low + 2 high bits.
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        y[l] = d * float(sc[is + 0]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i, y += kQK_K) {
    float d;
    std::memcpy(&d, &x[i].d, 4);
    for (int j = 0; j < kQK_K; ++j) y[j] = d * float(x[i].qs[j]);
  }
}

// Per 32 elements: 4 grid indices (bytes), then a u32 with 4×7 sign-index bits and a 4-bit
// scale: db = d·(0.5 + scale)·0.25, y = (db·grid)·sign.
void dequantize_row_iq2_xxs(const BlockIQ2_XXS* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const auto* qs = reinterpret_cast<const uint8_t*>(x[i].qs);
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* idx = qs + 8 * ib;
      const uint32_t aux = load_u32(qs + 8 * ib + 4);
      const float db = d * (0.5f + float(aux >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint8_t* grid = kIq2xxsGrid[idx[l]];
        const uint8_t signs = kKsignsIq2xs[(aux >> (7 * l)) & 127];
        for (int j = 0; j < 8; ++j) y[j] = db * float(grid[j]) * sign_of(signs, j);
      }
    }
  }
}

// Per 8 elements a u16: 9-bit grid index, 7-bit sign index; two 4-bit scales per 32.
void dequantize_row_iq2_xs(const BlockIQ2_XS* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {d * (0.5f + float(x[i].scales[ib] & 0xF)) * 0.25f,
                           d * (0.5f + float(x[i].scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, y += 8) {
        uint16_t q;
        std::memcpy(&q, &x[i].qs[4 * ib + l], 2);
        const uint8_t* grid = kIq2xsGrid[q & 511];
        const uint8_t signs = kKsignsIq2xs[q >> 9];
        for (int j = 0; j < 8; ++j) y[j] = db[l / 2] * float(grid[j]) * sign_of(signs, j);
      }
    }
  }
}

// 10-bit grid indices (qs low byte, 2 bits of qh), explicit sign bytes, 4-bit scales per 16.
void dequantize_row_iq2_s(const BlockIQ2_S* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* qs = x[i].qs;
    const uint8_t* signs = x[i].qs + kQK_K / 8;
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {d * (0.5f + float(x[i].scales[ib] & 0xF)) * 0.25f,
                           d * (0.5f + float(x[i].scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, y += 8) {
        const int index = qs[4 * ib + l] | ((x[i].qh[ib] >> (2 * l)) & 3) << 8;
        const uint8_t* grid = kIq2sGrid[index];
        for (int j = 0; j < 8; ++j)
          y[j] = db[l / 2] * float(grid[j]) * sign_of(signs[4 * ib + l], j);
      }
    }
  }
}

// 64 grid bytes (4 values each), then per 32 elements a u32 of 4×7 sign-index bits | scale:
// db = d·(0.5 + scale)·0.5.
void dequantize_row_iq3_xxs(const BlockIQ3_XXS* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* qs = x[i].qs;
    const uint8_t* scales_and_signs = x[i].qs + kQK_K / 4;
    for (int ib = 0; ib < 8; ++ib, qs += 8) {
      const uint32_t aux = load_u32(scales_and_signs + 4 * ib);
      const float db = d * (0.5f + float(aux >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint8_t signs = kKsignsIq2xs[(aux >> (7 * l)) & 127];
        const uint8_t* g1 = kIq3xxsGrid[qs[2 * l]];
        const uint8_t* g2 = kIq3xxsGrid[qs[2 * l + 1]];
        for (int j = 0; j < 4; ++j) {
          y[j] = db * float(g1[j]) * sign_of(signs, j);
          y[j + 4] = db * float(g2[j]) * sign_of(signs, j + 4);
        }
      }
    }
  }
}

// 9-bit grid indices (qs byte + one qh bit), explicit sign bits, db = d·(1 + 2·scale).
void dequantize_row_iq3_s(const BlockIQ3_S* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const int scale = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
      const float db = d * float(1 + 2 * scale);
      for (int g = 8 * ib; g < 8 * ib + 8; ++g, y += 4) {  // groups of 4 elements
        const int index = x[i].qs[g] | ((x[i].qh[g / 8] >> (g % 8)) & 1) << 8;
        const uint8_t* grid = kIq3sGrid[index];
        const uint8_t signs = x[i].signs[g / 2];
        for (int j = 0; j < 4; ++j) y[j] = db * float(grid[j]) * sign_of(signs, 4 * (g % 2) + j);
      }
    }
  }
}

// 11-bit indices into the ternary grid; per 32: 3-bit scale dl = d·(2s + 1) and a delta
// sign: y = dl·(grid + delta).
void dequantize_row_iq1_s(const BlockIQ1_S* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      uint16_t qh;
      std::memcpy(&qh, &x[i].qh[ib], 2);
      const float dl = d * float(2 * ((qh >> 12) & 7) + 1);
      const float delta = qh & 0x8000 ? -kIq1sDelta : kIq1sDelta;
      for (int l = 0; l < 4; ++l, y += 8) {
        const int8_t* grid = kIq1sGrid[x[i].qs[4 * ib + l] | ((qh >> (3 * l)) & 7) << 8];
        for (int j = 0; j < 8; ++j) y[j] = dl * (float(grid[j]) + delta);
      }
    }
  }
}

// As IQ1_S with 3-bit scales per 16 elements and a delta sign per 8; d is assembled from
// the top nibbles of the scale words (iq1m_scale_bits).
void dequantize_row_iq1_m(const BlockIQ1_M* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(iq1m_scale_bits(x[i]));
    uint16_t sc[4];
    std::memcpy(sc, x[i].scales, 8);
    for (int ib = 0; ib < 8; ++ib) {
      const int shift = 6 * (ib % 2);
      const float dl[2] = {d * float(2 * ((sc[ib / 2] >> shift) & 7) + 1),
                           d * float(2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1)};
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint8_t qh = uint8_t(x[i].qh[2 * ib + l / 2] >> (4 * (l % 2)));
        const int8_t* grid = kIq1sGrid[x[i].qs[4 * ib + l] | (qh & 7) << 8];
        const float delta = qh & 0x08 ? -kIq1sDelta : kIq1sDelta;
        for (int j = 0; j < 8; ++j) y[j] = dl[l / 2] * (float(grid[j]) + delta);
      }
    }
  }
}

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * float(kIq4nlValues[x[i].qs[j] & 0xF]);
      y[j + 16] = d * float(kIq4nlValues[x[i].qs[j] >> 4]);
    }
  }
}

// 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l, high 2 in scales_h).
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    uint16_t scales_h;
    std::memcpy(&scales_h, &x[i].scales_h, 2);
    const uint8_t* qs = x[i].qs;
    for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
      const int ls =
          ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((scales_h >> (2 * ib)) & 3) << 4;
      const float dl = d * float(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * float(kIq4nlValues[qs[j] & 0xF]);
        y[j + 16] = dl * float(kIq4nlValues[qs[j] >> 4]);
      }
    }
  }
}

// Trits in base-3 fixed point: byte·3^n (mod 256), times 3, >> 8 is the n-th trit.
void dequantize_row_tq1_0(const BlockTQ1_0* x, float* y, int64_t k) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  auto trit = [](uint8_t byte, int n) {
    return int((uint16_t(uint8_t(byte * kPow3[n])) * 3) >> 8);
  };
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int n = 0; n < 5; ++n)  // qs[0..32): 160 elements
      for (int m = 0; m < 32; ++m) *y++ = float(trit(x[i].qs[m], n) - 1) * d;
    for (int n = 0; n < 5; ++n)  // qs[32..48): 80 elements
      for (int m = 0; m < 16; ++m) *y++ = float(trit(x[i].qs[32 + m], n) - 1) * d;
    for (int n = 0; n < 4; ++n)  // qh[0..4): 16 elements
      for (int m = 0; m < 4; ++m) *y++ = float(trit(x[i].qh[m], n) - 1) * d;
  }
}

void dequantize_row_tq2_0(const BlockTQ2_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int j = 0; j < 64; j += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int m = 0; m < 32; ++m) *y++ = float(((x[i].qs[j + m] >> shift) & 3) - 1) * d;
  }
}

void dequantize_row_mxfp4(const BlockMXFP4* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
    const float d = e8m0_to_f32_half(x[i].e);
    for (int j = 0; j < 16; ++j) {
      y[j] = float(kMxfp4Values[x[i].qs[j] & 0xF]) * d;
      y[j + 16] = float(kMxfp4Values[x[i].qs[j] >> 4]) * d;
    }
  }
}

bool dequantize_gguf_ref(DType t, const void* src, int64_t k, float* out) {
#define LOWBIT_CASE(T, fn)                                        \
  case DType::T:                                                  \
    fn(static_cast<const BlockOf<DType::T>::type*>(src), out, k); \
    return true;
  switch (t) {
    LOWBIT_CASE(Q8_1, dequantize_row_q8_1)
    LOWBIT_CASE(Q2_K, dequantize_row_q2_K)
    LOWBIT_CASE(Q3_K, dequantize_row_q3_K)
    LOWBIT_CASE(Q4_K, dequantize_row_q4_K)
    LOWBIT_CASE(Q5_K, dequantize_row_q5_K)
    LOWBIT_CASE(Q6_K, dequantize_row_q6_K)
    LOWBIT_CASE(Q8_K, dequantize_row_q8_K)
    LOWBIT_CASE(IQ2_XXS, dequantize_row_iq2_xxs)
    LOWBIT_CASE(IQ2_XS, dequantize_row_iq2_xs)
    LOWBIT_CASE(IQ2_S, dequantize_row_iq2_s)
    LOWBIT_CASE(IQ3_XXS, dequantize_row_iq3_xxs)
    LOWBIT_CASE(IQ3_S, dequantize_row_iq3_s)
    LOWBIT_CASE(IQ1_S, dequantize_row_iq1_s)
    LOWBIT_CASE(IQ1_M, dequantize_row_iq1_m)
    LOWBIT_CASE(IQ4_NL, dequantize_row_iq4_nl)
    LOWBIT_CASE(IQ4_XS, dequantize_row_iq4_xs)
    LOWBIT_CASE(TQ1_0, dequantize_row_tq1_0)
    LOWBIT_CASE(TQ2_0, dequantize_row_tq2_0)
    LOWBIT_CASE(MXFP4, dequantize_row_mxfp4)
    default:
      return false;
  }
#undef LOWBIT_CASE
}

}  // namespace lowbit::kernels::cpu
