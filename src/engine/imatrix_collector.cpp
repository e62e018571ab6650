// Importance-matrix statistics from the linear layers' inputs (see imatrix_collector.h).
#include "engine/imatrix_collector.h"

#include <regex>

#include "core/error.h"

namespace lowbit::engine {

std::string gguf_weight_name(const std::string& p) {
  if (p == "lm_head") return "output.weight";
  static const std::regex kLayer(R"(^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$)");
  std::smatch m;
  if (!std::regex_match(p, m, kLayer)) return "";
  static const std::map<std::string, std::string> kNames = {
      {"q_proj", "attn_q"},      {"k_proj", "attn_k"},      {"v_proj", "attn_v"},
      {"o_proj", "attn_output"}, {"gate_proj", "ffn_gate"}, {"up_proj", "ffn_up"},
      {"down_proj", "ffn_down"}};
  auto it = kNames.find(m[3].str());
  if (it == kNames.end()) return "";
  return "blk." + m[1].str() + "." + it->second + ".weight";
}

ImatrixCollector::ImatrixCollector(bool include_output)
    : include_output_(include_output), previous_(nn::g_linear_observer) {
  nn::g_linear_observer = this;
}

ImatrixCollector::~ImatrixCollector() { nn::g_linear_observer = previous_; }

void ImatrixCollector::observe(const quant::LinearLayer& layer, const float* x, int64_t m) {
  if (layer.prefix == "lm_head" && !include_output_) return;
  const std::string name = gguf_weight_name(layer.prefix);
  if (name.empty()) return;
  const int64_t n = layer.in_features;
  std::lock_guard<std::mutex> lock(mu_);
  Sums& s = sums_[name];
  if (s.sum2.empty()) s.sum2.assign(size_t(n), 0.0);
  LOWBIT_CHECK(int64_t(s.sum2.size()) == n, "{}: in_features changed", name);
  for (int64_t r = 0; r < m; ++r) {
    const float* row = x + r * n;
    for (int64_t j = 0; j < n; ++j) s.sum2[size_t(j)] += double(row[j]) * row[j];
  }
  s.tokens += m;
}

io::Imatrix ImatrixCollector::result(std::vector<std::string> datasets, uint32_t chunk_count,
                                     uint32_t chunk_size) const {
  std::lock_guard<std::mutex> lock(mu_);
  io::Imatrix out;
  out.datasets = std::move(datasets);
  out.chunk_count = chunk_count;
  out.chunk_size = chunk_size;
  for (const auto& [name, s] : sums_) {
    io::ImatrixEntry e;
    e.n_mat = 1;
    e.in_sum2.assign(s.sum2.begin(), s.sum2.end());
    e.counts = {float(s.tokens)};
    out.entries.emplace(name, std::move(e));
  }
  return out;
}

}  // namespace lowbit::engine
