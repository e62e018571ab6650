#include "kernels/cpu/kquant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/q8_activation.h"

namespace lowbit::kernels::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ggml's nearest_int: adding 1.5·2^23 rounds to an integer (half to even) in the mantissa.
int nearest_int(float v) {
  const float t = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007FFFFF) - 0x00400000;
}

// One Q8_K block as quantize_row_q8_K_ref; returns d (NaN for a non-finite block, then q = 0).
float q8k_block_scalar(const float* x, int8_t* q, int16_t* bsums) {
  float amax = 0.0f, max = 0.0f;
  bool finite = true;
  for (int j = 0; j < 256; ++j) {
    finite = finite && std::isfinite(x[j]);
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (!finite || amax == 0.0f) {
    std::memset(q, 0, 256);
    std::memset(bsums, 0, 32);
    return finite ? 0.0f : kNaN;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < 256; ++j) q[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += q[16 * g + l];
    bsums[g] = int16_t(sum);
  }
  return 1.0f / iscale;
}

void q8k_quantize_row_scalar(const float* x, int64_t nb, int8_t* qs, float* d, int16_t* bsums) {
  for (int64_t b = 0; b < nb; ++b)
    d[b] = q8k_block_scalar(x + 256 * b, qs + 256 * b, bsums + 16 * b);
}

bool is_q8k_format(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K ||
         t == DType::Q6_K || t == DType::IQ4_XS;
}

// ---- Scalar reference -----------------------------------------------------------------------

// One super-block as integers: weight values q (offsets applied), per-16 group scales and mins,
// value = d·sc_g·q_e − dmin·mn_g (the dequantizer's formula, gguf_dequantize.cpp).
struct RefBlock {
  int32_t q[256];
  int32_t sc[16];
  int32_t mn[16];
  float d, dmin;
};

void decode_ref(DType t, const uint8_t* p, RefBlock& r) {
  std::fill(r.mn, r.mn + 16, 0);
  r.dmin = 0.0f;
  switch (t) {
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const uint8_t* scales = five ? reinterpret_cast<const BlockQ5_K*>(p)->scales
                                   : reinterpret_cast<const BlockQ4_K*>(p)->scales;
      const uint8_t* qs = five ? reinterpret_cast<const BlockQ5_K*>(p)->qs
                               : reinterpret_cast<const BlockQ4_K*>(p)->qs;
      const uint8_t* qh = five ? reinterpret_cast<const BlockQ5_K*>(p)->qh : nullptr;
      uint16_t d, dmin;
      std::memcpy(&d, p, 2);
      std::memcpy(&dmin, p + 2, 2);
      r.d = f16_to_f32(d);
      r.dmin = f16_to_f32(dmin);
      for (int j = 0; j < 8; ++j) {  // sub-block j of 32 = groups 2j, 2j+1
        uint8_t sc, mn;
        get_scale_min_k4(j, scales, &sc, &mn);
        r.sc[2 * j] = r.sc[2 * j + 1] = sc;
        r.mn[2 * j] = r.mn[2 * j + 1] = mn;
      }
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
          if (five) {
            lo += (qh[l] >> (2 * c) & 1) << 4;
            hi += (qh[l] >> (2 * c + 1) & 1) << 4;
          }
          r.q[64 * c + l] = lo;
          r.q[64 * c + 32 + l] = hi;
        }
      return;
    }
    case DType::Q6_K: {
      const auto& b = *reinterpret_cast<const BlockQ6_K*>(p);
      r.d = f16_to_f32(b.d);
      for (int g = 0; g < 16; ++g) r.sc[g] = b.scales[g];
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const uint8_t* ql = b.ql + 64 * h;
          const int qh = b.qh[32 * h + l];
          int32_t* q = r.q + 128 * h;
          q[l] = ((ql[l] & 15) | (qh & 3) << 4) - 32;
          q[l + 32] = ((ql[l + 32] & 15) | (qh >> 2 & 3) << 4) - 32;
          q[l + 64] = ((ql[l] >> 4) | (qh >> 4 & 3) << 4) - 32;
          q[l + 96] = ((ql[l + 32] >> 4) | (qh >> 6 & 3) << 4) - 32;
        }
      return;
    }
    case DType::Q2_K:
    case DType::Q3_K: {
      const bool three = t == DType::Q3_K;
      const uint8_t* qs;
      if (three) {
        const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
        r.d = f16_to_f32(b.d);
        for (int s = 0; s < 16; ++s) {
          const int low4 = s < 8 ? b.scales[s] & 15 : b.scales[s - 8] >> 4;
          const int high2 = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
          r.sc[s] = (low4 | high2 << 4) - 32;
        }
        qs = b.qs;
      } else {
        const auto& b = *reinterpret_cast<const BlockQ2_K*>(p);
        r.d = f16_to_f32(b.d);
        r.dmin = f16_to_f32(b.dmin);
        for (int g = 0; g < 16; ++g) {
          r.sc[g] = b.scales[g] & 15;
          r.mn[g] = b.scales[g] >> 4;
        }
        qs = b.qs;
      }
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, j = (e % 128) / 32, l = e % 32;
        int v = (qs[32 * h + l] >> (2 * j)) & 3;
        if (three) {
          const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
          if (!((b.hmask[l] >> (e / 32)) & 1)) v -= 4;
        }
        r.q[e] = v;
      }
      return;
    }
    default: {  // IQ4_XS
      const auto& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
      r.d = f16_to_f32(b.d);
      for (int ib = 0; ib < 8; ++ib) {
        const int ls =
            ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((b.scales_h >> (2 * ib)) & 3) << 4;
        r.sc[2 * ib] = r.sc[2 * ib + 1] = ls - 32;
        for (int j = 0; j < 16; ++j) {
          r.q[32 * ib + j] = kIq4nlValues[b.qs[16 * ib + j] & 15];
          r.q[32 * ib + 16 + j] = kIq4nlValues[b.qs[16 * ib + j] >> 4];
        }
      }
      return;
    }
  }
}

// 32-element table formats: integer values and the weight scale.
float decode_ref32(DType t, const uint8_t* p, int32_t* q) {
  const int8_t* table = t == DType::IQ4_NL ? kIq4nlValues : kMxfp4Values;
  const uint8_t* qs = p + (t == DType::IQ4_NL ? 2 : 1);
  for (int j = 0; j < 16; ++j) {
    q[j] = table[qs[j] & 15];
    q[j + 16] = table[qs[j] >> 4];
  }
  if (t == DType::MXFP4) return e8m0_to_f32_half(p[0]);
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

void kquant_linear_scalar(const WeightMatrix& w, const KQuantActivations& a, float* y) {
  const size_t block_bytes = traits(w.dtype).block_bytes;
  const size_t row_bytes = size_t(a.nb) * block_bytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const bool q8k = a.format == DType::Q8_K;
#pragma omp parallel for schedule(static) if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t j = 0; j < w.n; ++j) {
    for (int64_t i = 0; i < a.m; ++i) {
      const int8_t* xq = a.qs.data() + i * a.k;
      float sumf = 0.0f;
      for (int64_t b = 0; b < a.nb; ++b) {
        const uint8_t* blk = base + size_t(j) * row_bytes + size_t(b) * block_bytes;
        const float dx = a.d[size_t(i * a.nb + b)];
        if (q8k) {
          RefBlock r;
          decode_ref(w.dtype, blk, r);
          const int8_t* x = xq + 256 * b;
          const int16_t* bs = a.bsums.data() + (i * a.nb + b) * 16;
          int32_t isum = 0, msum = 0;
          for (int g = 0; g < 16; ++g) {
            int32_t dot = 0;
            for (int l = 0; l < 16; ++l) dot += r.q[16 * g + l] * x[16 * g + l];
            isum += r.sc[g] * dot;
            msum += r.mn[g] * bs[g];
          }
          sumf += r.d * dx * float(isum) - r.dmin * dx * float(msum);
        } else {
          int32_t q[32];
          const float dw = decode_ref32(w.dtype, blk, q);
          int32_t isum = 0;
          for (int l = 0; l < 32; ++l) isum += q[l] * xq[32 * b + l];
          sumf += (dw * dx) * float(isum);
        }
      }
      y[i * w.n + j] = sumf;
    }
  }
}

void validate(const WeightMatrix& w, int64_t m) {
  if (!kquant_supports(w.dtype))
    fail(
        "linear_kquant: weight dtype {} has no K-quant kernel (expected Q2_K, Q3_K, Q4_K, Q5_K, "
        "Q6_K, IQ4_XS, IQ4_NL or MXFP4)",
        name(w.dtype));
  check_weight_matrix(w, m, "linear_kquant");
}

void q8_0_quantize_row(Isa isa, const float* x, int64_t nb, int8_t* qs, float* d) {
  for (int64_t b = 0; b < nb; ++b) {
    // One block at a time: q8_activation's pair layout of a single block is plain order.
    float db;
    int32_t sum;
    switch (isa) {
      case Isa::kAvx512:
        avx512::quantize_blocks(x + 32 * b, 1, qs + 32 * b, &db, &sum);
        break;
      case Isa::kAvx2:
        avx2::quantize_blocks(x + 32 * b, 1, qs + 32 * b, &db, &sum);
        break;
      default: {
        BlockQ8_0 blk;
        quantize_row_q8_0_ggml_cpu(x + 32 * b, 32, &blk);
        std::memcpy(qs + 32 * b, blk.qs, 32);
        d[b] = f16_to_f32(blk.d);
        continue;
      }
    }
    d[b] = std::isnan(db) ? kNaN : f16_to_f32(f32_to_f16(db));
  }
}

}  // namespace

bool kquant_supports(DType t) {
  return is_q8k_format(t) || t == DType::IQ4_NL || t == DType::MXFP4;
}

DType kquant_activation_format(DType t) { return is_q8k_format(t) ? DType::Q8_K : DType::Q8_0; }

void quantize_row_q8_K_ref(const float* x, int64_t k, BlockQ8_K* y) {
  for (int64_t b = 0; b < k / 256; ++b) y[b].d = q8k_block_scalar(x + 256 * b, y[b].qs, y[b].bsums);
}

void quantize_kquant_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                                 KQuantActivations* out) {
  require_isa(isa);
  const DType format = kquant_activation_format(weight);
  const int64_t be = format == DType::Q8_K ? 256 : 32;
  if (!kquant_supports(weight) || m < 0 || k < 0 || k % be != 0)
    fail(
        "quantize_kquant_activations: {} activations [{}, {}]: expected a K-quant/IQ4/MXFP4 "
        "weight and k a multiple of {}",
        name(weight), m, k, be);
  KQuantActivations& a = *out;
  a.weight = weight;
  a.format = format;
  a.m = m;
  a.k = k;
  a.nb = k / be;
  a.qs.resize(size_t(m * k));
  a.d.resize(size_t(m * a.nb));
  a.bsums.resize(format == DType::Q8_K ? size_t(m * a.nb * 16) : 0);
  const int64_t pairs = (a.nb + 1) / 2;
  a.bias.resize(format == DType::Q8_0 ? size_t(m * k / 4) : 0);
  a.dlanes.assign(format == DType::Q8_0 ? size_t(m * pairs * 16) : 0, 0.0f);
#pragma omp parallel for schedule(static) if (m > 1 && m * k > (int64_t(1) << 15))
  for (int64_t i = 0; i < m; ++i) {
    int8_t* qs = a.qs.data() + i * k;
    float* d = a.d.data() + i * a.nb;
    if (format == DType::Q8_0) {
      q8_0_quantize_row(isa, x + i * k, a.nb, qs, d);
      int32_t* bias = a.bias.data() + i * k / 4;
      for (int64_t l = 0; l < k / 4; ++l)
        bias[l] = -128 * (int32_t(qs[4 * l]) + qs[4 * l + 1] + qs[4 * l + 2] + qs[4 * l + 3]);
      float* lanes = a.dlanes.data() + i * pairs * 16;
      for (int64_t b = 0; b < a.nb; ++b) std::fill_n(lanes + 8 * b, 8, d[b]);
      continue;
    }
    int16_t* bs = a.bsums.data() + i * a.nb * 16;
    switch (isa) {
      case Isa::kAvx512:
        avx512::q8k_quantize_row(x + i * k, a.nb, qs, d, bs);
        break;
      case Isa::kAvx2:
        avx2::q8k_quantize_row(x + i * k, a.nb, qs, d, bs);
        break;
      default:
        q8k_quantize_row_scalar(x + i * k, a.nb, qs, d, bs);
        break;
    }
  }
}

void linear_kquant_prequantized(Isa isa, const WeightMatrix& w, const KQuantActivations& a,
                                float* y) {
  require_isa(isa);
  validate(w, a.m);
  if (a.weight != w.dtype || a.k != w.k)
    fail("linear_kquant: activations quantized for {} with k={}, weight is {} with k={}",
         name(a.weight), a.k, name(w.dtype), w.k);
  if (a.m == 0 || w.n == 0) return;
  if (w.k == 0) {
    std::fill(y, y + a.m * w.n, 0.0f);
    return;
  }
  switch (isa) {
    case Isa::kAvx512:
      return avx512::kquant_linear(w, a, y);
    case Isa::kAvx2:
      return avx2::kquant_linear(w, a, y);
    default:
      return kquant_linear_scalar(w, a, y);
  }
}

void linear_kquant_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y) {
  require_isa(isa);
  validate(w, m);
  // One scratch per calling thread: generation calls this hundreds of times per token.
  thread_local KQuantActivations a;
  quantize_kquant_activations(isa, w.dtype, x, m, w.k, &a);
  linear_kquant_prequantized(isa, w, a, y);
}

}  // namespace lowbit::kernels::cpu
