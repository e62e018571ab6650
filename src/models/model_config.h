// Architecture hyper-parameters of a Llama-family model (Llama 2/3/3.1/3.2, Mistral, Qwen2/2.5,
// Qwen3, SmolLM), read from a Hugging Face config.json or from GGUF metadata.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace lowbit::io {
class GgufFile;
}

namespace lowbit::models {

// How the two halves of a rotated pair are laid out within a head:
//   kNeox: element i pairs with i + rot/2 (HF "rotate_half"; GGUF qwen2/qwen3);
//   kInterleaved: element 2i pairs with 2i+1 (GGUF llama: convert_hf_to_gguf permutes Q/K rows).
enum class RopeStyle { kNeox, kInterleaved };

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 } type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;          // llama3
  double high_freq_factor = 4.0;         // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2", "qwen3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rope_dim = 0;  // rotated dimensions per head (== head_dim unless partial rotary)
  int64_t max_position = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::kNeox;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // q/k/v biases (Qwen2 always; Llama's attention_bias)
  bool attention_out_bias = false;  // o_proj bias (Llama attention_bias only)
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3: RMSNorm over head_dim on q and k before RoPE

  // Throws lowbit::Error naming `source` and the field when the values are inconsistent.
  void validate(const std::string& source) const;
};

// Parses config.json (text already read) of a supported architecture.
ModelConfig parse_hf_config(const nlohmann::json& config, const std::string& source);
ModelConfig config_from_gguf(const io::GgufFile& gguf);

// Default generation settings (generation_config.json, or GGUF metadata).
struct GenerationDefaults {
  std::vector<int32_t> eos_ids;
  std::optional<int32_t> bos_id;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
};
GenerationDefaults parse_generation_config(const nlohmann::json& gen, const std::string& source);

// RoPE inverse frequencies [rope_dim / 2] after scaling (llama3 or `freq_factors`, which GGUF
// stores as rope_freqs.weight; each frequency is divided by its factor).
std::vector<double> rope_inv_freq(const ModelConfig& config,
                                  const std::vector<float>& freq_factors);

}  // namespace lowbit::models
