// An out-of-tree quantization method built as a lowbit plugin: `ternary`, BitNet b1.58-style
// absmean ternary weights, quantized online from any unquantized checkpoint.
//
//   scale[j] = mean_c |W[j, c]|                      (one fp32 scale per output row)
//   t[j, c]  = clamp(round(W[j, c] / scale[j]), -1, 1)
//   W[j, c] ≈ t[j, c] · scale[j]
//
// The ternary codes are stored 2 bits each, four per byte (00 = 0, 01 = +1, 10 = −1; element c
// in bits 2·(c % 4)), so a layer takes a sixteenth of its fp32 size; apply() decodes a byte at a
// time and only adds or subtracts activations. lm_head stays unquantized.
//
// Build: the default CMake build makes build/lib/lowbit_ternary_plugin.so. Use:
//   lowbit generate --plugin build/lib/lowbit_ternary_plugin.so --quantization ternary -m MODEL
// The plugin calls lowbit::fail() and lowbit::float_values() from the host executable, which
// exports its symbols (docs/architecture.md, "Plugins").
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/plugin_api.h"

namespace ternary {
using lowbit::DType;
using lowbit::quant::LinearLayer;
using lowbit::quant::LinearMethod;
using lowbit::quant::TensorSpec;

struct Packed {
  int64_t n = 0, k = 0, row_bytes = 0;
  std::vector<uint8_t> codes;  // [n, row_bytes], 4 codes per byte
  std::vector<float> scales;   // [n]
  std::vector<float> bias;     // [n] or empty
};

class TernaryMethod : public LinearMethod {
 public:
  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    std::vector<TensorSpec> specs = {{"weight",
                                      {layer.out_features, layer.in_features},
                                      {DType::F32, DType::F16, DType::BF16},
                                      false}};
    if (layer.has_bias)
      specs.push_back({"bias", {layer.out_features}, {DType::F32, DType::F16, DType::BF16}, false});
    return specs;
  }

  void process_weights_after_loading(LinearLayer& layer) const override {
    auto w = lowbit::float_values(layer.tensors.at("weight"));
    if (!w) lowbit::fail("{}.weight: ternary needs F32/F16/BF16 weights", layer.prefix);
    auto p = std::make_shared<Packed>();
    p->n = layer.out_features;
    p->k = layer.in_features;
    p->row_bytes = (p->k + 3) / 4;
    p->codes.assign(size_t(p->n * p->row_bytes), 0);
    p->scales.resize(size_t(p->n));
    for (int64_t j = 0; j < p->n; ++j) {
      const float* row = w->data() + j * p->k;
      double sum = 0;
      for (int64_t c = 0; c < p->k; ++c) {
        if (!std::isfinite(row[c]))
          lowbit::fail("{}.weight[{}, {}] = {}: ternary needs finite weights", layer.prefix, j, c,
                       row[c]);
        sum += std::abs(row[c]);
      }
      const float scale = float(sum / double(p->k));
      p->scales[size_t(j)] = scale;
      uint8_t* out = p->codes.data() + j * p->row_bytes;
      for (int64_t c = 0; c < p->k && scale > 0; ++c) {
        const float t = std::clamp(std::nearbyint(row[c] / scale), -1.0f, 1.0f);
        const uint8_t code = t > 0 ? 1 : t < 0 ? 2 : 0;
        out[c / 4] |= uint8_t(code << (2 * (c % 4)));
      }
    }
    if (auto it = layer.tensors.find("bias"); it != layer.tensors.end()) {
      auto b = lowbit::float_values(it->second);
      if (!b) lowbit::fail("{}.bias: expected F32/F16/BF16", layer.prefix);
      p->bias = std::move(*b);
    }
    layer.prepared = std::move(p);
  }

  // y[r, j] = scale[j] · Σ_c t[j, c] · x[r, c] (+ bias[j])
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override {
    const Packed& p = *static_cast<const Packed*>(layer.prepared.get());
#pragma omp parallel for schedule(static) if (p.n * p.k * m > (int64_t(1) << 16))
    for (int64_t j = 0; j < p.n; ++j) {
      const uint8_t* codes = p.codes.data() + j * p.row_bytes;
      for (int64_t r = 0; r < m; ++r) {
        const float* xr = x + r * p.k;
        float acc = 0;
        for (int64_t c = 0; c < p.k; ++c) {
          const int code = (codes[c / 4] >> (2 * (c % 4))) & 3;
          acc += code == 1 ? xr[c] : code == 2 ? -xr[c] : 0.0f;
        }
        y[r * p.n + j] = acc * p.scales[size_t(j)] + (p.bias.empty() ? 0.0f : p.bias[size_t(j)]);
      }
    }
  }

  uint64_t weight_bytes(const LinearLayer& layer) const override {
    const Packed& p = *static_cast<const Packed*>(layer.prepared.get());
    return p.codes.size() + 4 * p.scales.size();
  }
};

class TernaryConfig : public lowbit::quant::QuantConfig {
 public:
  std::string name() const override { return "ternary"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return nullptr;
    return method_;
  }

 private:
  std::shared_ptr<const TernaryMethod> method_ = std::make_shared<TernaryMethod>();
};

}  // namespace ternary

LOWBIT_PLUGIN(ctx) {
  lowbit::quant::MethodInfo info;
  info.name = "ternary";
  info.description =
      "example plugin: online absmean ternary weights {-1, 0, +1} x one scale per row "
      "(BitNet b1.58 style), 2 bits per weight";
  info.backends = {"cpu"};
  info.from_config = [](const nlohmann::json&) -> std::unique_ptr<lowbit::quant::QuantConfig> {
    return std::make_unique<ternary::TernaryConfig>();
  };
  info.quantizes_online = true;
  ctx->register_method(std::move(info));
}
