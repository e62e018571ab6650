// Linear layers that read the same input (q/k/v, gate/up) as one product where their storage
// lines up: the weights are stacked by rows at load time (quant/row_fusion.h), so one call
// quantizes the activation once (GGUF block types quantize it to Q8 per call) and runs one
// OpenMP parallel region over all output rows, where separate layers pay one region (a barrier
// per token and layer) and one quantization each.
//
// Outputs: y [m, Σ out] with part i in columns [offset(i), offset(i) + out(i)); for m = 1 the
// parts are consecutive slices of y. Fusion never changes a result: each output is computed
// with exactly the arithmetic of its part alone.
//
// When parts fuse: consecutive parts whose methods fuse them (same method class and
// configuration, same tensor type / decoded format, same in_features) and where every part
// but the last of a run has out_features % 16 == 0 — row-blocked kernels (4- and 8-row groups,
// 16-row GEMM tiles) then see each row at the same position within its block as when its part
// runs alone. Runs are maximal from the left: q/k/v of a Q4_K_M file whose v is Q6_K become
// q+k and v. LOWBIT_FUSE_PROJECTIONS=0 (read once) keeps every part separate (A/B runs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/linear.h"

namespace lowbit::nn {

class LinearGroup {
 public:
  LinearGroup() = default;

  // x: [m, in_features] -> y: [m, out_features()] (parts side by side, see above).
  void forward(const float* x, int64_t m, float* y) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  size_t parts() const { return parts_.size(); }
  int64_t offset(size_t part) const { return offsets_.at(part); }
  int64_t out_features(size_t part) const { return parts_.at(part).out_features; }
  // Products per forward: 1 when every part fused, parts() when none did.
  size_t products() const { return runs_.size(); }
  uint64_t weight_bytes() const;
  // The layer computing part `part` (a fused one when that part fused).
  const Linear& linear_of(size_t part) const;

 private:
  friend LinearGroup load_linear_group(const std::vector<std::string>&, const std::vector<int64_t>&,
                                       int64_t, bool, const quant::QuantConfig&,
                                       const models::WeightSource&, bool);
  struct Run {
    Linear linear;
    size_t first = 0, count = 0;  // parts [first, first + count)
  };
  int64_t in_features_ = 0, out_features_ = 0;
  std::vector<quant::LinearLayer> parts_;  // checkpoint views (prefix, shapes) for observers
  std::vector<int64_t> offsets_;
  std::vector<Run> runs_;
};

// Loads `prefixes[i]` ([out_features[i], in_features], optional bias) like load_linear and
// fuses what lines up when `fuse` is set. Errors name the part's tensor as load_linear does.
LinearGroup load_linear_group(const std::vector<std::string>& prefixes,
                              const std::vector<int64_t>& out_features, int64_t in_features,
                              bool has_bias, const quant::QuantConfig& config,
                              const models::WeightSource& source, bool fuse);

// LOWBIT_FUSE_PROJECTIONS: false iff it is "0" (read once).
bool fuse_projections_from_env();

}  // namespace lowbit::nn
