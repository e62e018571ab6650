#include "quant/int_packing.h"

#include <bit>

#include "core/error.h"

namespace lowbit::quant {

static_assert(std::endian::native == std::endian::little, "int32 containers are little-endian");

std::vector<uint8_t> unpack_row_streams(const TensorView& t, int64_t values, int bits) {
  LOWBIT_CHECK(t.shape.size() == 2 && t.dim(1) >= packed_words(values, bits), "{}: {} words",
               t.name, shape_string(t.shape));
  const int64_t rows = t.dim(0), words = t.dim(1);
  std::vector<uint8_t> out(size_t(rows * values));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = t.data + 4 * r * words;
    uint8_t* o = out.data() + r * values;
    for (int64_t j = 0; j < values; ++j) o[j] = uint8_t(bitstream_value(row, 1, j, bits));
  }
  return out;
}

std::vector<uint8_t> unpack_column_streams(const TensorView& t, int64_t values, int bits) {
  LOWBIT_CHECK(t.shape.size() == 2 && t.dim(0) >= packed_words(values, bits), "{}: {} words",
               t.name, shape_string(t.shape));
  const int64_t cols = t.dim(1);
  std::vector<uint8_t> out(size_t(values * cols));
  // Row by row of output, so that the inner loop walks one row of words (cache friendly).
  for (int64_t j = 0; j < values; ++j) {
    const int64_t bit = j * bits, word = bit / 32;
    const int shift = int(bit % 32);
    const bool straddles = shift + bits > 32;
    const uint8_t* w0 = t.data + 4 * word * cols;
    const uint8_t* w1 = straddles ? w0 + 4 * cols : nullptr;
    uint8_t* o = out.data() + j * cols;
    for (int64_t c = 0; c < cols; ++c) {
      uint64_t v = load_u32(w0, c) >> shift;
      if (straddles) v |= uint64_t(load_u32(w1, c)) << (32 - shift);
      o[c] = uint8_t(uint32_t(v) & ((1u << bits) - 1u));
    }
  }
  return out;
}

}  // namespace lowbit::quant
