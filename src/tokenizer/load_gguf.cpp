// Tokenizer from GGUF metadata (FORMATS.md §8, llama.cpp's tokenizer.ggml.* keys):
//   "gpt2"  -> byte-level BPE; tokenizer.ggml.pre picks the pre-tokenizer regexes the way
//              llama.cpp's llama-vocab.cpp does (HF-equivalent forms of them).
//   "llama" -> SentencePiece-style BPE with scores.
// token_type: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace lowbit::tokenizer {
namespace {

constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Pre-tokenizer stages and llama.cpp's per-pre defaults (add_bos, ignore_merges).
void select_pre(const std::string& pre, BpeSpec& spec, bool& add_bos_default) {
  add_bos_default = false;
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3") {
    spec.stages = {{kLlama3Regex, false}};
    spec.ignore_merges = true;
    add_bos_default = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "qwen35") {
    spec.stages = {{kQwen2Regex, false}};
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell" ||
             pre == "command-r" || pre == "exaone" || pre == "minerva-7b") {
    spec.stages = {{"\\p{N}", false}, {kGpt2Regex, false}};  // Digits(individual) + ByteLevel
  } else {
    spec.stages = {{kGpt2Regex, false}};  // "gpt2", "default" and anything unknown
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_from_gguf(const io::GgufFile& gguf) {
  const std::string& path = gguf.path();
  std::string model = gguf.get_string_or("tokenizer.ggml.model", "");
  if (model.empty())
    fail("{}: tokenizer.ggml.model: missing, expected \"gpt2\" or \"llama\"", path);
  std::vector<std::string> tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const size_t n = tokens.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens: empty", path);
  std::vector<int64_t> types;
  if (gguf.has("tokenizer.ggml.token_type"))
    types = gguf.get_int_array("tokenizer.ggml.token_type");
  if (types.empty()) types.assign(n, 1);
  if (types.size() != n) {
    fail("{}: tokenizer.ggml.token_type: {} entries, expected {} (one per token)", path,
         types.size(), n);
  }
  auto opt_id = [&](const char* key) -> std::optional<int32_t> {
    if (!gguf.has(key)) return std::nullopt;
    int64_t v = gguf.get_int(key);
    if (v < 0 || static_cast<size_t>(v) >= n) {
      fail("{}: {}: {} is outside the vocabulary [0, {})", path, key, v, n);
    }
    return static_cast<int32_t>(v);
  };
  std::optional<int32_t> bos = opt_id("tokenizer.ggml.bos_token_id");
  std::optional<int32_t> eos = opt_id("tokenizer.ggml.eos_token_id");
  std::optional<int32_t> unk = opt_id("tokenizer.ggml.unknown_token_id");

  std::unique_ptr<TokenizerBase> tok;
  bool add_bos = false;
  if (model == "gpt2") {
    BpeSpec spec;
    spec.source = path;
    spec.vocab = tokens;
    std::vector<std::string> merges = gguf.get_string_array("tokenizer.ggml.merges");
    spec.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string& m = merges[i];
      size_t sp = m.find(' ', 1);  // a piece never contains ' ' (byte-level maps it to "Ġ")
      if (sp == std::string::npos) {
        fail("{}: tokenizer.ggml.merges[{}]: '{}' is not two pieces separated by a space", path, i,
             m);
      }
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    // Control / user-defined tokens are matched as raw text, not byte-level pieces.
    for (size_t i = 0; i < n; ++i) {
      if (types[i] == 3 || types[i] == 4) spec.vocab[i].clear();
    }
    bool add_bos_default = false;
    select_pre(gguf.get_string_or("tokenizer.ggml.pre", "default"), spec, add_bos_default);
    add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", add_bos_default);
    spec.unk_id = unk;
    tok = std::make_unique<ByteBpeTokenizer>(spec);
    for (size_t i = 0; i < n; ++i) {
      if (types[i] == 3 || types[i] == 4) {
        AddedToken a;
        a.content = tokens[i];
        a.id = static_cast<int32_t>(i);
        a.special = types[i] == 3;
        tok->add_token(a);
      }
    }
  } else if (model == "llama") {
    SpmSpec spec;
    spec.source = path;
    spec.pieces = tokens;
    spec.scores = gguf.has("tokenizer.ggml.scores") ? gguf.get_float_array("tokenizer.ggml.scores")
                                                    : std::vector<float>(n, 0.0f);
    if (spec.scores.size() != n) {
      fail("{}: tokenizer.ggml.scores: {} entries, expected {}", path, spec.scores.size(), n);
    }
    for (size_t i = 0; i < n; ++i) {
      int64_t t = types[i];
      if (t < 1 || t > 6) fail("{}: tokenizer.ggml.token_type[{}]: {}, expected 1..6", path, i, t);
      spec.types.push_back(static_cast<SpmPieceType>(t));
    }
    spec.add_space_prefix = gguf.get_bool_or("tokenizer.ggml.add_space_prefix", true);
    spec.unk_id = unk;
    tok = std::make_unique<SpmTokenizer>(spec);
    add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", true);
  } else {
    fail("{}: tokenizer.ggml.model: \"{}\" is not supported (expected \"gpt2\" or \"llama\")", path,
         model);
  }
  tok->set_bos(bos, add_bos);
  tok->set_add_eos(gguf.get_bool_or("tokenizer.ggml.add_eos_token", false));
  if (eos) {
    tok->add_eos_id(*eos);
    tok->set_eos_text(tok->token_bytes(*eos));
  }
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = opt_id(key)) tok->add_eos_id(*id);
  }
  // Like llama.cpp: well-known end-of-turn control tokens also end generation.
  for (size_t i = 0; i < n; ++i) {
    if (types[i] != 3 && types[i] != 4) continue;
    const std::string& t = tokens[i];
    if (t == "<|eot_id|>" || t == "<|im_end|>" || t == "<|end|>" || t == "<end_of_turn>" ||
        t == "<|endoftext|>" || t == "<|eom_id|>" || t == "<EOT>" || t == "<|end_of_text|>") {
      tok->add_eos_id(static_cast<int32_t>(i));
    }
  }
  if (gguf.has("tokenizer.chat_template")) {
    tok->set_chat_template(gguf.get_string("tokenizer.chat_template"));
  }
  return tok;
}

}  // namespace lowbit::tokenizer
