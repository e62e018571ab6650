// `gptq`: AutoGPTQ / GPTQModel / optimum checkpoints (FORMATS.md §2). Per quantized linear
// [N = out, K = in], b bits (2, 3, 4, 8), G = group_size (-1: G = K):
//   qweight I32 [⌈K·b/32⌉, N]    codes, one LSB-first bitstream down every column (along K)
//   qzeros  I32 [K/G, ⌈N·b/32⌉]  zero points, one bitstream along every row (along N)
//   scales  F16 [K/G, N]       (BF16/F32 accepted too)
//   g_idx   I32 [K]            group of every input column (act-order when not k / G)
//   W[n, k] = (q[k, n] - Z[g_idx[k], n]) · s[g_idx[k], n]
//   Z = (stored + 1) mod 2^b for checkpoint_format "gptq" (v1), Z = stored for "gptq_v2";
//   sym: Z = 2^(b-1) whatever qzeros holds (as vLLM's Marlin path does; AutoGPTQ writes exactly
//   that, so only mislabelled files differ), and qzeros may be absent.
// 2/3/4-bit codes go to the int4 kernels (codes < 16 with explicit zeros), 8-bit to int8.
// Config from config.json's quantization_config or quantize_config.json (same keys); GPTQModel
// `dynamic` rules ("-:" skips a module, "+:" or a bare regex overrides bits / group_size / sym /
// desc_act) and optimum's modules_in_block_to_quantize choose the quantized modules.
#include "core/error.h"
#include "quant/config_fields.h"
#include "quant/int_packing.h"
#include "quant/registry.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {
namespace kc = kernels::cpu;
using nlohmann::json;

struct GptqParams {
  int bits = 4;
  int64_t group_size = -1;
  bool desc_act = false;
  bool sym = true;
  bool v2 = false;  // checkpoint_format gptq_v2: zeros stored without the -1 offset
};

// Reads bits / group_size / desc_act / sym from `f` over `p`, validating them.
void read_params(const ConfigFields& f, GptqParams& p) {
  const int64_t bits = f.get_int({"bits"}, p.bits);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    fail("{}: bits {} is not supported (expected 2, 3, 4 or 8)", f.where(), bits);
  p.bits = int(bits);
  p.group_size = f.get_int({"group_size"}, p.group_size);
  if (p.group_size == 0 || p.group_size < -1)
    fail(
        "{}: group_size {} is not supported (expected -1 or a positive group size such as 32, "
        "64, 128)",
        f.where(), p.group_size);
  p.desc_act = f.get_bool({"desc_act"}, p.desc_act);
  p.sym = f.get_bool({"sym"}, p.sym);
}

class GptqLinearMethod : public WeightOnlyIntMethod {
 public:
  explicit GptqLinearMethod(GptqParams p) : WeightOnlyIntMethod("gptq"), p_(p) {}

  int64_t group(const LinearLayer& layer) const {
    return p_.group_size < 0 ? layer.in_features : p_.group_size;
  }

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    const int b = p_.bits;
    if (K % G != 0)
      fail("{}: in_features {} is not a multiple of group_size {}", what(layer), K, G);
    // Word counts round up: GPTQModel pads a partial last word (e.g. out_features 172 at
    // 4 bits -> 22 qzeros words); for sizes that fill whole words this is AutoGPTQ's K·b/32.
    std::vector<TensorSpec> specs = {{"qweight", {packed_words(K, b), N}, {DType::I32}},
                                     {"qzeros", {K / G, packed_words(N, b)}, {DType::I32}, p_.sym},
                                     {"scales", {K / G, N}, float_dtypes()},
                                     {"g_idx", {K}, {DType::I32, DType::I64}, true}};
    add_bias_spec(layer, specs);
    return specs;
  }

  DecodedWeight decode(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    const int b = p_.bits;
    std::vector<uint8_t> codes =
        unpack_column_streams_transposed(layer.tensors.at("qweight"), K, b);
    std::vector<float> zeros(size_t(N * (K / G)), float(1 << (b - 1)));
    if (!p_.sym) {
      std::vector<uint8_t> z = unpack_row_streams(layer.tensors.at("qzeros"), N, b);
      const uint32_t mask = (1u << b) - 1u;
      for (size_t i = 0; i < z.size(); ++i) zeros[i] = float(p_.v2 ? z[i] : (z[i] + 1u) & mask);
      zeros = transposed(zeros, K / G, N);
    }
    std::vector<float> scales =
        transposed(float_tensor(layer.tensors.at("scales"), what(layer)), K / G, N);

    std::vector<int32_t> perm;
    if (auto it = layer.tensors.find("g_idx"); it != layer.tensors.end())
      perm = act_order_perm(int_tensor(it->second), G, what(layer), "g_idx");
    else if (p_.desc_act && G < K)
      fail(
          "{}: tensor '{}.g_idx' is missing but desc_act is true (act-order needs the group "
          "index of every input column)",
          what(layer), layer.prefix);

    DecodedWeight q;
    q.kind = b == 8 ? kc::WqKind::kInt8 : kc::WqKind::kInt4;
    q.n = N;
    q.k = K;
    q.group_size = G;
    q.codes = std::move(codes);
    q.scales = std::move(scales);
    q.zeros = std::move(zeros);
    q.perm = std::move(perm);
    return q;
  }

 private:
  GptqParams p_;
};

// One GPTQModel `dynamic` rule: key "-:regex" skips matching modules, "+:regex" or "regex"
// overrides the layer's parameters with the rule's object.
struct DynamicRule {
  bool skip;
  NameRegex regex;
  json overrides;
};

class GptqConfig : public QuantConfig {
 public:
  explicit GptqConfig(const json& j) {
    ConfigFields f(j, "gptq quantization_config");
    read_params(f, base_);
    const std::string format = f.get_string({"checkpoint_format", "format"}, "gptq");
    if (format == "gptq_v2") {
      base_.v2 = true;
    } else if (format != "gptq") {
      fail("{}: checkpoint_format '{}' is not supported (expected 'gptq' or 'gptq_v2'{})",
           f.where(), format,
           format == "marlin" ? "; pre-repacked Marlin checkpoints are not loaded" : "");
    }
    if (f.get_bool({"is_marlin_format"}, false))
      fail("{}: is_marlin_format true: pre-repacked Marlin checkpoints are not supported",
           f.where());
    const std::string pack_dtype = f.get_string({"pack_dtype"}, "int32");
    if (pack_dtype != "int32")
      fail("{}: pack_dtype '{}' is not supported (expected int32)", f.where(), pack_dtype);
    lm_head_ = f.get_bool({"lm_head"}, false);
    in_block_ = f.get_strings({"modules_in_block_to_quantize"});
    if (const json* dyn = f.get_object("dynamic")) {
      // nlohmann::json keeps object keys sorted, not in file order, so all "-:" rules are
      // applied first (a skipped module stays skipped) and then the first positive match.
      for (const auto& [key, value] : dyn->items()) {
        const bool skip = key.rfind("-:", 0) == 0;
        const std::string pattern =
            key.rfind("-:", 0) == 0 || key.rfind("+:", 0) == 0 ? key.substr(2) : key;
        const std::string where = f.where() + " dynamic['" + key + "']";
        if (!skip) {
          GptqParams check = base_;
          read_params(ConfigFields(value, where), check);  // validate early
        }
        rules_.push_back({skip, NameRegex(pattern, where), value});
      }
    }
  }

  std::string name() const override { return "gptq"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {"quantize_config.json"}; }

  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head" || prefix.ends_with(".lm_head")) {
      if (!lm_head_) return nullptr;
    } else if (!in_block_.empty()) {
      bool listed = false;
      for (const std::string& m : in_block_)
        listed = listed || prefix == m || prefix.ends_with("." + m);
      if (!listed) return nullptr;
    }
    for (const DynamicRule& r : rules_)
      if (r.skip && r.regex.matches_start(prefix)) return nullptr;
    GptqParams p = base_;
    for (const DynamicRule& r : rules_)
      if (!r.skip && r.regex.matches_start(prefix)) {
        read_params(ConfigFields(r.overrides, "gptq dynamic['" + r.regex.pattern() + "']"), p);
        break;
      }
    return std::make_shared<GptqLinearMethod>(p);
  }

 private:
  GptqParams base_;
  bool lm_head_ = false;
  std::vector<std::string> in_block_;
  std::vector<DynamicRule> rules_;
};

}  // namespace

MethodInfo gptq_method_info() {
  return {"gptq",
          "GPTQ checkpoints (AutoGPTQ, GPTQModel, optimum): 2/3/4/8-bit, sym or asym, act-order "
          "(g_idx), formats gptq (v1) and gptq_v2; CUDA: W4A16 (2/3/4-bit) and W8A16 kernels",
          {"cpu", "cuda"},
          [](const json& j) { return std::make_unique<GptqConfig>(j); }};
}

}  // namespace lowbit::quant
