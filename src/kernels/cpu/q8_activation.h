// Int8-activation matrix products for 32-element block weights (llama.cpp's CPU approach):
// each activation row is quantized once per linear() call to 8-bit blocks of 32 and every
// weight block is dotted with it in integers (AVX-512 VNNI vpdpbusd / AVX2 maddubs).
//   Q4_0, Q5_0, Q8_0 weights pair with Q8_0 activations: block dot = d_w·d_x·Σ q_w·q_x
//   (q_w − 8 / q_w − 16 for Q4_0 / Q5_0);
//   Q4_1, Q5_1 weights pair with Q8_1 activations: d_w·d_x·Σ q_w·q_x + m_w·s_x,
//   s_x = fp16(d_x·Σ q_x) (d_x in fp32 before its fp16 rounding, as quantize_row_q8_1_ref).
// Block sums are exact integers; blocks are accumulated in fp32 (SIMD variants only reorder
// that fp32 sum). Semantics follow ggml-quants.c quantize_row_q8_{0,1}_ref and
// ggml-cpu/quants.c ggml_vec_dot_q*_q8_*_generic (FORMATS.md §8.5); the activation rounding
// follows ggml's x86 CPU quantizer (quantize_row_q8_0_ggml_cpu below).
// Where llama.cpp is undefined (a NaN/Inf in a block: float→int8 of NaN) this code stores
// d = s = NaN and q = 0, so the NaN reaches that row's outputs and no other row.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/linear.h"

namespace lowbit::kernels::cpu {

// BlockQ8_1 is in gguf_blocks.h (via dequantize.h).

// llama.cpp's block bytes (quantize_row_q8_0_ref / quantize_row_q8_1_ref); k % 32 == 0.
void quantize_row_q8_0_ref(const float* x, int64_t k, BlockQ8_0* y);
void quantize_row_q8_1_ref(const float* x, int64_t k, BlockQ8_1* y);
// What ggml's x86 CPU backend computes with (quantize_row_q8_{0,1} of ggml-cpu/arch/x86/
// quants.c and the repacked GEMMs' quantize_mat_q8_0): id = 127/amax instead of 1/d and round
// to nearest even instead of roundf. The kernels' activations (quantize_activations) are these.
void quantize_row_q8_0_ggml_cpu(const float* x, int64_t k, BlockQ8_0* y);
void quantize_row_q8_1_ggml_cpu(const float* x, int64_t k, BlockQ8_1* y);

// Whether linear_q8*() handles `weight` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
bool q8_activation_supports(DType weight);
// The activation format `weight` pairs with: Q8_1 for Q4_1/Q5_1, Q8_0 otherwise.
DType q8_activation_format(DType weight);

// Activations [m, k] quantized for one weight format, in the layout the kernels read:
// per row, blocks are taken in pairs (2p, 2p+1) and stored as 64 bytes
// [x_2p[0:16) x_2p+1[0:16) x_2p[16:32) x_2p+1[16:32)] so that one 512-bit load lines up with
// two weight blocks decoded as [lo nibbles | lo | hi | hi]; an odd last block is stored
// [x[0:16) x[16:32)]. Values are the same bytes llama.cpp's q8 blocks hold.
struct Q8Activations {
  DType weight = DType::Q4_0;
  int64_t m = 0, k = 0, nb = 0, pairs = 0;  // nb = k/32 blocks, pairs = ceil(nb/2)
  std::vector<int8_t> qs;                   // [m, k], pair-interleaved as above
  std::vector<float> ds;      // [m, pairs, 4]: {d_2p, d_2p+1, s_2p, s_2p+1} (fp16 values)
  std::vector<int32_t> bias;  // [m, pairs, 16]: lane l = −offset·Σ of qs bytes 4l..4l+3
  std::vector<int32_t> sums;  // [m, nb]: Σ q per block
  // [m, pairs, 32], for the AVX-512 kernel: lanes 0..15 = d_x of the block owning int32 lane l
  // (b0 for lanes 0–3, 8–11; b1 for 4–7, 12–15), lanes 16..31 = s_x of b0 at 16, of b1 at 20.
  std::vector<float> lanes;
  // offset = 8 (Q4_0), 16 (Q5_0), else 0: weights enter the integer dot unsigned (q_w), and
  // Σ (q_w − offset)·q_x = Σ q_w·q_x − offset·Σ q_x.
};

// Byte offsets (within a row of qs) of the first / second 16 values of block b of nb.
inline void q8_half_offsets(int64_t b, int64_t nb, int64_t* lo, int64_t* hi) {
  const int64_t p = b / 2;
  if ((b & 1) == 0 && b + 1 == nb) {
    *lo = 64 * p;
    *hi = 64 * p + 16;
  } else {
    *lo = 64 * p + 16 * (b & 1);
    *hi = *lo + 32;
  }
}

// Quantizes x [m, k] (k % 32 == 0) for `weight` with the SIMD level `isa` (all levels give
// identical bytes).
void quantize_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                          Q8Activations* out);

// y[m, n] = Q8(x)[m, k] · Wᵀ at SIMD level `isa` (throws lowbit::Error for bad input or a
// level this CPU lacks). The scalar level is the reference: per row, blocks accumulated in
// order in fp32 exactly like ggml's generic dot products.
void linear_q8_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y);
// Same with already quantized activations (a.weight must equal w.dtype, a.k == w.k).
void linear_q8_prequantized(Isa isa, const WeightMatrix& w, const Q8Activations& a, float* y);

// Internal: what each SIMD variant provides (x86/q8_activation_{avx2,avx512}.cpp).
// quantize_blocks: nb blocks of x → qs (interleaved row layout above), fp32 d before fp16
// rounding (NaN for a non-finite block), integer sums.
#define LOWBIT_DECLARE_Q8_KERNELS(ns)                                                    \
  namespace ns {                                                                         \
  void quantize_blocks(const float* x, int64_t nb, int8_t* qs, float* d, int32_t* sums); \
  void q8_linear(const WeightMatrix& w, const Q8Activations& a, float* y);               \
  }
LOWBIT_DECLARE_Q8_KERNELS(avx2)
LOWBIT_DECLARE_Q8_KERNELS(avx512)
#undef LOWBIT_DECLARE_Q8_KERNELS

}  // namespace lowbit::kernels::cpu
