// Internal to the i-quant quantizers (gguf_quantize_iq{1,2,3}.cpp): search structures over the
// IQ lattice grids of gguf_grids.h, the same ones ggml builds in iq2xs_init_impl /
// iq3xs_init_impl (kgrid, kmap, kneighbors), rebuilt here from lowbit's grids.
//
// A grid point is a group of 8 (IQ2_*, IQ1_*) or 4 (IQ3_*) elements, each a level l in
// [0, 2^bits). A group of levels is named by its key Σ l_i << (bits·i). The quantizers round a
// group to levels, look the key up, and if it is not a grid point pick the best of its
// "neighbours": the grid points at the `nwant` smallest squared distances from it, measured
// between the odd values 2l+1, listed by (distance, grid index) as ggml's qsort leaves them
// (the quantizers keep the first best one, so the order decides ties).
//
// Built once per grid on first use (thread-safe: function-local statics), never freed.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace lowbit::kernels::cpu::gguf_detail {

enum class IqGrid { kIq2xxs, kIq2xs, kIq2s, kIq1s, kIq3xxs, kIq3s };

class IqGridIndex {
 public:
  IqGridIndex(IqGrid which);

  int group() const { return group_; }  // elements per grid point: 8 or 4
  int bits() const { return bits_; }    // bits per level in a key: 2 or 3
  int size() const { return int(points_.size()); }

  // The odd values 2l+1 of grid point `index` (group() of them; the rest of the array is 0).
  const std::array<int8_t, 8>& odd_values(int index) const { return points_[size_t(index)]; }
  // The levels (0..2^bits-1) of grid point `index`, written to L[0..group()).
  void levels(int index, int8_t* L) const;
  // Grid index of `key`, or -1 when that group of levels is not a grid point.
  int find(uint32_t key) const { return map_[key]; }
  // Neighbours of a key that is not a grid point, closest first. Only keys whose levels do not
  // exceed the largest level any grid point uses have neighbour lists (the quantizers clamp
  // their levels to that range); asking for another throws.
  std::span<const uint16_t> neighbours(uint32_t key) const;

 private:
  int group_ = 0, bits_ = 0, max_level_ = 0, nwant_ = 0;
  std::vector<std::array<int8_t, 8>> points_;
  std::vector<int32_t> map_;               // key -> grid index, or -1
  std::vector<uint32_t> neighbour_begin_;  // key -> offset into neighbour_list_ (+1 = end)
  std::vector<uint16_t> neighbour_list_;
  void build_neighbours();
};

// The index of one grid, built on first use.
const IqGridIndex& iq_grid_index(IqGrid which);

}  // namespace lowbit::kernels::cpu::gguf_detail
