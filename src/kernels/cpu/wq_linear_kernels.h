// Internal: the packed layout behind wq_linear.h and the entry points each SIMD variant
// (x86/wq_linear_{avx2,avx512}.cpp) provides. Callers have validated sizes and pointers.
//
// Packed layout, per weight row j (columns already in group order, see WqSource::perm):
//   codes: row_bytes bytes.
//     kInt8: one byte per column, code as given (0..255).
//     4-bit kinds: the row is cut into units of 128 columns, then at most one unit of 64,
//       one of 32 and one of the remainder r < 32 rounded up to even (padding code 0). A unit
//       of U columns is U/2 bytes; byte t holds column t in its low nibble and column U/2 + t
//       in its high nibble. So one 64-byte load of a 128-unit gives columns 0..63 (low
//       nibbles) and 64..127 (high nibbles), each in natural order, matching activations in
//       natural order; AVX2 reads a 128-unit as two 32-byte halves (0..31|64..95, 32..63|96..127).
//   scale [n, groups] fp32, zero [n, groups] fp32 (int kinds only; the symmetric default
//     8 / 128 filled in). Column c of group g decodes to
//       int kinds: scale·(code − zero)   (code − zero is exact in fp32: one rounding)
//       nf4/fp4:   scale·lut[code]
//     Int kinds are Q4_1-style (value = scale·code + min with min = −scale·zero), so they pair
//     with int8 activations: Σ_c w_c·x_c = scale·(Σ q_c·x_c − zero·Σ x_c) per group.
//
// The SIMD kernels take group_size % 32 == 0 (then k % 32 == 0: 32-column blocks never
// straddle groups); other layouts use the scalar kernel at every level.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/wq_linear.h"

namespace lowbit::kernels::cpu {

struct WqWeight {
  WqKind kind = WqKind::kInt4;
  int64_t n = 0, k = 0, group_size = 0, groups = 0;
  bool has_zeros = false;      // as given (reports only)
  std::vector<int32_t> perm;   // [k] or empty (identity): packed column c = input x[perm[c]]
  int64_t row_bytes = 0;       // bytes of codes per row
  std::vector<uint8_t> codes;  // [n, row_bytes]
  std::vector<float> scale;    // [n, groups]
  std::vector<float> zero;     // [n, groups] for int kinds, empty for nf4/fp4
};

// Activations [m, k] for the int8-activation kernels, in packed column order: each block of
// 32 quantized like llama.cpp's Q8 blocks (d = amax/127 kept in fp32, q = round(x/d); a block
// holding NaN/Inf gets d = NaN, q = 0, so the NaN reaches only that row's outputs).
struct WqQ8Activations {
  int64_t m = 0, k = 0;
  int64_t kp = 0;         // row stride of q: k rounded up to 64 (padding q = 0, d = 0)
  int64_t groups = 0;     // weight groups per row
  std::vector<int8_t> q;  // [m, kp]
  std::vector<float> d;   // [m, kp / 32]
  std::vector<float> xs;  // [m, groups]: Σ over the group's blocks of d·Σq (fp32)
};

// Whether the SIMD kernels take this layout (else the scalar kernel runs at every level).
inline bool wq_simd_layout(const WqWeight& w) { return w.group_size % 32 == 0; }

inline bool wq_is_4bit(WqKind kind) { return kind != WqKind::kInt8; }
inline bool wq_is_lut(WqKind kind) { return kind == WqKind::kNf4 || kind == WqKind::kFp4; }

// 4-bit unit layout above: codes of one row (k values < 16) <-> packed bytes (ceil(k/2)).
void wq_pack_nibbles(const uint8_t* codes, int64_t k, uint8_t* packed);
void wq_unpack_nibbles(const uint8_t* packed, int64_t k, uint8_t* codes);

// Row j decoded to fp32 in packed (group) column order: k values.
void wq_decode_row(const WqWeight& w, int64_t j, float* out);

// What each SIMD variant provides (wq_simd_layout(w) holds). xg: fp32 activations [m, k] in
// packed column order. q8: int4/int8 kinds only.
#define LOWBIT_DECLARE_WQ_KERNELS(ns)                                            \
  namespace ns {                                                                 \
  void wq_linear_exact(const WqWeight& w, const float* xg, int64_t m, float* y); \
  void wq_linear_q8(const WqWeight& w, const WqQ8Activations& a, float* y);      \
  }
LOWBIT_DECLARE_WQ_KERNELS(avx2)
LOWBIT_DECLARE_WQ_KERNELS(avx512)
#undef LOWBIT_DECLARE_WQ_KERNELS

}  // namespace lowbit::kernels::cpu
