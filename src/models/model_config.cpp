#include "models/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/error.h"
#include "io/gguf.h"

namespace lowbit::models {
namespace {

using nlohmann::json;

int64_t get_int(const json& j, const std::string& key, const std::string& source,
                std::optional<int64_t> def = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (def) return *def;
    fail("{}: missing field '{}' (expected an integer)", source, key);
  }
  if (!it->is_number_integer())
    fail("{}: field '{}' is {}, expected an integer", source, key, it->type_name());
  return it->get<int64_t>();
}

double get_double(const json& j, const std::string& key, const std::string& source, double def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number())
    fail("{}: field '{}' is {}, expected a number", source, key, it->type_name());
  return it->get<double>();
}

bool get_bool(const json& j, const std::string& key, const std::string& source, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean())
    fail("{}: field '{}' is {}, expected true or false", source, key, it->type_name());
  return it->get<bool>();
}

// Configs written by transformers >= 5 hold rope_theta and the scaling in one
// "rope_parameters" object ({"rope_type": "llama3", "rope_theta": 5e5, "factor": 8, ...})
// instead of top-level "rope_theta" + "rope_scaling"; null when neither object is present.
const json* rope_object(const json& j, const std::string& source, std::string& key) {
  for (const char* k : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object())
      fail("{}: field '{}' is {}, expected an object", source, k, it->type_name());
    key = k;
    return &*it;
  }
  return nullptr;
}

RopeScaling parse_rope_scaling(const json& j, const std::string& source) {
  RopeScaling s;
  std::string key;
  const json* it = rope_object(j, source, key);
  if (!it) return s;
  std::string type;
  if (it->contains("rope_type") && (*it)["rope_type"].is_string())
    type = (*it)["rope_type"].get<std::string>();
  else if (it->contains("type") && (*it)["type"].is_string())
    type = (*it)["type"].get<std::string>();
  std::string where = source + ": " + key;
  if (type == "default" || type.empty()) return s;
  s.factor = get_double(*it, "factor", where, 1.0);
  if (!(s.factor > 0)) fail("{}.factor is {}, expected > 0", where, s.factor);
  if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    s.low_freq_factor = get_double(*it, "low_freq_factor", where, 1.0);
    s.high_freq_factor = get_double(*it, "high_freq_factor", where, 4.0);
    s.original_max_position = get_int(*it, "original_max_position_embeddings", where, 8192);
    if (!(s.high_freq_factor > s.low_freq_factor))
      fail("{}: high_freq_factor {} must exceed low_freq_factor {}", where, s.high_freq_factor,
           s.low_freq_factor);
  } else {
    fail("{}.rope_type is '{}', supported: default, linear, llama3", where, type);
  }
  return s;
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* field, int64_t cap) {
    if (v <= 0 || v > cap) fail("{}: {} is {}, expected 1..{}", source, field, v, cap);
  };
  positive(vocab_size, "vocab_size", 1 << 24);
  positive(hidden_size, "hidden_size", 1 << 20);
  positive(intermediate_size, "intermediate_size", 1 << 22);
  positive(num_layers, "num_hidden_layers", 4096);
  positive(num_heads, "num_attention_heads", 4096);
  positive(num_kv_heads, "num_key_value_heads", 4096);
  positive(head_dim, "head_dim", 4096);
  positive(max_position, "max_position_embeddings", int64_t(1) << 26);
  if (num_heads % num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
         num_heads, num_kv_heads);
  if (rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0)
    fail("{}: rotary dimension {} must be even and within head_dim {}", source, rope_dim, head_dim);
  if (!(rms_norm_eps > 0) || !(rope_theta > 0))
    fail("{}: rms_norm_eps {} and rope_theta {} must be positive", source, rms_norm_eps,
         rope_theta);
}

ModelConfig parse_hf_config(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  ModelConfig c;
  std::string model_type = j.value("model_type", std::string());
  std::string arch_class;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch_class = j["architectures"][0].get<std::string>();
  static const std::pair<const char*, const char*> kKnown[] = {
      {"LlamaForCausalLM", "llama"},
      {"MistralForCausalLM", "mistral"},
      {"Qwen2ForCausalLM", "qwen2"},
      {"Qwen3ForCausalLM", "qwen3"},
  };
  for (auto [cls, arch] : kKnown)
    if (arch_class == cls || (arch_class.empty() && model_type == arch)) c.architecture = arch;
  if (c.architecture.empty())
    fail(
        "{}: unsupported architecture '{}' (model_type '{}'); supported: LlamaForCausalLM, "
        "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM",
        source, arch_class, model_type);

  c.vocab_size = get_int(j, "vocab_size", source);
  c.hidden_size = get_int(j, "hidden_size", source);
  c.intermediate_size = get_int(j, "intermediate_size", source);
  c.num_layers = get_int(j, "num_hidden_layers", source);
  c.num_heads = get_int(j, "num_attention_heads", source);
  c.num_kv_heads = get_int(j, "num_key_value_heads", source, c.num_heads);
  if (c.num_heads <= 0) fail("{}: num_attention_heads is {}, expected > 0", source, c.num_heads);
  c.head_dim = get_int(j, "head_dim", source, c.hidden_size / c.num_heads);
  c.rope_dim = c.head_dim;
  c.max_position = get_int(j, "max_position_embeddings", source, 4096);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", source, 1e-6);
  double theta = 10000.0;
  std::string rope_key;
  if (const json* rp = rope_object(j, source, rope_key); rp && rope_key == "rope_parameters")
    theta = get_double(*rp, "rope_theta", source + ": rope_parameters", theta);
  c.rope_theta = get_double(j, "rope_theta", source, theta);
  c.rope_scaling = parse_rope_scaling(j, source);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", source, false);
  c.rope_style = RopeStyle::kNeox;
  // Biases as transformers builds the layers: Qwen2 always has q/k/v (not o) biases; Mistral
  // none; Llama and Qwen3 put attention_bias on q/k/v/o; only Llama reads mlp_bias.
  if (c.architecture == "qwen2") {
    c.attention_bias = true;
  } else if (c.architecture != "mistral") {
    c.attention_bias = get_bool(j, "attention_bias", source, false);
    c.attention_out_bias = c.attention_bias;
  }
  if (c.architecture == "llama") c.mlp_bias = get_bool(j, "mlp_bias", source, false);
  c.qk_norm = c.architecture == "qwen3";
  std::string act = j.value("hidden_act", std::string("silu"));
  if (act != "silu") fail("{}: hidden_act is '{}', expected 'silu'", source, act);
  c.validate(source);
  return c;
}

ModelConfig config_from_gguf(const io::GgufFile& g) {
  ModelConfig c;
  const std::string& source = g.path();
  std::string arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3")
    fail("{}: general.architecture is '{}', supported: llama, qwen2, qwen3", source, arch);
  c.architecture = arch;
  auto key = [&](const char* k) { return arch + "." + k; };
  c.hidden_size = g.get_int(key("embedding_length"));
  c.intermediate_size = g.get_int(key("feed_forward_length"));
  c.num_layers = g.get_int(key("block_count"));
  c.num_heads = g.get_int(key("attention.head_count"));
  c.num_kv_heads = g.get_int_or(key("attention.head_count_kv"), c.num_heads);
  if (c.num_heads <= 0)
    fail("{}: {} is {}, expected > 0", source, key("attention.head_count"), c.num_heads);
  c.head_dim = g.get_int_or(key("attention.key_length"), c.hidden_size / c.num_heads);
  c.rope_dim = g.get_int_or(key("rope.dimension_count"), c.head_dim);
  c.max_position = g.get_int_or(key("context_length"), 4096);
  c.rms_norm_eps = g.get_float(key("attention.layer_norm_rms_epsilon"));
  c.rope_theta = g.get_float_or(key("rope.freq_base"), 10000.0);
  std::string scaling = g.get_string_or(key("rope.scaling.type"), "none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    c.rope_scaling.factor = g.get_float(key("rope.scaling.factor"));
  } else if (scaling != "none") {
    fail("{}: {} is '{}', supported: none, linear", source, key("rope.scaling.type"), scaling);
  }
  if (g.has(key("vocab_size"))) {
    c.vocab_size = g.get_int(key("vocab_size"));
  } else if (const auto* emb = g.find_tensor("token_embd.weight")) {
    c.vocab_size = emb->shape.empty() ? 0 : emb->shape[0];
  }
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  c.rope_style = arch == "llama" ? RopeStyle::kInterleaved : RopeStyle::kNeox;
  c.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.attention_out_bias = g.find_tensor("blk.0.attn_output.bias") != nullptr;
  c.mlp_bias = g.find_tensor("blk.0.ffn_up.bias") != nullptr;
  c.qk_norm = g.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  c.validate(source);
  return c;
}

GenerationDefaults parse_generation_config(const json& j, const std::string& source) {
  GenerationDefaults d;
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  auto ids = [&](const char* key) {
    std::vector<int32_t> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    auto add = [&](const json& v) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        fail("{}: field '{}' holds {}, expected token ids", source, key, v.dump());
      out.push_back(v.get<int32_t>());
    };
    if (it->is_array())
      for (const auto& v : *it) add(v);
    else
      add(*it);
    return out;
  };
  d.eos_ids = ids("eos_token_id");
  auto bos = ids("bos_token_id");
  if (!bos.empty()) d.bos_id = bos[0];
  if (j.contains("temperature") && j["temperature"].is_number())
    d.temperature = j["temperature"].get<float>();
  if (j.contains("top_p") && j["top_p"].is_number()) d.top_p = j["top_p"].get<float>();
  if (j.contains("top_k") && j["top_k"].is_number_integer()) d.top_k = j["top_k"].get<int>();
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>())
    d.temperature = 0.0f;
  return d;
}

std::vector<double> rope_inv_freq(const ModelConfig& c, const std::vector<float>& factors) {
  const int64_t half = c.rope_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // fp32 like HF: 1 / base^(2i/d) with the exponent computed in fp32.
    float expo = float(2 * i) / float(c.rope_dim);
    inv[i] = 1.0f / std::pow(float(c.rope_theta), expo);
  }
  const auto& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::kLlama3) {
    double low_wavelen = double(s.original_max_position) / s.low_freq_factor;
    double high_wavelen = double(s.original_max_position) / s.high_freq_factor;
    for (auto& f : inv) {
      double wavelen = 2 * std::numbers::pi / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else {
        double smooth = (double(s.original_max_position) / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  } else if (s.type == RopeScaling::Type::kLinear) {
    for (auto& f : inv) f /= s.factor;
  }
  if (!factors.empty()) {
    if (int64_t(factors.size()) != half)
      fail("rope_freqs.weight has {} values, expected rotary dim / 2 = {}", factors.size(), half);
    for (int64_t i = 0; i < half; ++i) inv[i] /= factors[i];
  }
  return inv;
}

}  // namespace lowbit::models
