// Reading the integer codes of pre-quantized checkpoints out of their int32 containers
// (FORMATS.md §0: little-endian words, slot i = bits [b·i, b·i+b), slot 0 least significant).
//
// GPTQ and compressed-tensors pack b-bit unsigned values as one LSB-first bitstream per row or
// per column of an int32 tensor: value j occupies bits [b·j, b·j+b) of the concatenated words,
// so for b = 3 the values 10 and 21 of every 32 straddle two words (§2.2). AWQ's interleaved
// nibble order is not a bitstream and is decoded in awq.cpp.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/tensor.h"

namespace lowbit::quant {

// Word `i` of int32 storage at any alignment (safetensors data need not be 4-byte aligned).
inline uint32_t load_u32(const uint8_t* data, int64_t i) {
  uint32_t w;
  std::memcpy(&w, data + 4 * i, 4);
  return w;
}

// Words that hold `values` b-bit values: ceil(values · bits / 32).
inline int64_t packed_words(int64_t values, int bits) { return (values * bits + 31) / 32; }

// Decodes the first `n` values of a contiguous bitstream of `bits`-bit values (1..8) held in
// words (already in host order); reads only the ceil(n·bits/32) words it needs.
void decode_stream(const uint32_t* words, int64_t n, int bits, uint8_t* out);

// An int32 tensor [rows, words] whose every row is a bitstream -> codes [rows, values].
// The caller has checked words >= packed_words(values, bits); padding values are ignored.
std::vector<uint8_t> unpack_row_streams(const TensorView& t, int64_t values, int bits);

// An int32 tensor [words, cols] whose every column is a bitstream -> codes [values, cols].
std::vector<uint8_t> unpack_column_streams(const TensorView& t, int64_t values, int bits);

// The same, transposed: codes [cols, values] (one output row per column). GPTQ's qweight
// [K·b/32, N] becomes the kernels' [N, K] without a separate byte transpose.
std::vector<uint8_t> unpack_column_streams_transposed(const TensorView& t, int64_t values,
                                                      int bits);

// [rows, cols] -> [cols, rows].
template <typename T>
std::vector<T> transposed(const std::vector<T>& a, int64_t rows, int64_t cols) {
  std::vector<T> out(a.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(c * rows + r)] = a[size_t(r * cols + c)];
  return out;
}

}  // namespace lowbit::quant
