#include "models/weight_source.h"

#include <regex>

#include "io/gguf.h"
#include "io/safetensors.h"

namespace lowbit::models {
namespace {

class SafetensorsSource : public WeightSource {
 public:
  SafetensorsSource(const io::SafetensorsCheckpoint& ckpt, std::string dir)
      : ckpt_(ckpt), dir_(std::move(dir)) {}
  const TensorView* find(const std::string& name) const override { return ckpt_.find(name); }
  std::string stored_name(const std::string& name) const override { return name; }
  std::string path() const override { return dir_; }

 private:
  const io::SafetensorsCheckpoint& ckpt_;
  std::string dir_;
};

class GgufSource : public WeightSource {
 public:
  explicit GgufSource(const io::GgufFile& g) : gguf_(g) {}
  const TensorView* find(const std::string& name) const override {
    std::string g = hf_to_gguf_name(name);
    return g.empty() ? nullptr : gguf_.find_tensor(g);
  }
  std::string stored_name(const std::string& name) const override {
    std::string g = hf_to_gguf_name(name);
    return g.empty() ? name : g;
  }
  std::string path() const override { return gguf_.path(); }

 private:
  const io::GgufFile& gguf_;
};

}  // namespace

std::unique_ptr<WeightSource> safetensors_source(const io::SafetensorsCheckpoint& ckpt,
                                                 std::string dir) {
  return std::make_unique<SafetensorsSource>(ckpt, std::move(dir));
}

std::unique_ptr<WeightSource> gguf_source(const io::GgufFile& gguf) {
  return std::make_unique<GgufSource>(gguf);
}

std::string hf_to_gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.norm.weight", "output_norm.weight"},
      // Llama-3 rope factors: GGUF-only, asked for under its GGUF name by LlamaModel.
      {"rope_freqs.weight", "rope_freqs.weight"},
  };
  for (auto [h, g] : kGlobal)
    if (hf == h) return g;
  static const std::pair<const char*, const char*> kLayer[] = {
      {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
      {"input_layernorm", "attn_norm"},    {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  static const std::regex kLayerName(R"(model\.layers\.(\d+)\.(.+)\.(weight|bias))");
  std::smatch m;
  if (!std::regex_match(hf, m, kLayerName)) return "";
  for (auto [h, g] : kLayer)
    if (m[2] == h) return "blk." + m[1].str() + "." + g + "." + m[3].str();
  return "";
}

}  // namespace lowbit::models
