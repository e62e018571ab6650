#include "quant/fp8_checkpoint.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/linear.h"
#include "quant/config_fields.h"
#include "quant/fp8_online.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {

// What process_weights_after_loading prepares.
struct Prepared {
  std::vector<uint16_t> weight;  // bf16 [n, k], dequantized
  kernels::cpu::WeightMatrix matrix;
  std::vector<float> bias;  // empty when the layer has none
  float input_scale = 0;    // static activations
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The scale tensor's shape for a weight [n, k].
std::vector<int64_t> scale_shape(const Fp8Scheme& s, int64_t n, int64_t k) {
  switch (s.scales) {
    case Fp8Scheme::Scales::kTensor:
      return {1};
    case Fp8Scheme::Scales::kChannel:
      return s.channel_1d ? std::vector<int64_t>{n} : std::vector<int64_t>{n, 1};
    case Fp8Scheme::Scales::kBlock:
      return {ceil_div(n, s.block_n), ceil_div(k, s.block_k)};
  }
  return {};
}

// Float values of `suffix`, each checked positive and finite.
std::vector<float> positive_scales(const LinearLayer& layer, const std::string& suffix,
                                   const std::string& what) {
  std::vector<float> v = float_tensor(layer.tensors.at(suffix), what);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || !(v[i] > 0.0f))
      fail("{}: {}[{}] = {}, expected a positive finite scale", what, suffix, i, v[i]);
  return v;
}

}  // namespace

Fp8CheckpointMethod::Fp8CheckpointMethod(std::string method_name, Fp8Scheme scheme,
                                         std::shared_ptr<std::once_flag> notice)
    : method_name_(std::move(method_name)), scheme_(std::move(scheme)), notice_(std::move(notice)) {
  if (scheme_.scales == Fp8Scheme::Scales::kBlock && (scheme_.block_n <= 0 || scheme_.block_k <= 0))
    fail("{}: FP8 block size [{}, {}], expected two positive lengths", method_name_,
         scheme_.block_n, scheme_.block_k);
}

std::string Fp8CheckpointMethod::what(const LinearLayer& layer) const {
  return layer.prefix + " (" + method_name_ + ", " + scheme_.label + ")";
}

std::vector<TensorSpec> Fp8CheckpointMethod::create_weights(const LinearLayer& layer) const {
  const int64_t n = layer.out_features, k = layer.in_features;
  std::vector<TensorSpec> specs = {
      {"weight", {n, k}, {DType::F8_E4M3}},
      {scheme_.scale_suffix, scale_shape(scheme_, n, k), float_dtypes()}};
  if (scheme_.act.kind == ActQuant::Kind::kStatic)
    specs.push_back({"input_scale", {1}, float_dtypes()});
  if (layer.has_bias) specs.push_back({"bias", {n}, float_dtypes()});
  return specs;
}

Fp8StoredWeight Fp8CheckpointMethod::decode(const LinearLayer& layer) const {
  Fp8StoredWeight d;
  d.n = layer.out_features;
  d.k = layer.in_features;
  d.scales = positive_scales(layer, scheme_.scale_suffix, what(layer));
  const TensorView& w = layer.tensors.at("weight");
  d.codes = w.data;
  for (int64_t i = 0; i < d.n * d.k; ++i)
    if ((d.codes[i] & 0x7f) == 0x7f)
      fail("{}: weight[{}, {}] is an e4m3 NaN (0x{:02x}), expected a finite FP8 code", what(layer),
           i / d.k, i % d.k, d.codes[i]);
  if (scheme_.act.kind == ActQuant::Kind::kStatic)
    d.input_scale = positive_scales(layer, "input_scale", what(layer))[0];
  return d;
}

std::vector<uint16_t> Fp8CheckpointMethod::dequantize_bf16(const Fp8StoredWeight& w) const {
  const int64_t n = w.n, k = w.k;
  std::vector<uint16_t> out(size_t(n * k));
  const int64_t scale_cols =
      scheme_.scales == Fp8Scheme::Scales::kBlock ? ceil_div(k, scheme_.block_k) : 1;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      float s = w.scales[0];
      if (scheme_.scales == Fp8Scheme::Scales::kChannel) s = w.scales[size_t(r)];
      if (scheme_.scales == Fp8Scheme::Scales::kBlock)
        s = w.scales[size_t((r / scheme_.block_n) * scale_cols + c / scheme_.block_k)];
      out[size_t(r * k + c)] = f32_to_bf16(fp8_e4m3_to_f32(w.codes[r * k + c]) * s);
    }
  return out;
}

void Fp8CheckpointMethod::process_weights_after_loading(LinearLayer& layer) const {
  const int64_t n = layer.out_features, k = layer.in_features;
  std::call_once(*notice_, [&] {
    const std::string acts = scheme_.act.active()
                                 ? "activations are rounded as the scheme says (" +
                                       scheme_.act.label() + ") before the bf16 GEMM"
                                 : "activations stay fp32 (weight-only FP8)";
    std::fprintf(stderr,
                 "lowbit: %s: the CPU has no FP8 GEMM: FP8 weights are dequantized to bf16 "
                 "(2 bytes per weight, twice their checkpoint size); %s\n",
                 method_name_.c_str(), acts.c_str());
  });
  const Fp8StoredWeight d = decode(layer);
  auto p = std::make_shared<Prepared>();
  p->weight = dequantize_bf16(d);
  p->matrix = {DType::BF16, p->weight.data(), n, k};
  p->input_scale = d.input_scale;
  if (auto it = layer.tensors.find("bias"); it != layer.tensors.end())
    p->bias = float_tensor(it->second, what(layer));
  layer.prepared = p;
}

void Fp8CheckpointMethod::apply(const LinearLayer& layer, const float* x, int64_t m,
                                float* y) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  const int64_t n = layer.out_features, k = layer.in_features;
  if (scheme_.act.active()) {
    std::vector<float> xq(x, x + m * k);
    fake_quantize_activations(scheme_.act, p.input_scale, xq.data(), m, k);
    kernels::cpu::linear(p.matrix, xq.data(), m, y);
  } else {
    kernels::cpu::linear(p.matrix, x, m, y);
  }
  if (!p.bias.empty())
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j) y[r * n + j] += p.bias[size_t(j)];
}

uint64_t Fp8CheckpointMethod::weight_bytes(const LinearLayer& layer) const {
  const auto& p = *static_cast<const Prepared*>(layer.prepared.get());
  return p.weight.size() * 2 + p.bias.size() * sizeof(float);
}

namespace {

// HF `quant_method: "fp8"` checkpoints (FORMATS.md §4.1, §4.2).
class Fp8CheckpointConfig : public QuantConfig {
 public:
  explicit Fp8CheckpointConfig(const nlohmann::json& j) {
    ConfigFields f(j, "fp8 quantization_config");
    const std::string fmt = f.get_string({"fmt"}, "e4m3");
    if (fmt != "e4m3")
      fail("{}: fmt '{}' is not supported (expected 'e4m3': float8_e4m3fn weights)", f.where(),
           fmt);
    const std::string acts = f.get_string({"activation_scheme"}, "dynamic");
    Fp8Scheme s;
    if (acts == "static") {
      s.act.kind = ActQuant::Kind::kStatic;
    } else if (acts == "dynamic") {
      s.act.kind = ActQuant::Kind::kDynamic;
    } else {
      fail("{}: activation_scheme '{}', expected 'static' or 'dynamic'", f.where(), acts);
    }
    if (const auto it = j.find("weight_block_size"); it != j.end() && !it->is_null()) {
      if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number_integer() ||
          !(*it)[1].is_number_integer() || (*it)[0].get<int64_t>() <= 0 ||
          (*it)[1].get<int64_t>() <= 0)
        fail("{}: weight_block_size is {}, expected [rows, cols] of two positive integers",
             f.where(), it->dump());
      if (acts != "dynamic")
        fail(
            "{}: weight_block_size with activation_scheme '{}': block-wise FP8 needs dynamic "
            "activations",
            f.where(), acts);
      const std::string scale_fmt = f.get_string({"scale_fmt"}, "");
      if (!scale_fmt.empty())
        fail("{}: scale_fmt '{}' (power-of-two activation scales) is not supported yet", f.where(),
             scale_fmt);
      s.scales = Fp8Scheme::Scales::kBlock;
      s.block_n = (*it)[0].get<int64_t>();
      s.block_k = (*it)[1].get<int64_t>();
      s.scale_suffix = "weight_scale_inv";
      s.act.group = s.block_k;  // per token, per group of block_k input columns
      s.act.min_amax = 1e-4f;
      s.label = fmt::format("block [{}, {}]", s.block_n, s.block_k);
    } else {
      s.label = "per-tensor, " + acts + " activations";
    }
    for (const std::string& e : f.get_strings({"ignored_layers", "modules_to_not_convert"}))
      ignore_.emplace_back(e, f.where() + ".ignored_layers");
    method_ = std::make_shared<Fp8CheckpointMethod>("fp8", s, std::make_shared<std::once_flag>());
  }

  std::string name() const override { return "fp8"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32", "bf16"}; }
  int min_capability() const override { return kFp8MinCapability; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return nullptr;  // vLLM's fp8 never quantizes the LM head
    for (const ModulePattern& p : ignore_)
      if (p.matches(prefix)) return nullptr;
    return method_;
  }

 private:
  std::vector<ModulePattern> ignore_;
  std::shared_ptr<const Fp8CheckpointMethod> method_;
};

}  // namespace

std::unique_ptr<QuantConfig> make_fp8_checkpoint_config(const nlohmann::json& config) {
  return std::make_unique<Fp8CheckpointConfig>(config);
}

}  // namespace lowbit::quant
