// GEMM for the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) and the K-quants
// IQ4_XS, Q4_K, Q5_K, Q6_K with int8 activations, llama.cpp's repacked-weights approach: the
// weights are rearranged once at load into tiles of 16 rows whose bytes for one 4-element group
// form one 64-byte register (lane r = row r), so a micro-kernel step is one vpdpbusd of 16 output
// columns against 4 activation bytes broadcast from memory; each decoded register serves up to 8
// activation rows (prompt processing) or 1 (generation, with software prefetch).
//
// Arithmetic (the same bits as the scalar references linear_q8_isa / linear_kquant_isa at
// Isa::kScalar, i.e. ggml's generic dot products), without fused multiply-adds:
//   32-element formats: activations quantized to Q8_0 (Q8_1 for Q4_1/Q5_1) exactly as
//   q8_activation.h; per block the integer Σ q_w·q_x is exact; blocks are accumulated in order in
//   fp32 as  sum += (d_w·d_x)·float(Σ)  (Q4_1/Q5_1: sum += ((d_w·d_x)·float(Σ) + m_w·s_x)).
//   K-quants: Q8_K activations as kquant_dot.h; per super-block isum = Σ_s sc_s·Σ_{e∈s} q_w·q_x
//   over its sub-blocks of 32 (Q6_K: groups of 16) and msum = Σ_s m_s·Σ_{e∈s} q_x (Q4_K, Q5_K),
//   exact; sum += (d_w·d_x)·float(isum) − (dmin_w·d_x)·float(msum).
//   Weights enter vpdpbusd unsigned: u = q (Q4_0, Q5_0, Q4_1, Q5_1, Q4_K, Q5_K), q + 128 (Q8_0),
//   T[idx] + 128 (IQ4_NL, IQ4_XS), q + 32 (Q6_K); the offset o (8, 16, 0, 0, 0, 0, 128, 128, 32)
//   comes back through the activations: Σ (u − o)·x = Σ u·x − o·Σ x, and −o·Σ x seeds each
//   block's (sub-block's) integer sum.
//
// Packed layout (PackedGemmWeights::data), per tile of 16 rows (rows past n are zero), blocks in
// order, then their scale records; 64-byte aligned:
//   32-element record: nibble formats: 4 vectors of 64 bytes, vector j byte 4r+e = (element 4j+e)
//     | (element 16+4j+e) << 4 of row r (the file's qs bytes); Q5_x add 8 u64 masks, mask g bit
//     4r+e = 5th bit of element el(g, e) (el = 4g+e for g < 4, 16+4(g−4)+e after); Q8_0: 8
//     vectors, vector g byte 4r+e = q[4g+e] + 128.
//   IQ4_XS, Q4_K, Q5_K: per super-block 8 such records (its sub-blocks of 32); Q6_K: 16 group
//     records of 192 bytes (x86/q8_gemm_avx512.cpp, Six).
//   scales: 32-element: d fp16 [16], then (Q4_1/Q5_1) m fp16 [16]; K-quants: d fp16 [16], dmin
//     fp16 [16], sub-block scales int8 [8 or 16][16], then (Q4_K/Q5_K) the mins as int16 pairs
//     [4][16] (lane r = m_2p, m_2p+1 of row r).
// Per row and block that is the original block size (18, 20, 22, 24, 34, 18) or a little more
// (IQ4_XS 140 for 136, Q4_K 156 for 144, Q5_K 188 for 176, Q6_K 212 for 210), plus the zero rows
// that complete the last tile.
//
// Shapes: W [n, k] (k % 32 == 0, K-quants k % 256 == 0), x [m, k] fp32, y [m, n] fp32. Tiles of
// 16 columns are split across threads (OpenMP, static); for one activation row each thread walks
// its tiles as two streams side by side (x86/q8_gemm_avx512.cpp, kStreams: DRAM bandwidth).
// Only an AVX-512 VNNI kernel exists; lower levels keep the row-wise kernels of q8_activation.h /
// kquant_dot.h (see linear_ggml_prepared).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/linear.h"

namespace lowbit::kernels::cpu {

// Whether pack_gemm_weights() handles `weight`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS,
// Q4_K, Q5_K, Q6_K.
bool gemm_supports(DType weight);

struct PackedGemmWeights {
  struct alignas(64) Line {
    uint8_t bytes[64];
  };
  DType dtype = DType::Q4_0;
  int64_t n = 0, k = 0, tiles = 0;  // tiles = ceil(n/16)
  int64_t block_elems = 32;         // 32, or 256 for IQ4_XS / Q4_K / Q5_K / Q6_K
  int64_t nb = 0;                   // k / block_elems
  size_t quant_bytes = 0;           // per block and tile: 256, 320 (Q5_x), 512 (Q8_0); ×8 for K
  size_t scale_bytes = 0;  // per block and tile: 32, 64 with the mins; K: 192, 448 with mins
  std::vector<Line> data;  // [tiles][tile_bytes()]: quants, then scales

  // Rounded up to whole 64-byte lines: every tile starts aligned.
  size_t tile_bytes() const { return (size_t(nb) * (quant_bytes + scale_bytes) + 63) / 64 * 64; }
  const uint8_t* tile(int64_t t) const {
    return reinterpret_cast<const uint8_t*>(data.data()) + size_t(t) * tile_bytes();
  }
};

// Repacks W (lowbit::Error for an unsupported dtype or bad sizes, naming what was found).
PackedGemmWeights pack_gemm_weights(const WeightMatrix& w);

// Activations [m, k] for the GEMM in plain element order: Q8_0 / Q8_1 as q8_activation.h
// (ggml's x86 rounding) for the 32-element formats, Q8_K as kquant_dot.h for the K-quants.
struct GemmActivations {
  int64_t m = 0, k = 0, nb = 0;  // nb = k / 32, or k / 256 (Q8_K)
  std::vector<int8_t> qs;        // [m, k]
  std::vector<float> d;          // [m, nb]: d_x (Q8_0: after fp16 rounding; NaN: non-finite block)
  std::vector<float> s;          // [m, nb] (Q4_1/Q5_1 only): fp16(d_x·Σ q_x), d_x before rounding
  std::vector<int32_t> bias;  // [m, nb] (Q8_K: [m, nb, 8] per 32): −o·Σ q_x, o the weight offset
  std::vector<int16_t> sub;   // [m, nb, 8] (Q8_K only): Σ q_x per 32 elements
};

// Quantizes x [m, k] for weights of `weight` with SIMD level `isa` (all give the same bytes).
void quantize_gemm_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                               GemmActivations* out);

// y[m, n] = Q8(x)[m, k] · Wᵀ. `isa` must be Isa::kAvx512 (the only level with a GEMM kernel;
// lowbit::Error otherwise or when the CPU lacks it).
void linear_gemm_isa(Isa isa, const PackedGemmWeights& w, const float* x, int64_t m, float* y);
void linear_gemm_prequantized(Isa isa, const PackedGemmWeights& w, const GemmActivations& a,
                              float* y);

// Internal: the AVX-512 kernel (x86/q8_gemm_avx512.cpp); callers validated the shapes.
namespace avx512 {
void q8_gemm(const PackedGemmWeights& w, const GemmActivations& a, float* y);
}

}  // namespace lowbit::kernels::cpu
