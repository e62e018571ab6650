// The i-quant grid search structures (kernels/cpu/gguf_iq_grid_index.h) against a plain
// restatement of ggml's iq2xs_init_impl / iq3xs_init_impl: every grid point maps to its index,
// and every off-grid key's neighbour list equals "sort all grid points by (squared distance,
// index), keep those within the nwant smallest distances". Plus: first use from many threads
// builds one index. (The quantizers' bytes, which depend on all of this, are checked against
// llama.cpp in gguf_quantize_test.cpp.)
#include "kernels/cpu/gguf_iq_grid_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace lowbit::kernels::cpu::gguf_detail {
namespace {

struct GridCase {
  IqGrid grid;
  const char* name;
  int size, nwant;  // ggml's grid size and neighbour distance count
};

const GridCase kGrids[] = {{IqGrid::kIq2xxs, "IQ2_XXS", 256, 2}, {IqGrid::kIq2xs, "IQ2_XS", 512, 2},
                           {IqGrid::kIq2s, "IQ2_S", 1024, 1},    {IqGrid::kIq1s, "IQ1", 2048, 3},
                           {IqGrid::kIq3xxs, "IQ3_XXS", 256, 2}, {IqGrid::kIq3s, "IQ3_S", 512, 3}};

uint32_t key_of(const IqGridIndex& g, const int8_t* L) {
  uint32_t key = 0;
  for (int i = 0; i < g.group(); ++i) key |= uint32_t(L[i]) << (g.bits() * i);
  return key;
}

// ggml's neighbour list of `key`, by sorting every grid point.
std::vector<uint16_t> reference_neighbours(const IqGridIndex& g, uint32_t key, int nwant) {
  std::vector<std::pair<int, int>> dist;  // (d2, index)
  for (int j = 0; j < g.size(); ++j) {
    int d2 = 0;
    for (int i = 0; i < g.group(); ++i) {
      const int l = int(key >> (g.bits() * i)) & ((1 << g.bits()) - 1);
      const int diff = g.odd_values(j)[size_t(i)] - (2 * l + 1);
      d2 += diff * diff;
    }
    dist.push_back({d2, j});
  }
  std::sort(dist.begin(), dist.end());
  std::vector<uint16_t> out;
  int have = 1, d2 = dist[0].first;
  for (const auto& [d, j] : dist) {
    if (d > d2) {
      if (have == nwant) break;
      d2 = d;
      ++have;
    }
    out.push_back(uint16_t(j));
  }
  return out;
}

TEST(IqGridIndex, GridPointsMapToThemselves) {
  for (const GridCase& c : kGrids) {
    const IqGridIndex& g = iq_grid_index(c.grid);
    ASSERT_EQ(g.size(), c.size) << c.name;
    for (int j = 0; j < g.size(); ++j) {
      int8_t L[8];
      g.levels(j, L);
      ASSERT_EQ(g.find(key_of(g, L)), j) << c.name;
    }
  }
}

TEST(IqGridIndex, NeighbourListsMatchGgmlsSortedSearch) {
  std::mt19937 rng(11);
  for (const GridCase& c : kGrids) {
    const IqGridIndex& g = iq_grid_index(c.grid);
    // The quantizers clamp levels to 0..2 (2-bit grids) or 0..7 (3-bit grids).
    const int top = g.bits() == 2 ? 2 : 7;
    std::uniform_int_distribution<int> level(0, top);
    int checked = 0;
    for (int trial = 0; trial < 4000 && checked < 300; ++trial) {
      int8_t L[8] = {};
      for (int i = 0; i < g.group(); ++i) L[i] = int8_t(level(rng));
      const uint32_t key = key_of(g, L);
      if (g.find(key) >= 0) continue;
      const auto got = g.neighbours(key);
      const auto want = reference_neighbours(g, key, c.nwant);
      ASSERT_EQ(std::vector<uint16_t>(got.begin(), got.end()), want) << c.name << " key " << key;
      ++checked;
    }
    EXPECT_GT(checked, 50) << c.name;
  }
}

TEST(IqGridIndex, FirstUseFromManyThreadsBuildsOneIndex) {
  std::vector<const IqGridIndex*> seen(8);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < seen.size(); ++t)
    threads.emplace_back([&seen, t] { seen[t] = &iq_grid_index(IqGrid::kIq3s); });
  for (auto& th : threads) th.join();
  for (const IqGridIndex* p : seen) EXPECT_EQ(p, seen[0]);
}

}  // namespace
}  // namespace lowbit::kernels::cpu::gguf_detail
