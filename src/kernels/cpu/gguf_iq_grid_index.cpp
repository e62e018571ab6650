// Grid search structures of the i-quant quantizers (see gguf_iq_grid_index.h).
#include "kernels/cpu/gguf_iq_grid_index.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cpu/gguf_grids.h"

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

// The level of one stored grid magnitude. The dequantization grids hold the values the dot
// products use (IQ2: 8, 25, 43; IQ3_XXS: 4, 12, ..., 52, 62; IQ3_S: 1, 3, ..., 15; IQ1: -1, 0,
// 1); the quantizers search on their rank l, as ggml's kgrid tables store it.
int level_of(IqGrid which, int v) {
  switch (which) {
    case IqGrid::kIq2xxs:
    case IqGrid::kIq2xs:
    case IqGrid::kIq2s:
      return v == 8 ? 0 : v == 25 ? 1 : v == 43 ? 2 : -1;
    case IqGrid::kIq3xxs: {
      static constexpr int kValues[8] = {4, 12, 20, 28, 36, 44, 52, 62};
      const int* p = std::find(kValues, kValues + 8, v);
      return p == kValues + 8 ? -1 : int(p - kValues);
    }
    case IqGrid::kIq3s:
      return v >= 1 && v <= 15 && v % 2 == 1 ? (v - 1) / 2 : -1;
    case IqGrid::kIq1s:
      return v >= -1 && v <= 1 ? v + 1 : -1;
  }
  return -1;
}

struct GridSource {
  int n, group, bits, nwant;  // nwant: distinct distances a neighbour list spans (ggml's)
  const void* rows;           // n rows of `group` bytes
  bool is_signed;
};

GridSource source_of(IqGrid which) {
  switch (which) {
    case IqGrid::kIq2xxs:
      return {256, 8, 2, 2, kIq2xxsGrid, false};
    case IqGrid::kIq2xs:
      return {512, 8, 2, 2, kIq2xsGrid, false};
    case IqGrid::kIq2s:
      return {1024, 8, 2, 1, kIq2sGrid, false};
    case IqGrid::kIq1s:
      return {2048, 8, 2, 3, kIq1sGrid, true};
    case IqGrid::kIq3xxs:
      return {256, 4, 3, 2, kIq3xxsGrid, false};
    case IqGrid::kIq3s:
      return {512, 4, 3, 3, kIq3sGrid, false};
  }
  fail("unknown IQ grid {}", int(which));
}

}  // namespace

IqGridIndex::IqGridIndex(IqGrid which) {
  const GridSource src = source_of(which);
  group_ = src.group;
  bits_ = src.bits;
  nwant_ = src.nwant;
  points_.resize(size_t(src.n));
  map_.assign(size_t(1) << (bits_ * group_), -1);
  for (int j = 0; j < src.n; ++j) {
    uint32_t key = 0;
    for (int i = 0; i < group_; ++i) {
      const size_t at = size_t(j) * size_t(group_) + size_t(i);
      const int v = src.is_signed ? int(static_cast<const int8_t*>(src.rows)[at])
                                  : int(static_cast<const uint8_t*>(src.rows)[at]);
      const int l = level_of(which, v);
      LOWBIT_CHECK(l >= 0, "IQ grid {} row {}: value {} is not a grid level", int(which), j, v);
      points_[size_t(j)][size_t(i)] = int8_t(2 * l + 1);
      max_level_ = std::max(max_level_, l);
      key |= uint32_t(l) << (bits_ * i);
    }
    LOWBIT_CHECK(map_[key] < 0, "IQ grid {}: rows {} and {} are the same point", int(which),
                 map_[key], j);
    map_[key] = j;
  }
  build_neighbours();
}

void IqGridIndex::levels(int index, int8_t* L) const {
  const auto& p = points_[size_t(index)];
  for (int i = 0; i < group_; ++i) L[i] = int8_t((p[size_t(i)] - 1) / 2);
}

// For every key off the grid (with levels <= max_level_): the grid points at the nwant_
// smallest distinct squared distances, by (distance, index). Distances are small integers
// (at most 8·14² = 1568), so one counting pass per key replaces ggml's qsort.
void IqGridIndex::build_neighbours() {
  const uint32_t n_keys = uint32_t(map_.size());
  const int levels = 1 << bits_;
  constexpr int kMaxD2 = 8 * 14 * 14;
  neighbour_begin_.assign(size_t(n_keys) + 1, 0);
  std::vector<int> d2(points_.size());
  std::vector<int> count(kMaxD2 + 1);
  for (uint32_t key = 0; key < n_keys; ++key) {
    neighbour_begin_[key] = uint32_t(neighbour_list_.size());
    if (map_[key] >= 0) continue;
    int8_t odd[8];
    bool in_range = true;
    for (int i = 0; i < group_; ++i) {
      const int l = int(key >> (bits_ * i)) & (levels - 1);
      in_range = in_range && l <= max_level_;
      odd[i] = int8_t(2 * l + 1);
    }
    if (!in_range) continue;
    std::fill(count.begin(), count.end(), 0);
    for (size_t j = 0; j < points_.size(); ++j) {
      int s = 0;
      for (int i = 0; i < group_; ++i) {
        const int diff = points_[j][size_t(i)] - odd[i];
        s += diff * diff;
      }
      d2[j] = s;
      ++count[size_t(s)];
    }
    // The nwant_-th smallest distinct distance bounds the list.
    int bound = -1, distinct = 0;
    for (int s = 0; s <= kMaxD2 && distinct < nwant_; ++s) {
      if (count[size_t(s)] > 0) {
        ++distinct;
        bound = s;
      }
    }
    neighbour_list_.push_back(0);  // placeholder: the list's length, as ggml stores it
    const size_t head = neighbour_list_.size() - 1;
    for (int s = 0; s <= bound; ++s) {
      if (count[size_t(s)] == 0) continue;
      for (size_t j = 0; j < points_.size(); ++j)
        if (d2[j] == s) neighbour_list_.push_back(uint16_t(j));
    }
    neighbour_list_[head] = uint16_t(neighbour_list_.size() - head - 1);
  }
  neighbour_begin_[n_keys] = uint32_t(neighbour_list_.size());
}

std::span<const uint16_t> IqGridIndex::neighbours(uint32_t key) const {
  LOWBIT_CHECK(key < map_.size(), "IQ grid key {} out of range", key);
  const uint32_t begin = neighbour_begin_[key], end = neighbour_begin_[key + 1];
  LOWBIT_CHECK(end > begin && map_[key] < 0, "IQ grid key {} has no neighbour list", key);
  // Skip the stored length: the span is the list itself.
  return {neighbour_list_.data() + begin + 1, size_t(end - begin - 1)};
}

const IqGridIndex& iq_grid_index(IqGrid which) {
  switch (which) {
    case IqGrid::kIq2xxs: {
      static const IqGridIndex index(IqGrid::kIq2xxs);
      return index;
    }
    case IqGrid::kIq2xs: {
      static const IqGridIndex index(IqGrid::kIq2xs);
      return index;
    }
    case IqGrid::kIq2s: {
      static const IqGridIndex index(IqGrid::kIq2s);
      return index;
    }
    case IqGrid::kIq1s: {
      static const IqGridIndex index(IqGrid::kIq1s);
      return index;
    }
    case IqGrid::kIq3xxs: {
      static const IqGridIndex index(IqGrid::kIq3xxs);
      return index;
    }
    case IqGrid::kIq3s: {
      static const IqGridIndex index(IqGrid::kIq3s);
      return index;
    }
  }
  fail("unknown IQ grid {}", int(which));
}

}  // namespace lowbit::kernels::cpu::gguf_detail
