// Importance matrices in llama.cpp's imatrix GGUF format (llama-imatrix's default output since
// 2025), both directions:
//   metadata: general.type = "imatrix", imatrix.datasets (ARRAY of STRING),
//             imatrix.chunk_count (U32), imatrix.chunk_size (U32);
//   tensors, per weight matrix NAME (e.g. "blk.0.ffn_down.weight"):
//     NAME.in_sum2  F32 [n_mat, n_in]  sum over tokens of x_j² per input column j
//     NAME.counts   F32 [n_mat, 1]     tokens summed (per expert for MoE weights)
// The importance of column j is in_sum2 / counts (a matrix never seen counts 1 everywhere), as
// llama-quantize computes it; counts are rounded to integers first, as llama.cpp does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lowbit::io {

struct ImatrixEntry {
  int64_t n_mat = 1;           // 1, or the expert count of a 3-D weight
  std::vector<float> in_sum2;  // n_mat × n_in
  std::vector<float> counts;   // n_mat
  int64_t n_in() const { return n_mat ? int64_t(in_sum2.size()) / n_mat : 0; }
};

struct Imatrix {
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0;
  uint32_t chunk_size = 0;
  std::map<std::string, ImatrixEntry> entries;  // by weight name

  // in_sum2 / counts for `weight` (n_mat × n_in values); empty when the weight has no entry.
  std::vector<float> importance(const std::string& weight) const;
};

// Reads an imatrix GGUF; lowbit::Error naming the file and tensor on a missing half, a non-F32
// tensor, mismatched shapes or a negative / non-finite value.
Imatrix read_imatrix(const std::string& path);
// Writes one (temp file + rename, as GgufWriter).
void write_imatrix(const Imatrix& m, const std::string& path);

}  // namespace lowbit::io
