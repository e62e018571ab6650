// `compressed-tensors`: llm-compressor checkpoints (FORMATS.md §3) with integer weight-only
// schemes (W4A16, W4A16_ASYM, W8A16; channel or group strategy; actorder "group" g_idx).
// Per quantized linear [N = out, K = in], b bits (4 or 8), G = group size (K for channel):
//   pack-quantized:  weight_packed I32 [N, ceil(K·b/32)]  q + 2^(b-1), bitstream along K
//                    weight_zero_point I32 [ceil(N·b/32), K/G]  zp + 2^(b-1), along N (asym)
//   int-/naive-quantized: weight I8 [N, K] (signed q), weight_zero_point I8 [N, K/G] (asym)
//   weight_scale [N, K/G] (F16/BF16/F32), weight_g_idx I32 [K] (actorder group),
//   weight_shape I64/I32 [2] = (N, K) (pack-quantized, checked when present)
//   W[n, k] = (q − zp) · scale  (the +2^(b-1) offsets cancel)
// W8A8 schemes (FORMATS.md §3.5): int weights (any of the above) with dynamic per-token int8
// activations (W8A8 / INT8, W4A8), and float-quantized FP8 weights (quant/fp8_checkpoint.h):
//   weight F8_E4M3 [N, K], weight_scale [1] (tensor) | [N, 1] (channel) |
//   [ceil(N/bn), ceil(K/bk)] (block, block_structure [bn, bk]); activations none (FP8 W8A16),
//   dynamic per token or per group (FP8_DYNAMIC, FP8_BLOCK) or static (FP8: input_scale [1]).
// The CPU emulates the activation quantization (quant/act_quant.h); the CUDA backend
// (models/w8_checkpoint_cuda.h) runs FP8 and int8 channel-wise symmetric W8A8 on its W8A8
// kernels with the stored codes, and the other int W8A8 / W4A8 schemes as W8A16 / W4A16.
// Layers are chosen by config_groups[*].targets ("Linear", exact names, "re:" regexes) minus
// `ignore`. NVFP4, MXFP4, static int8 activations, sparse or rotated (transform_config)
// checkpoints are refused by name until they are supported.
#include <mutex>

#include "core/error.h"
#include "quant/act_quant.h"
#include "quant/config_fields.h"
#include "quant/fp8_checkpoint.h"
#include "quant/int_packing.h"
#include "quant/registry.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {
namespace kc = kernels::cpu;
using nlohmann::json;

enum class CtFormat { kPacked, kUnpacked };  // pack-quantized | int-/naive-quantized

struct CtScheme {
  std::string group;  // config_groups key, for messages
  CtFormat format = CtFormat::kPacked;
  int bits = 4;
  bool sym = true;
  int64_t group_size = -1;  // -1: channel (one group spanning K)
  bool g_idx = false;       // actorder "group": weight_g_idx present
  ActQuant act;             // W8A8 / W4A8: dynamic per-token int8 activations
  bool fp8 = false;         // float-quantized FP8 weights: `fp8_scheme` applies
  Fp8Scheme fp8_scheme;
};

constexpr const char* kSupported =
    "supported: integer schemes (W4A16, W4A16_ASYM, W8A16 in pack-quantized, int-quantized or "
    "naive-quantized format; W8A8 / W4A8 with dynamic per-token int8 activations) and FP8 "
    "schemes (FP8, FP8_DYNAMIC, FP8_BLOCK, FP8 W8A16 in float-quantized format)";

// The activation quantization of `in` (input_activations) for weights of type `weight_type`.
ActQuant parse_activations(const json& in, const std::string& where, const std::string& label,
                           const std::string& weight_type) {
  ConfigFields f(in, where + ".input_activations");
  const std::string type = f.get_string({"type"}, "int");
  const int64_t bits = f.get_int({"num_bits"}, 8);
  if (bits != 8 || type != (weight_type == "float" ? "float" : "int"))
    fail(
        "{}: scheme {} quantizes input activations to {} {}-bit, which is not supported yet "
        "(expected {} 8-bit activations with {} weights); {}",
        where, label, type, bits, weight_type, weight_type, kSupported);
  if (!f.get_bool({"symmetric"}, true))
    fail("{}: asymmetric activation quantization (scheme {}) is not supported yet", f.where(),
         label);
  ActQuant a;
  a.fp8 = type == "float";
  const json dyn = f.object().value("dynamic", json(false));
  if (!dyn.is_boolean())
    fail("{}: dynamic {} (NVFP4-style local activation scales) is not supported for scheme {}",
         f.where(), dyn.dump(), label);
  const std::string strategy = f.get_string({"strategy"}, dyn.get<bool>() ? "token" : "tensor");
  if (dyn.get<bool>()) {
    a.kind = ActQuant::Kind::kDynamic;
    if (strategy == "group") {
      a.group = f.get_int({"group_size"}, 0);
      if (a.group <= 0)
        fail("{}: dynamic group activations with group_size {}, expected a positive size",
             f.where(), a.group);
    } else if (strategy != "token") {
      fail("{}: dynamic activation strategy '{}' is not supported (expected 'token' or 'group')",
           f.where(), strategy);
    }
  } else {
    if (strategy != "tensor")
      fail("{}: static activation strategy '{}' is not supported (expected 'tensor')", f.where(),
           strategy);
    if (!a.fp8)
      fail(
          "{}: static int8 activations (scheme {}) are not supported yet; dynamic per-token "
          "int8 activations are",
          f.where(), label);
    a.kind = ActQuant::Kind::kStatic;
  }
  return a;
}

// The float-quantized FP8 weight scheme of `w` (type float, 8 bits).
Fp8Scheme parse_fp8_weights(ConfigFields& wf, const std::string& label) {
  if (!wf.get_bool({"symmetric"}, true))
    fail("{}: asymmetric FP8 weights (scheme {}) are not supported", wf.where(), label);
  if (!wf.object().value("dynamic", json(false)).is_boolean() || wf.get_bool({"dynamic"}, false))
    fail("{}: dynamic weight quantization is not a stored format", wf.where());
  Fp8Scheme s;
  s.label = label;
  std::string strategy = wf.get_string({"strategy"}, "");
  if (strategy.empty()) strategy = !wf.has({"group_size"}) ? "tensor" : "channel";
  if (strategy == "tensor") {
    s.scales = Fp8Scheme::Scales::kTensor;
  } else if (strategy == "channel") {
    s.scales = Fp8Scheme::Scales::kChannel;
  } else if (strategy == "block") {
    const json bs = wf.object().value("block_structure", json());
    if (!bs.is_array() || bs.size() != 2 || !bs[0].is_number_integer() ||
        !bs[1].is_number_integer() || bs[0].get<int64_t>() <= 0 || bs[1].get<int64_t>() <= 0)
      fail("{}: block_structure is {}, expected [rows, cols] of two positive integers", wf.where(),
           bs.dump());
    s.scales = Fp8Scheme::Scales::kBlock;
    s.block_n = bs[0].get<int64_t>();
    s.block_k = bs[1].get<int64_t>();
  } else {
    fail(
        "{}: strategy '{}' is not supported for FP8 weights (expected 'tensor', 'channel' or "
        "'block')",
        wf.where(), strategy);
  }
  return s;
}

// The preset name (compressed-tensors quant_scheme.py) that weight / input args describe.
std::string scheme_label(const json& w, const json* in) {
  const std::string type = w.value("type", std::string("int"));
  const int bits = w.value("num_bits", 8);
  const int64_t group = w.contains("group_size") && w["group_size"].is_number_integer()
                            ? w["group_size"].get<int64_t>()
                            : 0;
  const std::string strategy = w.value("strategy", std::string());
  if (type == "float") {
    if (bits == 4 && group == 16) return in ? "NVFP4" : "NVFP4A16";
    if (bits == 4 && group == 32) return in ? "MXFP4" : "MXFP4A16";
    if (bits == 8 && strategy == "block") return "FP8_BLOCK";
    if (bits == 8) return in ? (in->value("dynamic", false) ? "FP8_DYNAMIC" : "FP8") : "FP8 W8A16";
    return fmt::format("float {}-bit", bits);
  }
  if (in) return fmt::format("W{}A{}", bits, in->value("num_bits", 8));
  return fmt::format("W{}A16", bits);
}

CtScheme parse_group(const std::string& name, const json& g, const std::string& global_format) {
  const std::string where = "compressed-tensors config_groups." + name;
  ConfigFields f(g, where);
  const json* w = f.get_object("weights");
  const json* in = f.get_object("input_activations");
  if (!w)
    fail("{}: no 'weights' quantization (activation-only schemes are not supported); {}", where,
         kSupported);
  ConfigFields wf(*w, where + ".weights");
  const std::string label = scheme_label(*w, in);
  const std::string type = wf.get_string({"type"}, "int");
  const bool fp8 = type == "float" && wf.get_int({"num_bits"}, 8) == 8;
  if (type != "int" && !fp8)
    fail("{}: scheme {} ({} {}-bit weights) is not supported yet; {}", where, label, type,
         wf.get_int({"num_bits"}, 8), kSupported);
  if (f.get_object("output_activations"))
    fail("{}: scheme {} quantizes output activations, which is not supported; {}", where, label,
         kSupported);

  CtScheme s;
  s.group = name;
  if (in) s.act = parse_activations(*in, where, label, type);
  const std::string format = f.get_string({"format"}, global_format);
  if (fp8) {
    if (format != "float-quantized" && format != "naive-quantized")
      fail(
          "{}: format '{}' for FP8 weights (scheme {}), expected 'float-quantized' or "
          "'naive-quantized'",
          where, format, label);
    s.fp8 = true;
    s.fp8_scheme = parse_fp8_weights(wf, label);
    s.fp8_scheme.act = s.act;
    return s;
  }
  if (format == "pack-quantized") {
    s.format = CtFormat::kPacked;
  } else if (format == "int-quantized" || format == "naive-quantized") {
    s.format = CtFormat::kUnpacked;
  } else if (format == "mixed-precision") {
    fail("{}: the global format is 'mixed-precision' but this group names no 'format'", where);
  } else {
    fail("{}: format '{}' (scheme {}) is not supported yet; {}", where, format, label, kSupported);
  }
  const int64_t bits = wf.get_int({"num_bits"}, 8);
  if (bits != 4 && bits != 8)
    fail("{}: num_bits {} is not supported (expected 4 or 8); {}", wf.where(), bits, kSupported);
  s.bits = int(bits);
  s.sym = wf.get_bool({"symmetric"}, true);
  if (!wf.object().value("dynamic", json(false)).is_boolean() || wf.get_bool({"dynamic"}, false))
    fail("{}: dynamic weight quantization is not a stored format", wf.where());
  const int64_t group_size = wf.get_int({"group_size"}, 0);
  std::string strategy = wf.get_string({"strategy"}, "");
  if (strategy.empty())  // compressed-tensors' inference: null -> tensor, > 0 group, -1 channel
    strategy = !wf.has({"group_size"}) ? "tensor" : group_size > 0 ? "group" : "channel";
  if (strategy == "group") {
    if (group_size <= 0)
      fail("{}: strategy 'group' with group_size {}, expected a positive group size", wf.where(),
           group_size);
    s.group_size = group_size;
  } else if (strategy != "channel") {
    fail(
        "{}: strategy '{}' is not supported for integer weights (expected 'channel' or "
        "'group')",
        wf.where(), strategy);
  }
  const std::string actorder = wf.get_string({"actorder"}, "");
  if (actorder == "group" || actorder == "dynamic") {
    s.g_idx = true;
  } else if (!actorder.empty() && actorder != "weight" && actorder != "static") {
    fail(
        "{}: actorder '{}' is not known (expected null, 'group', 'weight', 'dynamic' or "
        "'static')",
        wf.where(), actorder);
  }
  return s;
}

class CtLinearMethod : public WeightOnlyIntMethod {
 public:
  explicit CtLinearMethod(CtScheme s) : WeightOnlyIntMethod("compressed-tensors"), s_(s) {}

  int64_t group(const LinearLayer& layer) const {
    return s_.group_size < 0 ? layer.in_features : s_.group_size;
  }

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    if (K % G != 0)
      fail("{}: in_features {} is not a multiple of group_size {} (config_groups.{})", what(layer),
           K, G, s_.group);
    std::vector<TensorSpec> specs;
    if (s_.format == CtFormat::kPacked) {
      specs.push_back({"weight_packed", {N, packed_words(K, s_.bits)}, {DType::I32}});
      if (!s_.sym)
        specs.push_back({"weight_zero_point", {packed_words(N, s_.bits), K / G}, {DType::I32}});
      specs.push_back({"weight_shape", {2}, {DType::I64, DType::I32}, true});
    } else {
      specs.push_back({"weight", {N, K}, {DType::I8}});
      if (!s_.sym) specs.push_back({"weight_zero_point", {N, K / G}, {DType::I8}});
    }
    specs.push_back({"weight_scale", {N, K / G}, float_dtypes()});
    if (s_.g_idx) specs.push_back({"weight_g_idx", {K}, {DType::I32, DType::I64}});
    add_bias_spec(layer, specs);
    return specs;
  }

  ActQuant activations() const override { return s_.act; }

  // W8A8 / W4A8: the activations are rounded to int8 per token first (quant/act_quant.h).
  void apply(const LinearLayer& layer, const float* x, int64_t m, float* y) const override {
    if (!s_.act.active()) return WeightOnlyIntMethod::apply(layer, x, m, y);
    std::vector<float> xq(x, x + m * layer.in_features);
    fake_quantize_activations(s_.act, 0.0f, xq.data(), m, layer.in_features);
    WeightOnlyIntMethod::apply(layer, xq.data(), m, y);
  }

  DecodedWeight decode(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    const int b = s_.bits;
    const int offset = 1 << (b - 1);  // signed -> unsigned codes
    std::vector<uint8_t> codes;
    std::vector<float> zeros;
    if (s_.format == CtFormat::kPacked) {
      if (auto it = layer.tensors.find("weight_shape"); it != layer.tensors.end()) {
        std::vector<int64_t> shape = int_tensor(it->second);
        if (shape != std::vector<int64_t>{N, K})
          fail("{}: weight_shape is [{}, {}], expected [{}, {}] (out_features, in_features)",
               what(layer), shape[0], shape[1], N, K);
      }
      codes = unpack_row_streams(layer.tensors.at("weight_packed"), K, b);
      if (!s_.sym) {
        std::vector<uint8_t> z = unpack_column_streams(layer.tensors.at("weight_zero_point"), N, b);
        zeros.assign(z.begin(), z.end());
      }
    } else {
      const TensorView& w = layer.tensors.at("weight");
      codes.resize(size_t(N * K));
      for (int64_t i = 0; i < N * K; ++i) {
        const int q = int(int8_t(w.data[i]));
        if (q < -offset || q >= offset)
          fail("{}: weight[{}, {}] = {} is outside the signed {}-bit range [{}, {}]", what(layer),
               i / K, i % K, q, b, -offset, offset - 1);
        codes[size_t(i)] = uint8_t(q + offset);
      }
      if (!s_.sym) {
        const TensorView& zp = layer.tensors.at("weight_zero_point");
        zeros.resize(size_t(N * (K / G)));
        for (size_t i = 0; i < zeros.size(); ++i)
          zeros[i] = float(int(int8_t(zp.data[i])) + offset);
      }
    }
    std::vector<float> scales = float_tensor(layer.tensors.at("weight_scale"), what(layer));
    std::vector<int32_t> perm;
    if (s_.g_idx)
      perm = act_order_perm(int_tensor(layer.tensors.at("weight_g_idx")), G, what(layer),
                            "weight_g_idx");

    DecodedWeight q;
    q.kind = b == 8 ? kc::WqKind::kInt8 : kc::WqKind::kInt4;
    q.n = N;
    q.k = K;
    q.group_size = G;
    q.codes = std::move(codes);
    q.scales = std::move(scales);
    q.zeros = std::move(zeros);  // empty = sym: zero 2^(b-1) = 8 / 128
    q.perm = std::move(perm);
    return q;
  }

 private:
  CtScheme s_;
};

struct CtGroup {
  std::shared_ptr<const LinearMethod> method;
  bool all_linear = false;  // targets holds the class name "Linear"
  std::vector<ModulePattern> targets;
};

class CtConfig : public QuantConfig {
 public:
  explicit CtConfig(const json& j) {
    ConfigFields f(j, "compressed-tensors quantization_config");
    const std::string status = f.get_string({"quantization_status"}, "compressed");
    if (status != "compressed")
      fail(
          "{}: quantization_status '{}' is not supported: only 'compressed' checkpoints hold "
          "packed weights ('frozen' ones hold fake-quantized floats)",
          f.where(), status);
    if (const json* sp = f.get_object("sparsity_config"); sp && !sp->empty()) {
      const std::string sf =
          ConfigFields(*sp, f.where() + ".sparsity_config").get_string({"format"}, "dense");
      if (sf != "dense")
        fail("{}: sparsity_config format '{}' (sparse weights) is not supported yet; {}", f.where(),
             sf, kSupported);
    }
    if (const json* tc = f.get_object("transform_config"); tc && !tc->empty())
      fail("{}: transform_config (online rotations such as SpinQuant / QuIP) is not supported",
           f.where());
    const std::string format = f.get_string({"format"}, "pack-quantized");
    for (const std::string& e : f.get_strings({"ignore"}))
      ignore_.emplace_back(e, f.where() + ".ignore");
    const json* groups = f.get_object("config_groups");
    if (!groups || groups->empty()) fail("{}: no config_groups (nothing is quantized)", f.where());
    for (const auto& [name, g] : groups->items()) {
      CtGroup group;
      CtScheme scheme = parse_group(name, g, format);
      if (scheme.fp8)
        group.method = std::make_shared<Fp8CheckpointMethod>("compressed-tensors",
                                                             scheme.fp8_scheme, fp8_notice_);
      else
        group.method = std::make_shared<CtLinearMethod>(scheme);
      ConfigFields gf(g, "compressed-tensors config_groups." + name);
      for (const std::string& t : gf.get_strings({"targets"})) {
        if (t == "Linear")
          group.all_linear = true;
        else
          group.targets.emplace_back(t, gf.where() + ".targets");
      }
      groups_.push_back(std::move(group));
    }
  }

  std::string name() const override { return "compressed-tensors"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }

  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    for (const ModulePattern& p : ignore_)
      if (p.matches(prefix)) return nullptr;
    for (const CtGroup& g : groups_) {
      if (g.all_linear) return g.method;
      for (const ModulePattern& p : g.targets)
        if (p.matches(prefix)) return g.method;
    }
    return nullptr;
  }

 private:
  std::vector<ModulePattern> ignore_;
  std::vector<CtGroup> groups_;
  std::shared_ptr<std::once_flag> fp8_notice_ = std::make_shared<std::once_flag>();
};

}  // namespace

MethodInfo compressed_tensors_method_info() {
  return {"compressed-tensors",
          "llm-compressor checkpoints: integer schemes (W4A16, W8A16; pack-quantized, "
          "int-quantized, naive-quantized; channel or group scales; W8A8 / W4A8 with dynamic "
          "per-token int8 activations, emulated on the CPU, int8 W8A8 kernels on CUDA) and FP8 "
          "schemes (float-quantized: tensor, channel or block weight scales; static, dynamic or "
          "no activation quantization; CPU: weights dequantized to bf16; CUDA: FP8 W8A8 "
          "kernels on the stored codes)",
          {"cpu", "cuda"},
          [](const json& j) { return std::make_unique<CtConfig>(j); }};
}

}  // namespace lowbit::quant
