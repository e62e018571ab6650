#include "quant/weight_only_method.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <typeinfo>

#include "core/error.h"

namespace lowbit::quant {
namespace kc = kernels::cpu;

namespace {

// What finish() prepares.
struct Prepared {
  std::shared_ptr<const kc::WqWeight> weight;
  std::vector<float> bias;  // empty when the layer has none
};

// Whether finish() packs `w` with zero points (it drops zeros that all equal the symmetric
// default, so such a weight runs the symmetric kernels).
bool packs_zeros(const DecodedWeight& w) {
  if (w.zeros.empty()) return false;
  if (w.kind != kc::WqKind::kInt4 && w.kind != kc::WqKind::kInt8) return false;
  const float sym = w.kind == kc::WqKind::kInt4 ? 8.0f : 128.0f;
  return !std::all_of(w.zeros.begin(), w.zeros.end(), [&](float z) { return z == sym; });
}

}  // namespace

std::vector<DType> float_dtypes() { return {DType::F16, DType::BF16, DType::F32}; }

std::vector<float> float_tensor(const TensorView& t, const std::string& what) {
  auto values = float_values(t);
  if (!values) fail("{}: '{}' has dtype {}, expected F16/BF16/F32", what, t.name, name(t.dtype));
  return std::move(*values);
}

std::vector<int64_t> int_tensor(const TensorView& t) {
  std::vector<int64_t> out(size_t(t.numel()));
  if (t.dtype == DType::I32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, t.data + 4 * i, 4);
      out[i] = v;
    }
  } else {
    LOWBIT_CHECK(t.dtype == DType::I64, "{}: dtype {}", t.name, name(t.dtype));
    std::memcpy(out.data(), t.data, 8 * out.size());
  }
  return out;
}

std::vector<int32_t> act_order_perm(const std::vector<int64_t>& g_idx, int64_t group_size,
                                    const std::string& what, const std::string& field) {
  const int64_t k = int64_t(g_idx.size());
  const int64_t n_groups = k / group_size;
  bool identity = true;
  std::vector<int64_t> count(size_t(n_groups), 0);
  for (int64_t c = 0; c < k; ++c) {
    const int64_t g = g_idx[size_t(c)];
    if (g < 0 || g >= n_groups)
      fail("{}: {}[{}] = {}, expected a group index in [0, {}) (in_features {} / group_size {})",
           what, field, c, g, n_groups, k, group_size);
    ++count[size_t(g)];
    identity = identity && g == c / group_size;
  }
  if (identity) return {};
  for (int64_t g = 0; g < n_groups; ++g)
    if (count[size_t(g)] != group_size)
      fail("{}: {} assigns {} input columns to group {}, expected group_size {}", what, field,
           count[size_t(g)], g, group_size);
  std::vector<int32_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int32_t a, int32_t b) { return g_idx[size_t(a)] < g_idx[size_t(b)]; });
  return perm;
}

std::string WeightOnlyIntMethod::what(const LinearLayer& layer) const {
  return layer.prefix + " (" + method_name_ + ")";
}

void WeightOnlyIntMethod::add_bias_spec(const LinearLayer& layer,
                                        std::vector<TensorSpec>& specs) const {
  if (layer.has_bias) specs.push_back({"bias", {layer.out_features}, float_dtypes(), false});
}

void WeightOnlyIntMethod::finish(LinearLayer& layer, kc::WqSource src) const {
  const bool int_kind = src.kind == kc::WqKind::kInt4 || src.kind == kc::WqKind::kInt8;
  if (int_kind && src.zeros) {
    const float sym = src.kind == kc::WqKind::kInt4 ? 8.0f : 128.0f;
    const int64_t nz = src.n * (src.k / src.group_size);
    if (std::all_of(src.zeros, src.zeros + nz, [&](float z) { return z == sym; }))
      src.zeros = nullptr;
  }
  auto p = std::make_shared<Prepared>();
  p->weight = kc::pack_wq_weight(src, what(layer));
  if (auto it = layer.tensors.find("bias"); it != layer.tensors.end())
    p->bias = float_tensor(it->second, what(layer));
  layer.prepared = p;
}

void WeightOnlyIntMethod::process_weights_after_loading(LinearLayer& layer) const {
  const DecodedWeight q = decode(layer);
  finish(layer, q.source());
}

void WeightOnlyIntMethod::apply(const LinearLayer& layer, const float* x, int64_t m,
                                float* y) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  kc::wq_linear(*p.weight, x, m, y);
  if (!p.bias.empty()) {
    const int64_t n = layer.out_features;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j) y[r * n + j] += p.bias[size_t(j)];
  }
}

std::optional<LinearLayer> WeightOnlyIntMethod::fuse_rows(
    std::span<const LinearLayer> parts, std::span<const LinearMethod* const> methods,
    const std::string& prefix) const {
  if (parts.empty() || parts.size() != methods.size()) return std::nullopt;
  std::vector<const WeightOnlyIntMethod*> ms;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto* m = dynamic_cast<const WeightOnlyIntMethod*>(methods[i]);
    if (!m || typeid(*m) != typeid(*this) || m->activations().active() ||
        parts[i].in_features != parts.front().in_features ||
        parts[i].has_bias != parts.front().has_bias)
      return std::nullopt;
    ms.push_back(m);
  }
  std::vector<DecodedWeight> ws;
  for (size_t i = 0; i < parts.size(); ++i) {
    ws.push_back(ms[i]->decode(parts[i]));
    const DecodedWeight &a = ws.back(), &b = ws.front();
    if (a.kind != b.kind || a.k != b.k || a.group_size != b.group_size || a.perm != b.perm ||
        packs_zeros(a) != packs_zeros(b))
      return std::nullopt;
  }
  DecodedWeight stacked;
  stacked.kind = ws.front().kind;
  stacked.k = ws.front().k;
  stacked.group_size = ws.front().group_size;
  stacked.perm = ws.front().perm;
  const bool zeros = packs_zeros(ws.front());
  for (const DecodedWeight& w : ws) {
    stacked.n += w.n;
    stacked.codes.insert(stacked.codes.end(), w.codes.begin(), w.codes.end());
    stacked.scales.insert(stacked.scales.end(), w.scales.begin(), w.scales.end());
    if (zeros) stacked.zeros.insert(stacked.zeros.end(), w.zeros.begin(), w.zeros.end());
  }
  LinearLayer fused;
  fused.prefix = prefix;
  fused.in_features = parts.front().in_features;
  fused.out_features = stacked.n;
  fused.has_bias = parts.front().has_bias;
  std::vector<float> bias;
  if (fused.has_bias) {
    for (const LinearLayer& p : parts) {
      std::vector<float> b = float_tensor(p.tensors.at("bias"), what(p));
      bias.insert(bias.end(), b.begin(), b.end());
    }
    fused.tensors["bias"] = TensorView{prefix + ".bias",
                                       DType::F32,
                                       {fused.out_features},
                                       reinterpret_cast<const uint8_t*>(bias.data()),
                                       uint64_t(bias.size() * sizeof(float))};
  }
  finish(fused, stacked.source());
  fused.tensors.erase("bias");  // finish() copied it; the view would dangle
  return fused;
}

uint64_t WeightOnlyIntMethod::weight_bytes(const LinearLayer& layer) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  return kc::wq_bytes(*p.weight) + p.bias.size() * sizeof(float);
}

}  // namespace lowbit::quant
