#include "nn/linear_group.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "quant/row_fusion.h"

namespace lowbit::nn {
namespace {

// Row blocks of the CPU kernels (4 / 8 rows, 16-row GEMM tiles) divide this: parts whose
// out_features it divides keep every row at its position within its block when stacked.
constexpr int64_t kRowAlignment = 16;

// "model.layers.0.self_attn.q_proj" + "…k_proj" -> "model.layers.0.self_attn.q_proj+k_proj".
std::string fused_name(const std::vector<quant::LinearLayer>& parts) {
  std::string name = parts.front().prefix;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i].prefix;
    const size_t dot = p.rfind('.');
    name += "+" + (dot == std::string::npos ? p : p.substr(dot + 1));
  }
  return name;
}

}  // namespace

bool fuse_projections_from_env() {
  static const bool fuse = [] {
    const char* v = std::getenv("LOWBIT_FUSE_PROJECTIONS");
    return !(v != nullptr && std::strcmp(v, "0") == 0);
  }();
  return fuse;
}

void LinearGroup::forward(const float* x, int64_t m, float* y) const {
  if (g_linear_observer != nullptr) [[unlikely]]
    for (const quant::LinearLayer& p : parts_) g_linear_observer->observe(p, x, m);
  if (runs_.size() == 1) return runs_.front().linear.compute(x, m, y);
  for (const Run& r : runs_) {
    const int64_t col = offsets_[r.first], width = r.linear.out_features();
    if (m == 1) {
      r.linear.compute(x, 1, y + col);
      continue;
    }
    // m > 1: the run's [m, width] output into its columns of y [m, out_features_].
    thread_local std::vector<float> part;
    part.resize(size_t(m * width));
    r.linear.compute(x, m, part.data());
    for (int64_t i = 0; i < m; ++i)
      std::copy_n(part.data() + i * width, width, y + i * out_features_ + col);
  }
}

uint64_t LinearGroup::weight_bytes() const {
  uint64_t total = 0;
  for (const Run& r : runs_) total += r.linear.weight_bytes();
  return total;
}

const Linear& LinearGroup::linear_of(size_t part) const {
  for (const Run& r : runs_)
    if (part >= r.first && part < r.first + r.count) return r.linear;
  fail("LinearGroup: part {} of {}", part, parts_.size());
}

LinearGroup load_linear_group(const std::vector<std::string>& prefixes,
                              const std::vector<int64_t>& out_features, int64_t in_features,
                              bool has_bias, const quant::QuantConfig& config,
                              const models::WeightSource& source, bool fuse) {
  LOWBIT_CHECK(!prefixes.empty() && prefixes.size() == out_features.size(),
               "load_linear_group: {} prefixes, {} output sizes", prefixes.size(),
               out_features.size());
  LinearGroup g;
  g.in_features_ = in_features;
  std::vector<std::shared_ptr<const quant::LinearMethod>> methods;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    std::shared_ptr<const quant::LinearMethod> method;
    g.parts_.push_back(load_linear_tensors(prefixes[i], prefixes[i], in_features, out_features[i],
                                           has_bias, config, source, &method));
    methods.push_back(std::move(method));
    g.offsets_.push_back(g.out_features_);
    g.out_features_ += out_features[i];
  }
  // Greedy from the left: the longest run [first, end) that fuses, else the part alone.
  for (size_t first = 0; first < g.parts_.size();) {
    size_t taken = 0;
    const auto* fusable = dynamic_cast<const quant::RowFusableMethod*>(methods[first].get());
    for (size_t end = g.parts_.size(); fuse && fusable && taken == 0 && end > first + 1; --end) {
      bool aligned = true;
      for (size_t i = first; i + 1 < end; ++i)
        aligned = aligned && g.parts_[i].out_features % kRowAlignment == 0;
      if (!aligned) continue;
      std::vector<quant::LinearLayer> parts(g.parts_.begin() + first, g.parts_.begin() + end);
      std::vector<const quant::LinearMethod*> ms;
      for (size_t i = first; i < end; ++i) ms.push_back(methods[i].get());
      std::optional<quant::LinearLayer> fused = fusable->fuse_rows(parts, ms, fused_name(parts));
      if (!fused) continue;
      g.runs_.push_back({Linear(std::move(*fused), methods[first]), first, end - first});
      taken = end - first;
    }
    if (taken == 0) {
      quant::LinearLayer alone = g.parts_[first];
      methods[first]->process_weights_after_loading(alone);
      g.runs_.push_back({Linear(std::move(alone), methods[first]), first, 1});
      taken = 1;
    }
    first += taken;
  }
  return g;
}

}  // namespace lowbit::nn
