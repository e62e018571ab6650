#include "quant/weight_only_method.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/error.h"

namespace lowbit::quant {
namespace kc = kernels::cpu;

namespace {

// What finish() prepares.
struct Prepared {
  std::shared_ptr<const kc::WqWeight> weight;
  std::vector<float> bias;  // empty when the layer has none
};

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

uint64_t WeightOnlyIntMethod::weight_bytes(const LinearLayer& layer) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  return kc::wq_bytes(*p.weight) + p.bias.size() * sizeof(float);
}

}  // namespace lowbit::quant
