#include "quant/int_packing.h"

#include <algorithm>
#include <bit>

#include "core/error.h"

namespace lowbit::quant {

static_assert(std::endian::native == std::endian::little, "int32 containers are little-endian");

void decode_stream(const uint32_t* words, int64_t n, int bits, uint8_t* out) {
  const uint64_t mask = (1u << bits) - 1u;
  uint64_t buf = 0;  // pending bits, least significant first
  int have = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (have < bits) {
      buf |= uint64_t(*words++) << have;
      have += 32;
    }
    out[j] = uint8_t(buf & mask);
    buf >>= bits;
    have -= bits;
  }
}

std::vector<uint8_t> unpack_row_streams(const TensorView& t, int64_t values, int bits) {
  LOWBIT_CHECK(t.shape.size() == 2 && t.dim(1) >= packed_words(values, bits), "{}: {} words",
               t.name, shape_string(t.shape));
  const int64_t rows = t.dim(0), words = t.dim(1);
  std::vector<uint8_t> out(size_t(rows * values));
#pragma omp parallel
  {
    std::vector<uint32_t> row(static_cast<size_t>(words));  // aligned copy of one row
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(row.data(), t.data + 4 * r * words, size_t(4 * words));
      decode_stream(row.data(), values, bits, out.data() + r * values);
    }
  }
  return out;
}

std::vector<uint8_t> unpack_column_streams(const TensorView& t, int64_t values, int bits) {
  std::vector<uint8_t> by_col = unpack_column_streams_transposed(t, values, bits);
  return transposed(by_col, t.dim(1), values);
}

std::vector<uint8_t> unpack_column_streams_transposed(const TensorView& t, int64_t values,
                                                      int bits) {
  LOWBIT_CHECK(t.shape.size() == 2 && t.dim(0) >= packed_words(values, bits), "{}: {} words",
               t.name, shape_string(t.shape));
  const int64_t cols = t.dim(1), words = packed_words(values, bits);
  std::vector<uint8_t> out(size_t(cols * values));
  // Tiles of kTile columns: each stored row of the tile is one contiguous read, gathered into
  // one contiguous stream per column, which is then decoded in order.
  constexpr int64_t kTile = 16;
#pragma omp parallel
  {
    std::vector<uint32_t> streams(size_t(kTile * words));
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t nc = std::min(kTile, cols - c0);
      uint32_t tile_row[kTile];
      for (int64_t w = 0; w < words; ++w) {
        std::memcpy(tile_row, t.data + 4 * (w * cols + c0), size_t(4 * nc));
        for (int64_t c = 0; c < nc; ++c) streams[size_t(c * words + w)] = tile_row[c];
      }
      for (int64_t c = 0; c < nc; ++c)
        decode_stream(streams.data() + c * words, values, bits, out.data() + (c0 + c) * values);
    }
  }
  return out;
}

}  // namespace lowbit::quant
