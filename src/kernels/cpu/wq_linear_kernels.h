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
//   scale, min: [n, groups] fp32. Column c of group g decodes to
//       int kinds: scale·code + min   (min = −scale·zero)
//       nf4/fp4:   scale·lut[code]    (min unused, 0)
//     Int kinds are then exactly Q4_1-style (d·q + m) and pair with int8 activations:
//       Σ_c w_c·x_c = scale·Σ q_c·x_c + min·Σ x_c.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/wq_linear.h"

namespace lowbit::kernels::cpu {

struct WqWeight {
  WqKind kind = WqKind::kInt4;
  int64_t n = 0, k = 0, group_size = 0, groups = 0;
  bool has_zeros = false;      // as given (reports only; min already holds the zero)
  std::vector<int32_t> perm;   // [k] or empty (identity): packed column c = input x[perm[c]]
  int64_t row_bytes = 0;       // bytes of codes per row
  std::vector<uint8_t> codes;  // [n, row_bytes]
  std::vector<float> scale;    // [n, groups]
  std::vector<float> min;      // [n, groups]
};

inline bool wq_is_4bit(WqKind kind) { return kind != WqKind::kInt8; }
inline bool wq_is_lut(WqKind kind) { return kind == WqKind::kNf4 || kind == WqKind::kFp4; }

// 4-bit unit layout above: codes of one row (k values < 16) <-> packed bytes (ceil(k/2)).
void wq_pack_nibbles(const uint8_t* codes, int64_t k, uint8_t* packed);
void wq_unpack_nibbles(const uint8_t* packed, int64_t k, uint8_t* codes);

// Row j decoded to fp32 in packed (group) column order: k values.
void wq_decode_row(const WqWeight& w, int64_t j, float* out);

}  // namespace lowbit::kernels::cpu
