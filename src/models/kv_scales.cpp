#include "models/kv_scales.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "models/weight_source.h"

namespace lowbit::models {
namespace {

// One naming scheme: the key and value tensor names of layer L (equal when one scale serves both).
struct Scheme {
  const char* prefix;  // "model.layers." or "transformer.layers."
  const char* k;
  const char* v;
};
constexpr Scheme kSchemes[] = {
    {"model.layers.", "self_attn.k_scale", "self_attn.v_scale"},
    {"model.layers.", "self_attn.k_proj.k_scale", "self_attn.v_proj.v_scale"},
    {"model.layers.", "self_attn.k_proj.output_scale", "self_attn.v_proj.output_scale"},
    {"model.layers.", "self_attn.kv_scale", "self_attn.kv_scale"},
    {"model.layers.", "self_attn.kv_cache_scaling_factor", "self_attn.kv_cache_scaling_factor"},
    {"transformer.layers.", "attention.kv_cache_scaling_factor",
     "attention.kv_cache_scaling_factor"},
};

std::string name_of(const Scheme& s, int64_t layer, const char* rest) {
  return s.prefix + std::to_string(layer) + "." + rest;
}

// Fills out[0 .. heads) from one scale tensor; returns true when it is per head.
bool read_scale(const WeightSource& src, const std::string& name, int64_t heads, float* out) {
  const TensorView* t = src.find(name);
  const std::string shown = src.stored_name(name);
  const std::string& stored = shown.empty() ? name : shown;
  auto values = float_values(*t);
  if (!values)
    fail("{}: KV scale tensor '{}' is {}, expected F32, F16 or BF16", src.path(), stored,
         lowbit::name(t->dtype));
  const bool per_head = t->numel() == heads && !t->shape.empty() && t->shape[0] == heads;
  if (t->numel() != 1 && !per_head)
    fail(
        "{}: KV scale tensor '{}' has shape {}, expected [1] (one scale per layer) or [{}] / "
        "[{}, 1, 1] (one per KV head)",
        src.path(), stored, shape_string(t->shape), heads, heads);
  for (size_t i = 0; i < values->size(); ++i)
    if (!((*values)[i] > 0.0f) || !std::isfinite((*values)[i]))
      fail("{}: KV scale tensor '{}' holds {} at index {}; scales must be positive and finite",
           src.path(), stored, (*values)[i], i);
  for (int64_t h = 0; h < heads; ++h) out[h] = (*values)[per_head ? size_t(h) : 0];
  return per_head;
}

}  // namespace

std::optional<engine::KvScales> read_checkpoint_kv_scales(const WeightSource& src,
                                                          int64_t num_layers,
                                                          int64_t num_kv_heads) {
  // The scheme of each layer: the first whose key or value tensor exists (-1: none).
  std::vector<int> scheme(size_t(num_layers), -1);
  int64_t first_with = -1;
  for (int64_t l = 0; l < num_layers; ++l)
    for (int s = 0; s < int(std::size(kSchemes)) && scheme[size_t(l)] < 0; ++s)
      if (src.find(name_of(kSchemes[s], l, kSchemes[s].k)) ||
          src.find(name_of(kSchemes[s], l, kSchemes[s].v))) {
        scheme[size_t(l)] = s;
        if (first_with < 0) first_with = l;
      }
  if (first_with < 0) return std::nullopt;

  engine::KvScales out(num_layers, num_kv_heads, engine::KvScaleGranularity::kTensor);
  out.from_checkpoint = true;
  bool per_head = false;
  for (int64_t l = 0; l < num_layers; ++l) {
    if (scheme[size_t(l)] < 0) {
      const Scheme& s = kSchemes[scheme[size_t(first_with)]];
      fail("{}: layer {} has FP8 KV cache scales ('{}') but layer {} has none (no '{}')",
           src.path(), first_with, name_of(s, first_with, s.k), l, name_of(s, l, s.k));
    }
    const Scheme& s = kSchemes[scheme[size_t(l)]];
    for (const char* part : {s.k, s.v})
      if (!src.find(name_of(s, l, part)))
        fail("{}: layer {} has '{}' but not '{}'; KV scales come in pairs", src.path(), l,
             name_of(s, l, part == s.k ? s.v : s.k), name_of(s, l, part));
    per_head |= read_scale(src, name_of(s, l, s.k), num_kv_heads, out.k.data() + l * num_kv_heads);
    per_head |= read_scale(src, name_of(s, l, s.v), num_kv_heads, out.v.data() + l * num_kv_heads);
  }
  if (per_head) out.granularity = engine::KvScaleGranularity::kHead;
  return out;
}

}  // namespace lowbit::models
