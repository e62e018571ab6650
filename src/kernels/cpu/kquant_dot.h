// Int8-activation matrix products for the GGUF K-quant and non-linear 4-bit formats
// (llama.cpp's CPU approach): each activation row is quantized once per linear() call and every
// weight block is dotted with it in integers, decoding the weight bits inside the dot
// (AVX-512 VNNI vpdpwssd / AVX2 pmaddubsw + pmaddwd; a plain scalar reference).
//   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS weights pair with Q8_K activations (256-element blocks,
//   fp32 d, 16-element sums "bsums"), exactly ggml's quantize_row_q8_K_ref: per block the signed
//   value `max` of largest |x| (first one on ties), iscale = −127/max, q = min(127, rint(iscale·x))
//   (round half to even), d = 1/iscale; an all-zero block gets d = 0.
//   IQ4_NL and MXFP4 weights (32-element blocks) pair with Q8_0 activations (q8_activation.h:
//   d = amax/127 rounded to fp16, q = roundf(x/d)), as in ggml.
// Every weight super-block is written as integers (see KQuantDecoded in kquant_dot.cpp):
//   dot = d_x·( d_w·Σ_g s_g·Σ_{e∈g} q_e·x_e  +  c_w·Σ_g m_g·bsum_g )
// over the 16 groups g of 16 elements: q_e the weight integers, s_g the (sub-)block scales,
// m_g the mins (Q2_K, Q4_K, Q5_K; c_w = −dmin). Offsets such as Q6_K's −32 are folded into q_e.
// Per block the integer sums are exact; blocks are accumulated in fp32, so SIMD levels differ from
// the scalar reference only by the order of that fp32 summation.
// Non-finite activations: a block holding a NaN/Inf gets d = NaN and q = 0, so the NaN reaches that
// row's outputs and no other (llama.cpp is undefined there).
//
// Shapes: W [n, k] in its GGUF block format (rows of k/256 or k/32 blocks), x [m, k] fp32, y [m,
// n]. Rows of W are split across threads (OpenMP); for m > 1 each weight block is decoded once per
// tile of activation rows and used for all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gguf_blocks.h"
#include "kernels/cpu/linear.h"

namespace lowbit::kernels::cpu {

// Whether linear_kquant*() handles `weight`: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, IQ4_NL, MXFP4.
bool kquant_supports(DType weight);
// The activation format `weight` pairs with: Q8_K for the 256-element formats, Q8_0 otherwise.
DType kquant_activation_format(DType weight);

// ggml's quantize_row_q8_K_ref, byte for byte (k % 256 == 0); a non-finite block as above.
void quantize_row_q8_K_ref(const float* x, int64_t k, BlockQ8_K* y);

// Activations [m, k] quantized for one weight format, in plain element order.
struct KQuantActivations {
  DType weight = DType::Q4_K;
  DType format = DType::Q8_K;  // Q8_K or Q8_0
  int64_t m = 0, k = 0;
  int64_t nb = 0;              // blocks per row: k/256 (Q8_K) or k/32 (Q8_0)
  std::vector<int8_t> qs;      // [m, k]
  std::vector<float> d;        // [m, nb]: Q8_K's fp32 d, or Q8_0's d after fp16 rounding
  std::vector<int16_t> bsums;  // [m, nb, 16] (Q8_K only): Σ qs per 16 elements
  // Q8_0 only, for the AVX-512 kernel, which feeds the weights as unsigned bytes T + 128:
  std::vector<int32_t> bias;  // [m, k/4]: −128·Σ of qs bytes 4l..4l+3 (int32 lane l)
  std::vector<float> dlanes;  // [m, ceil(nb/2), 16]: d of block 2p in lanes 0–7, 2p+1 in 8–15
};

// Quantizes x [m, k] for `weight` with SIMD level `isa` (all levels give identical bytes).
void quantize_kquant_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                                 KQuantActivations* out);

// y[m, n] = Q(x)[m, k] · Wᵀ at SIMD level `isa` (lowbit::Error for bad input or a level this CPU
// lacks). The scalar level is the reference: per row, blocks accumulated in order in fp32.
void linear_kquant_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y);
// Same with already quantized activations (a.weight must equal w.dtype, a.k == w.k).
void linear_kquant_prequantized(Isa isa, const WeightMatrix& w, const KQuantActivations& a,
                                float* y);

// Internal: what each SIMD variant provides (x86/kquant_dot_{avx2,avx512}.cpp).
// q8k_quantize_row: nb Q8_K blocks of x -> qs (256·nb), d (nb), bsums (16·nb), as the reference.
#define LOWBIT_DECLARE_KQUANT_KERNELS(ns)                                                  \
  namespace ns {                                                                           \
  void q8k_quantize_row(const float* x, int64_t nb, int8_t* qs, float* d, int16_t* bsums); \
  void kquant_linear(const WeightMatrix& w, const KQuantActivations& a, float* y);         \
  }
LOWBIT_DECLARE_KQUANT_KERNELS(avx2)
LOWBIT_DECLARE_KQUANT_KERNELS(avx512)
#undef LOWBIT_DECLARE_KQUANT_KERNELS

}  // namespace lowbit::kernels::cpu
