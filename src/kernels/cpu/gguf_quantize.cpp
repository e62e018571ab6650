// fp32 -> GGUF blocks. Every search below repeats ggml-quants.c's arithmetic expression for
// expression (same operand order, fp32 throughout, the same rounding helper), because the
// chosen integer quants depend on each rounding; see gguf_quantize.h.
#include "kernels/cpu/gguf_quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gguf_blocks.h"
#include "kernels/cpu/gguf_dequantize.h"
#include "kernels/cpu/gguf_grids.h"
#include "kernels/cpu/gguf_quantize_iq1.h"
#include "kernels/cpu/gguf_quantize_iq2.h"
#include "kernels/cpu/gguf_quantize_iq3.h"
#include "kernels/cpu/gguf_quantize_kquants.h"
#include "kernels/cpu/gguf_quantize_search.h"
#include "kernels/cpu/gguf_quantize_tq_mxfp4.h"

namespace lowbit::kernels::cpu {
namespace {

using namespace gguf_detail;

// ---------------------------------------------------------------------------------------------
// 32-element formats. `row` is one row of n floats; qw the row's importance weights or null.

// Elements j and j+16 share byte j (low, high nibble); bit 4 of each goes to qh bit j / j+16.
template <typename Block>
void pack_nibbles_and_high_bits(Block& b, const int* q /* 32 levels */, bool with_qh) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xi0 = uint8_t(q[j]), xi1 = uint8_t(q[j + 16]);
    b.qs[j] = uint8_t((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  if constexpr (requires { b.qh; }) {
    if (with_qh) std::memcpy(b.qh, &qh, 4);
  }
}

// Q4_0 / Q5_0 (ref): d = max/-2^(bits-1) with max the signed value of largest magnitude.
template <typename Block, int kBits>
void quantize_row_sym_ref(const float* x, Block* y, int64_t k) {
  constexpr int kHalf = 1 << (kBits - 1);
  constexpr int kTop = (1 << kBits) - 1;
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -kHalf;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = std::min(kTop, int(int8_t(int(x[j] * id + (kHalf + 0.5f)))));
    pack_nibbles_and_high_bits(y[i], q, kBits == 5);
  }
}

// Q4_1 / Q5_1 (ref): d = (max - min) / (2^bits - 1), m = min.
template <typename Block, int kBits>
void quantize_row_asym_ref(const float* x, Block* y, int64_t k) {
  constexpr int kTop = (1 << kBits) - 1;
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / kTop;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    y[i].m = fp16(min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) {
      const float v = (x[j] - min) * id;
      q[j] = kBits == 4 ? std::min(15, int(int8_t(int(v + 0.5f)))) : int(uint8_t(int(v + 0.5f)));
    }
    pack_nibbles_and_high_bits(y[i], q, kBits == 5);
  }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp16(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

// Per-element importance of the 32-element imatrix paths: qw · sqrt(σ² + x²), σ² the row's
// mean square.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

// Q4_0 / Q5_0 with an imatrix: weighted make_qx_quants per block.
template <typename Block, int kBits>
void quantize_row_sym_impl(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  int8_t L[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    const float* w = qw + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants(kQK, 1 << (kBits - 1), xb, L, 1, weight);
    y[ib].d = fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = uint8_t(L[j]);
    pack_nibbles_and_high_bits(y[ib], q, kBits == 5);
  }
}

// Q4_1 / Q5_1 with an imatrix: weighted make_qkx3_quants per block.
template <typename Block, int kBits>
void quantize_row_asym_impl(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  uint8_t L[kQK], Laux[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    const float* w = qw + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    float min;
    const float d = make_qkx_quants(kQK, (1 << kBits) - 1, xb, weight, L, &min, Laux, -0.9f, 0.05f,
                                    36, false, true);
    y[ib].d = fp16(d);
    y[ib].m = fp16(-min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = L[j];
    pack_nibbles_and_high_bits(y[ib], q, kBits == 5);
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL (one 32-element block, super_block 32) and IQ4_XS (256 with 8 6-bit sub-scales):
// nearest kIq4nlValues entries, the block scale tried at 15 inverse scales (ntry = 7).
void quantize_iq4_block(int super_block_size, const float* x, uint16_t* dh, uint8_t* q4,
                        uint16_t* scales_h, uint8_t* scales_l, const float* qw, int ntry) {
  constexpr int block_size = 32;
  const int8_t* values = kIq4nlValues;
  float scales[kQK_K / 32], weight[32];
  uint8_t L[kQK_K];
  float sigma2 = 0;
  for (int j = 0; j < super_block_size; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / super_block_size;
  std::memset(q4, 0, size_t(super_block_size / 2));
  dh[0] = fp16(0.f);
  float max_scale = 0, amax_scale = 0;
  const int nb = super_block_size / block_size;
  for (int ib = 0; ib < nb; ++ib) {
    const float* xb = x + ib * block_size;
    uint8_t* Lb = L + ib * block_size;
    if (qw) {
      const float* w = qw + ib * block_size;
      for (int j = 0; j < block_size; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < block_size; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < block_size; ++j) {
      float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      // ggml leaves these levels unset; with scale 0 every later use re-derives them (below),
      // except that an all-zero IQ4_NL block then takes the level nearest 0.
      for (int j = 0; j < block_size; ++j) Lb[j] = uint8_t(best_index_int8(16, values, 0.f));
      continue;
    }
    float d = ntry > 0 ? -max / values[0] : max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < block_size; ++j) {
      float al = id * xb[j];
      int l = best_index_int8(16, values, al);
      Lb[j] = uint8_t(l);
      float q = values[l];
      float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = (itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < block_size; ++j) {
        float al = id * xb[j];
        int l = best_index_int8(16, values, al);
        float q = values[l];
        float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (nb > 1) {
    std::memset(scales_h, 0, sizeof(uint16_t));
    float d = -max_scale / 32;
    dh[0] = fp16(d);
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < nb; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      float dl = d * l;
      float idl = dl ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * block_size;
      const float* xb = x + ib * block_size;
      for (int j = 0; j < block_size; ++j)
        Lb[j] = uint8_t(best_index_int8(16, values, idl * xb[j]));
      l += 32;
      uint8_t l_l = uint8_t(l & 0xf), l_h = uint8_t(l >> 4);
      if (ib % 2 == 0)
        scales_l[ib / 2] = l_l;
      else
        scales_l[ib / 2] |= uint8_t(l_l << 4);
      scales_h[0] |= uint16_t(l_h << 2 * (ib % 8));
    }
  } else {
    dh[0] = fp16(scales[0]);
    if (ntry > 0) {
      float id = scales[0] ? 1 / scales[0] : 0;
      for (int j = 0; j < super_block_size; ++j)
        L[j] = uint8_t(best_index_int8(16, values, id * x[j]));
    }
  }
  for (int i = 0; i < super_block_size / 32; ++i)
    for (int j = 0; j < 16; ++j)
      q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n, const float* qw) {
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    uint16_t unused_h;
    quantize_iq4_block(kQK, x + kQK * ib, &y[ib].d, y[ib].qs, &unused_h, nullptr,
                       qw ? qw + kQK * ib : nullptr, 7);
  }
}

void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n, const float* qw) {
  for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
    uint16_t scales_h;
    quantize_iq4_block(kQK_K, x + kQK_K * ib, &y[ib].d, y[ib].qs, &scales_h, y[ib].scales_l,
                       qw ? qw + kQK_K * ib : nullptr, 7);
    y[ib].scales_h = scales_h;
  }
}

// One row of n elements of type t (n a multiple of the block size).
void quantize_one_row(DType t, const float* x, int64_t n, const float* qw, void* dst) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, x, size_t(n) * 4);
      return;
    case DType::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
      return;
    }
    case DType::BF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case DType::Q4_0:
      if (qw) return quantize_row_sym_impl<BlockQ4_0, 4>(x, static_cast<BlockQ4_0*>(dst), n, qw);
      return quantize_row_sym_ref<BlockQ4_0, 4>(x, static_cast<BlockQ4_0*>(dst), n);
    case DType::Q5_0:
      if (qw) return quantize_row_sym_impl<BlockQ5_0, 5>(x, static_cast<BlockQ5_0*>(dst), n, qw);
      return quantize_row_sym_ref<BlockQ5_0, 5>(x, static_cast<BlockQ5_0*>(dst), n);
    case DType::Q4_1:
      if (qw) return quantize_row_asym_impl<BlockQ4_1, 4>(x, static_cast<BlockQ4_1*>(dst), n, qw);
      return quantize_row_asym_ref<BlockQ4_1, 4>(x, static_cast<BlockQ4_1*>(dst), n);
    case DType::Q5_1:
      if (qw) return quantize_row_asym_impl<BlockQ5_1, 5>(x, static_cast<BlockQ5_1*>(dst), n, qw);
      return quantize_row_asym_ref<BlockQ5_1, 5>(x, static_cast<BlockQ5_1*>(dst), n);
    case DType::Q8_0:
      return quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n);
    case DType::Q2_K:
      return quantize_row_q2_K(x, static_cast<BlockQ2_K*>(dst), n, qw);
    case DType::Q3_K:
      return quantize_row_q3_K(x, static_cast<BlockQ3_K*>(dst), n, qw);
    case DType::Q4_K:
      return quantize_row_q4_K(x, static_cast<BlockQ4_K*>(dst), n, qw);
    case DType::Q5_K:
      return quantize_row_q5_K(x, static_cast<BlockQ5_K*>(dst), n, qw);
    case DType::Q6_K:
      return quantize_row_q6_K(x, static_cast<BlockQ6_K*>(dst), n, qw);
    case DType::IQ4_NL:
      return quantize_row_iq4_nl(x, static_cast<BlockIQ4_NL*>(dst), n, qw);
    case DType::IQ4_XS:
      return quantize_row_iq4_xs(x, static_cast<BlockIQ4_XS*>(dst), n, qw);
    case DType::IQ3_XXS:
      return quantize_row_iq3_xxs(x, static_cast<BlockIQ3_XXS*>(dst), n, qw);
    case DType::IQ3_S:
      return quantize_row_iq3_s(x, static_cast<BlockIQ3_S*>(dst), n, qw);
    case DType::IQ2_XXS:
      return quantize_row_iq2_xxs(x, static_cast<BlockIQ2_XXS*>(dst), n, qw);
    case DType::IQ2_XS:
      return quantize_row_iq2_xs(x, static_cast<BlockIQ2_XS*>(dst), n, qw);
    case DType::IQ2_S:
      return quantize_row_iq2_s(x, static_cast<BlockIQ2_S*>(dst), n, qw);
    case DType::IQ1_S:
      return quantize_row_iq1_s(x, static_cast<BlockIQ1_S*>(dst), n, qw);
    case DType::IQ1_M:
      return quantize_row_iq1_m(x, static_cast<BlockIQ1_M*>(dst), n, qw);
    case DType::TQ1_0:  // ternary and MXFP4 take no importance matrix, as in ggml
      return quantize_row_tq1_0(x, static_cast<BlockTQ1_0*>(dst), n);
    case DType::TQ2_0:
      return quantize_row_tq2_0(x, static_cast<BlockTQ2_0*>(dst), n);
    case DType::MXFP4:
      return quantize_row_mxfp4(x, static_cast<BlockMXFP4*>(dst), n);
    default:
      fail("cannot quantize to {}: supported types are {}", name(t),
           gguf_quantize_supported_list());
  }
}

constexpr DType kSupported[] = {
    DType::F32,     DType::F16,   DType::BF16,    DType::Q4_0,   DType::Q4_1,
    DType::Q5_0,    DType::Q5_1,  DType::Q8_0,    DType::Q2_K,   DType::Q3_K,
    DType::Q4_K,    DType::Q5_K,  DType::Q6_K,    DType::IQ4_NL, DType::IQ4_XS,
    DType::IQ3_XXS, DType::IQ3_S, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
    DType::IQ1_S,   DType::IQ1_M, DType::TQ1_0,   DType::TQ2_0,  DType::MXFP4};

}  // namespace

bool gguf_quantize_supports(DType t) {
  return std::find(std::begin(kSupported), std::end(kSupported), t) != std::end(kSupported);
}

bool gguf_quantize_requires_imatrix(DType t) {
  return t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ1_S;
}

std::string gguf_quantize_supported_list() {
  std::string s;
  for (DType t : kSupported) s += (s.empty() ? "" : ", ") + std::string(name(t));
  return s;
}

void quantize_rows(DType t, const float* src, int64_t nrows, int64_t n_per_row,
                   const float* imatrix, void* dst) {
  if (!gguf_quantize_supports(t))
    fail("cannot quantize to {}: supported types are {}", name(t), gguf_quantize_supported_list());
  if (!imatrix && gguf_quantize_requires_imatrix(t))
    fail(
        "cannot quantize to {} without an importance matrix (ggml's {} quantizer needs one): "
        "make one with `lowbit imatrix` and pass it",
        name(t), name(t));
  const uint32_t block = traits(t).block_elems;
  if (n_per_row <= 0 || n_per_row % block != 0)
    fail("cannot quantize rows of {} elements to {}: the row length must be a multiple of {}",
         n_per_row, name(t), block);
  const uint64_t row_bytes = *dtype_bytes(t, uint64_t(n_per_row));
  auto* out = static_cast<uint8_t*>(dst);
#pragma omp parallel for schedule(dynamic, 16) if (nrows * n_per_row >= (int64_t(1) << 16))
  for (int64_t r = 0; r < nrows; ++r)
    quantize_one_row(t, src + r * n_per_row, n_per_row, imatrix, out + uint64_t(r) * row_bytes);
}

}  // namespace lowbit::kernels::cpu
