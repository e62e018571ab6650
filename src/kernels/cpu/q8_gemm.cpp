#include "kernels/cpu/q8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/kquant_dot.h"
#include "kernels/cpu/q8_activation.h"

namespace lowbit::kernels::cpu {
namespace {

constexpr int kTileRows = 16;

// Where the fields of one source block sit (ggml-common.h), and the weight offset o.
struct Format {
  int qs = 2, qh = -1, m = -1;  // byte offsets; -1: absent
  int offset = 0;
  bool nibbles = true;
};

Format format_of(DType t) {
  switch (t) {
    case DType::Q4_0:
      return {2, -1, -1, 8, true};
    case DType::Q4_1:
      return {4, -1, 2, 0, true};
    case DType::Q5_0:
      return {6, 2, -1, 16, true};
    case DType::Q5_1:
      return {8, 4, 2, 0, true};
    case DType::Q8_0:
      return {2, -1, -1, 128, false};
    default:  // IQ4_NL
      return {2, -1, -1, 128, true};
  }
}

uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The unsigned value u the kernel multiplies for element e (0..31) of one source block.
uint8_t unsigned_weight(DType t, const Format& f, const uint8_t* blk, int e) {
  if (!f.nibbles) return uint8_t(int(int8_t(blk[f.qs + e])) + 128);
  const uint8_t byte = blk[f.qs + (e & 15)];
  const int nib = e < 16 ? byte & 15 : byte >> 4;
  if (t == DType::IQ4_NL) return uint8_t(kIq4nlValues[nib] + 128);
  return uint8_t(nib);
}

bool is_k32(DType t) { return t == DType::IQ4_XS || t == DType::Q4_K || t == DType::Q5_K; }
// The K-quant formats of the GEMM (256-element super-blocks, Q8_K activations).
bool is_kquant(DType t) { return is_k32(t) || t == DType::Q6_K; }
// Integer sums per super-block the kernel seeds: per sub-block of 32, or per group of 16 (Q6_K).
int64_t subs_per_block(DType t) { return t == DType::Q6_K ? 16 : 8; }

// Sub-block s (0..7) of one K-quant super-block as integers: nibble / index values v[32]
// (IQ4_XS: table indices; Q4_K, Q5_K: low 4 bits), 5th bits h (Q5_K), the scale and the min.
struct SubBlock {
  uint8_t v[32];
  uint32_t h = 0;  // bit l = 5th bit of element l
  int sc = 0, mn = 0;
};

SubBlock k32_sub_block(DType t, const uint8_t* p, int s) {
  SubBlock r;
  if (t == DType::IQ4_XS) {
    const auto& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
    const int ls = ((b.scales_l[s / 2] >> (4 * (s % 2))) & 15) | ((b.scales_h >> (2 * s)) & 3) << 4;
    r.sc = ls - 32;
    for (int j = 0; j < 16; ++j) {
      r.v[j] = b.qs[16 * s + j] & 15;
      r.v[j + 16] = b.qs[16 * s + j] >> 4;
    }
    return r;
  }
  const bool five = t == DType::Q5_K;
  const uint8_t* scales = five ? reinterpret_cast<const BlockQ5_K*>(p)->scales
                               : reinterpret_cast<const BlockQ4_K*>(p)->scales;
  const uint8_t* qs =
      five ? reinterpret_cast<const BlockQ5_K*>(p)->qs : reinterpret_cast<const BlockQ4_K*>(p)->qs;
  uint8_t sc, mn;
  get_scale_min_k4(s, scales, &sc, &mn);
  r.sc = sc;
  r.mn = mn;
  // Element 64c + 32t + l: nibble t of qs[32c + l]; 5th bit: bit 2c + t = s of qh[l].
  for (int l = 0; l < 32; ++l) {
    const uint8_t byte = qs[32 * (s / 2) + l];
    r.v[l] = s % 2 ? byte >> 4 : byte & 15;
    if (five) r.h |= uint32_t((reinterpret_cast<const BlockQ5_K*>(p)->qh[l] >> s) & 1) << l;
  }
  return r;
}

// Row r's 5th bits (bit el of h for element el) into the record's 8 byte masks at q + 256:
// mask g covers elements 4g..4g+3 (g < 4) or 16+4(g−4).. (g ≥ 4), 4 bits per row.
void put_high_bit_masks(uint8_t* q, int r, uint32_t h) {
  for (int g = 0; g < 8; ++g) {
    uint64_t mask;
    std::memcpy(&mask, q + 256 + 8 * g, 8);
    for (int e = 0; e < 4; ++e) {
      const int el = g < 4 ? 4 * g + e : 16 + 4 * (g - 4) + e;
      mask |= uint64_t((h >> el) & 1) << (4 * r + e);
    }
    std::memcpy(q + 256 + 8 * g, &mask, 8);
  }
}

// The 32-element record of one block / sub-block for row r of a tile (see q8_gemm.h): nibble
// pairs (element 4j+e low, 16+4j+e high) and, with `masks`, the 5th-bit masks.
void put_nibbles(uint8_t* q, int r, const uint8_t* v, uint32_t h, bool masks) {
  for (int j = 0; j < 4; ++j)
    for (int e = 0; e < 4; ++e)
      q[64 * j + 4 * r + e] = uint8_t(v[4 * j + e] | v[16 + 4 * j + e] << 4);
  if (masks) put_high_bit_masks(q, r, h);
}

void validate(const PackedGemmWeights& w, int64_t m, int64_t k) {
  if (m < 0) fail("linear_gemm: negative activation rows m={}", m);
  if (k != w.k)
    fail("linear_gemm: activations have k={}, the {} weight [{}, {}] expects k={}", k,
         name(w.dtype), w.n, w.k, w.k);
}

// Calls fn(q, sr, r, blk) for every tile, block b and row r of the tile: q = the tile's quant
// records of block b, sr = its scale record, blk = row r's source block b (tiles in parallel).
template <class Fn>
void for_each_row_block(const WeightMatrix& w, PackedGemmWeights& p, Fn&& fn) {
  const size_t block_bytes = traits(w.dtype).block_bytes;
  const size_t row_bytes = size_t(p.nb) * block_bytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for schedule(static) if (w.n * w.k > (int64_t(1) << 18))
  for (int64_t t = 0; t < p.tiles; ++t) {
    uint8_t* tile = const_cast<uint8_t*>(p.tile(t));
    const int rows = int(std::min<int64_t>(kTileRows, w.n - t * kTileRows));
    for (int64_t b = 0; b < p.nb; ++b) {
      uint8_t* q = tile + size_t(b) * p.quant_bytes;
      uint8_t* sr = tile + size_t(p.nb) * p.quant_bytes + size_t(b) * p.scale_bytes;
      for (int r = 0; r < rows; ++r)
        fn(q, sr, r, base + size_t(t * kTileRows + r) * row_bytes + size_t(b) * block_bytes);
    }
  }
}

// IQ4_XS, Q4_K, Q5_K: per super-block 8 sub-block records of the 32-element layout, then the
// scale record [d fp16 ×16 | dmin fp16 ×16 | sc int8 [8][16] | (Q4_K, Q5_K) mins int16 pairs
// [4][16]: lane r = (mn_2p, mn_2p+1) of row r].
void pack_k32(const WeightMatrix& w, PackedGemmWeights& p) {
  const size_t sub_bytes = p.quant_bytes / 8;
  const bool min = w.dtype != DType::IQ4_XS, five = w.dtype == DType::Q5_K;
  for_each_row_block(w, p, [&](uint8_t* q, uint8_t* sr, int r, const uint8_t* blk) {
    auto* d = reinterpret_cast<uint16_t*>(sr);
    auto* sc = reinterpret_cast<int8_t*>(sr + 64);
    auto* mn = reinterpret_cast<int16_t*>(sr + 192);
    d[r] = u16_at(blk);  // d first in all three
    if (min) d[kTileRows + r] = u16_at(blk + 2);
    for (int s = 0; s < 8; ++s) {
      const SubBlock sub = k32_sub_block(w.dtype, blk, s);
      put_nibbles(q + s * sub_bytes, r, sub.v, sub.h, five);
      sc[16 * s + r] = int8_t(sub.sc);
      if (min) mn[32 * (s / 2) + 2 * r + s % 2] = int16_t(sub.mn);
    }
  });
}

// Q8_K activations for IQ4_XS / Q4_K / Q5_K / Q6_K: kquant_dot's quantizer, then per 32 elements
// the sum (for the mins) and −o·sum (o = 128 for IQ4_XS's T + 128 weights, else 0); Q6_K: −32·sum
// per 16 elements (its u = q + 32).
void quantize_q8k(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                  GemmActivations* out) {
  GemmActivations& a = *out;
  a.m = m;
  a.k = k;
  a.nb = k / 256;
  a.qs.resize(size_t(m * k));
  a.d.resize(size_t(m * a.nb));
  a.s.clear();
  const bool six = weight == DType::Q6_K;
  a.bias.resize(size_t(m * a.nb * (six ? 16 : 8)));
  a.sub.resize(six ? 0 : size_t(m * a.nb * 8));
  const int32_t offset = weight == DType::IQ4_XS ? 128 : six ? 32 : 0;
#pragma omp parallel for schedule(static) if (m > 1 && m * k > (int64_t(1) << 15))
  for (int64_t i = 0; i < m; ++i) {
    thread_local std::vector<int16_t> bsums;
    bsums.resize(size_t(a.nb * 16));
    int8_t* qs = a.qs.data() + i * k;
    float* d = a.d.data() + i * a.nb;
    switch (isa) {
      case Isa::kAvx512:
        avx512::q8k_quantize_row(x + i * k, a.nb, qs, d, bsums.data());
        break;
      case Isa::kAvx2:
        avx2::q8k_quantize_row(x + i * k, a.nb, qs, d, bsums.data());
        break;
      default:
        for (int64_t b = 0; b < a.nb; ++b) {
          BlockQ8_K blk;
          quantize_row_q8_K_ref(x + i * k + 256 * b, 256, &blk);
          std::memcpy(qs + 256 * b, blk.qs, 256);
          std::memcpy(bsums.data() + 16 * b, blk.bsums, 32);
          d[b] = blk.d;
        }
        break;
    }
    if (six) {  // per group of 16
      for (int64_t g = 0; g < a.nb * 16; ++g)
        a.bias[size_t(i * a.nb * 16 + g)] = -offset * bsums[size_t(g)];
      continue;
    }
    for (int64_t s = 0; s < a.nb * 8; ++s) {
      const int32_t sum = bsums[size_t(2 * s)] + bsums[size_t(2 * s + 1)];
      a.sub[size_t(i * a.nb * 8 + s)] = int16_t(sum);
      a.bias[size_t(i * a.nb * 8 + s)] = -offset * sum;
    }
  }
}

// Q6_K: per super-block 16 group records [A | B | H] (x86/q8_gemm_avx512.cpp, Six) of the
// 6-bit u = q + 32, then the scale record [d fp16 ×16 | unused ×32 B | sc int8 [16][16]].
void pack_q6k(const WeightMatrix& w, PackedGemmWeights& p) {
  for_each_row_block(w, p, [&](uint8_t* q, uint8_t* sr, int r, const uint8_t* src) {
    const auto& blk = *reinterpret_cast<const BlockQ6_K*>(src);
    reinterpret_cast<uint16_t*>(sr)[r] = blk.d;
    uint8_t u[256];  // q + 32, the dequantizer's element order
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* ql = blk.ql + 64 * h;
        const int qh = blk.qh[32 * h + l];
        u[128 * h + l] = uint8_t((ql[l] & 15) | (qh & 3) << 4);
        u[128 * h + l + 32] = uint8_t((ql[l + 32] & 15) | (qh >> 2 & 3) << 4);
        u[128 * h + l + 64] = uint8_t((ql[l] >> 4) | (qh >> 4 & 3) << 4);
        u[128 * h + l + 96] = uint8_t((ql[l + 32] >> 4) | (qh >> 6 & 3) << 4);
      }
    for (int g = 0; g < 16; ++g) {
      uint8_t* rec = q + 192 * g;
      sr[64 + 16 * g + r] = uint8_t(blk.scales[g]);
      for (int e = 0; e < 4; ++e) {
        const uint8_t* v = u + 16 * g + e;  // slot k element e: v[4k]
        rec[4 * r + e] = uint8_t((v[0] & 15) | (v[8] & 15) << 4);
        rec[64 + 4 * r + e] = uint8_t((v[4] & 15) | (v[12] & 15) << 4);
        rec[128 + 4 * r + e] =
            uint8_t((v[0] >> 4) | (v[4] >> 4) << 2 | (v[8] >> 4) << 4 | (v[12] >> 4) << 6);
      }
    }
  });
}

}  // namespace

bool gemm_supports(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 ||
         t == DType::Q8_0 || t == DType::IQ4_NL || is_kquant(t);
}

PackedGemmWeights pack_gemm_weights(const WeightMatrix& w) {
  if (!gemm_supports(w.dtype))
    fail(
        "pack_gemm_weights: weight dtype {} has no GEMM layout (expected Q4_0, Q4_1, Q5_0, Q5_1, "
        "Q8_0 or IQ4_NL)",
        name(w.dtype));
  check_weight_matrix(w, 0, "pack_gemm_weights");
  const bool kq = is_kquant(w.dtype);
  const Format f = format_of(w.dtype);
  PackedGemmWeights p;
  p.dtype = w.dtype;
  p.n = w.n;
  p.k = w.k;
  p.block_elems = kq ? 256 : 32;
  p.nb = w.k / p.block_elems;
  p.tiles = (w.n + kTileRows - 1) / kTileRows;
  if (w.dtype == DType::Q6_K) {
    p.quant_bytes = 16 * 192;
    p.scale_bytes = 64 + 256;
  } else if (kq) {
    p.quant_bytes = 8 * (w.dtype == DType::Q5_K ? 320 : 256);
    p.scale_bytes = w.dtype == DType::IQ4_XS ? 192 : 448;
  } else {
    p.quant_bytes = f.nibbles ? (f.qh >= 0 ? 320 : 256) : 512;
    p.scale_bytes = f.m >= 0 ? 64 : 32;
  }
  const size_t lines = (size_t(p.tiles) * p.tile_bytes() + 63) / 64;
  p.data.assign(std::max<size_t>(lines, 1), PackedGemmWeights::Line{});
  if (p.tiles == 0 || p.nb == 0) return p;
  if (kq) {
    if (w.dtype == DType::Q6_K)
      pack_q6k(w, p);
    else
      pack_k32(w, p);
    return p;
  }
  for_each_row_block(w, p, [&](uint8_t* q, uint8_t* sr, int r, const uint8_t* blk) {
    auto* sc = reinterpret_cast<uint16_t*>(sr);
    sc[r] = u16_at(blk);
    if (f.m >= 0) sc[kTileRows + r] = u16_at(blk + f.m);
    if (!f.nibbles) {
      for (int g = 0; g < 8; ++g)
        for (int e = 0; e < 4; ++e)
          q[64 * g + 4 * r + e] = unsigned_weight(w.dtype, f, blk, 4 * g + e);
      return;
    }
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) q[64 * j + 4 * r + e] = blk[f.qs + 4 * j + e];
    if (f.qh < 0) return;
    uint32_t qh;
    std::memcpy(&qh, blk + f.qh, 4);
    put_high_bit_masks(q, r, qh);
  });
  return p;
}

void quantize_gemm_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                               GemmActivations* out) {
  require_isa(isa);
  const bool kq = is_kquant(weight);
  const int64_t be = kq ? 256 : 32;
  if (!gemm_supports(weight) || m < 0 || k < 0 || k % be != 0)
    fail(
        "quantize_gemm_activations: {} activations [{}, {}]: expected a Q4_0/Q4_1/Q5_0/Q5_1/"
        "Q8_0/IQ4_NL/IQ4_XS/Q4_K/Q5_K weight and k a multiple of {}",
        name(weight), m, k, be);
  if (kq) return quantize_q8k(isa, weight, x, m, k, out);
  const Format f = format_of(weight);
  const bool with_s = f.m >= 0;
  GemmActivations& a = *out;
  a.m = m;
  a.k = k;
  a.nb = k / 32;
  a.qs.resize(size_t(m * k));
  a.d.resize(size_t(m * a.nb));
  a.s.resize(with_s ? size_t(m * a.nb) : 0);
  a.bias.resize(size_t(m * a.nb));
  a.sub.clear();
#pragma omp parallel for schedule(static) if (m > 1 && m * k > (int64_t(1) << 15))
  for (int64_t i = 0; i < m; ++i)
    for (int64_t b = 0; b < a.nb; ++b) {
      const size_t ib = size_t(i * a.nb + b);
      const float* xb = x + i * k + 32 * b;
      int8_t* q = a.qs.data() + i * k + 32 * b;
      // A single block: q8_activation's pair layout of one block is plain element order.
      // d: before its fp16 rounding (s = fp16(d·Σ q) is computed from it, quantize_row_q8_1).
      float d;
      int32_t sum = 0;
      if (isa == Isa::kScalar) {
        BlockQ8_1 blk;
        quantize_row_q8_1_ggml_cpu(xb, 32, &blk);
        std::memcpy(q, blk.qs, 32);
        for (int e = 0; e < 32; ++e) sum += blk.qs[e];
        a.d[ib] = f16_to_f32(blk.d);  // NaN stays NaN (0x7E00)
        if (with_s) a.s[ib] = f16_to_f32(blk.s);
      } else {
        if (isa == Isa::kAvx512)
          avx512::quantize_blocks(xb, 1, q, &d, &sum);
        else
          avx2::quantize_blocks(xb, 1, q, &d, &sum);
        const bool nan = std::isnan(d);
        a.d[ib] = nan ? d : f16_to_f32(f32_to_f16(d));
        if (with_s) a.s[ib] = nan ? d : f16_to_f32(f32_to_f16(float(sum) * d));
      }
      a.bias[ib] = -f.offset * sum;
    }
}

void linear_gemm_prequantized(Isa isa, const PackedGemmWeights& w, const GemmActivations& a,
                              float* y) {
  require_isa(isa);
  validate(w, a.m, a.k);
  if (isa != Isa::kAvx512)
    fail("linear_gemm: no {} kernel (only avx512; use linear_q8_isa / linear_kquant_isa)",
         isa_name(isa));
  const bool kq = is_kquant(w.dtype), with_s = w.dtype == DType::Q4_1 || w.dtype == DType::Q5_1;
  const size_t subs = kq ? size_t(subs_per_block(w.dtype)) : 1;
  const size_t units = size_t(a.m * a.nb);
  if (a.nb != w.nb || a.qs.size() != size_t(a.m * a.k) || a.d.size() != units ||
      a.bias.size() != subs * units || a.sub.size() != (is_k32(w.dtype) ? 8 * units : 0) ||
      a.s.size() != (with_s ? units : 0))
    fail("linear_gemm: activations [{}, {}] were not quantized for {} weights", a.m, a.k,
         name(w.dtype));
  if (a.m == 0 || w.n == 0) return;
  if (w.k == 0) {
    std::fill(y, y + a.m * w.n, 0.0f);
    return;
  }
  avx512::q8_gemm(w, a, y);
}

void linear_gemm_isa(Isa isa, const PackedGemmWeights& w, const float* x, int64_t m, float* y) {
  require_isa(isa);
  validate(w, m, w.k);
  // One scratch per calling thread, as linear_q8_isa.
  thread_local GemmActivations a;
  quantize_gemm_activations(isa, w.dtype, x, m, w.k, &a);
  linear_gemm_prequantized(isa, w, a, y);
}

}  // namespace lowbit::kernels::cpu
