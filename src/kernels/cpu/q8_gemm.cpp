#include "kernels/cpu/q8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/isa_kernels.h"
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

void validate(const PackedGemmWeights& w, int64_t m, int64_t k) {
  if (m < 0) fail("linear_gemm: negative activation rows m={}", m);
  if (k != w.k)
    fail("linear_gemm: activations have k={}, the {} weight [{}, {}] expects k={}", k,
         name(w.dtype), w.n, w.k, w.k);
}

}  // namespace

bool gemm_supports(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 ||
         t == DType::Q8_0 || t == DType::IQ4_NL;
}

PackedGemmWeights pack_gemm_weights(const WeightMatrix& w) {
  if (!gemm_supports(w.dtype))
    fail(
        "pack_gemm_weights: weight dtype {} has no GEMM layout (expected Q4_0, Q4_1, Q5_0, Q5_1, "
        "Q8_0 or IQ4_NL)",
        name(w.dtype));
  check_weight_matrix(w, 0, "pack_gemm_weights");
  const Format f = format_of(w.dtype);
  PackedGemmWeights p;
  p.dtype = w.dtype;
  p.n = w.n;
  p.k = w.k;
  p.nb = w.k / 32;
  p.tiles = (w.n + kTileRows - 1) / kTileRows;
  p.quant_bytes = f.nibbles ? (f.qh >= 0 ? 320 : 256) : 512;
  p.scale_bytes = f.m >= 0 ? 64 : 32;
  const size_t lines = (size_t(p.tiles) * p.tile_bytes() + 63) / 64;
  p.data.assign(std::max<size_t>(lines, 1), PackedGemmWeights::Line{});
  if (p.tiles == 0 || p.nb == 0) return p;
  const size_t block_bytes = traits(w.dtype).block_bytes;
  const size_t row_bytes = size_t(p.nb) * block_bytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for schedule(static) if (w.n * w.k > (int64_t(1) << 18))
  for (int64_t t = 0; t < p.tiles; ++t) {
    uint8_t* tile = const_cast<uint8_t*>(p.tile(t));
    uint8_t* scales = tile + size_t(p.nb) * p.quant_bytes;
    const int rows = int(std::min<int64_t>(kTileRows, w.n - t * kTileRows));
    for (int64_t b = 0; b < p.nb; ++b) {
      uint8_t* q = tile + size_t(b) * p.quant_bytes;
      auto* sc = reinterpret_cast<uint16_t*>(scales + size_t(b) * p.scale_bytes);
      for (int r = 0; r < rows; ++r) {
        const uint8_t* blk = base + size_t(t * kTileRows + r) * row_bytes + size_t(b) * block_bytes;
        sc[r] = u16_at(blk);
        if (f.m >= 0) sc[kTileRows + r] = u16_at(blk + f.m);
        if (!f.nibbles) {
          for (int g = 0; g < 8; ++g)
            for (int e = 0; e < 4; ++e)
              q[64 * g + 4 * r + e] = unsigned_weight(w.dtype, f, blk, 4 * g + e);
          continue;
        }
        for (int j = 0; j < 4; ++j)
          for (int e = 0; e < 4; ++e) q[64 * j + 4 * r + e] = blk[f.qs + 4 * j + e];
        if (f.qh < 0) continue;
        uint32_t qh;
        std::memcpy(&qh, blk + f.qh, 4);
        for (int g = 0; g < 8; ++g) {
          uint64_t mask;
          std::memcpy(&mask, q + 256 + 8 * g, 8);
          for (int e = 0; e < 4; ++e) {
            const int el = g < 4 ? 4 * g + e : 16 + 4 * (g - 4) + e;
            mask |= uint64_t((qh >> el) & 1) << (4 * r + e);
          }
          std::memcpy(q + 256 + 8 * g, &mask, 8);
        }
      }
    }
  }
  return p;
}

void quantize_gemm_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                               GemmActivations* out) {
  require_isa(isa);
  if (!gemm_supports(weight) || m < 0 || k < 0 || k % 32 != 0)
    fail(
        "quantize_gemm_activations: {} activations [{}, {}]: expected a Q4_0/Q4_1/Q5_0/Q5_1/"
        "Q8_0/IQ4_NL weight and k a multiple of 32",
        name(weight), m, k);
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
