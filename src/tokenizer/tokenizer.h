// Tokenizer interface shared by the SentencePiece-style BPE (Llama 2, GGUF "llama") and the
// byte-level BPE (tokenizer.json of Llama 3 / Qwen2/3 / SmolLM, GGUF "gpt2") implementations.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit::io {
class GgufFile;
}

namespace lowbit::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`. `add_special` adds BOS (and EOS) where the tokenizer's own config
  // says so (HF `add_special_tokens=True`); special/added tokens written in the text are
  // recognised (HF default behaviour).
  // parse_special = false treats special (control) tokens written in the text as plain text,
  // as llama.cpp's tokenizer does without parse_special (llama-perplexity); user-defined added
  // tokens are still matched.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;
  std::vector<int32_t> encode(std::string_view text, bool add_special) const {
    return encode(text, add_special, true);
  }
  // The bytes of one token (may be part of a UTF-8 character; callers buffer).
  virtual std::string token_bytes(int32_t id) const = 0;
  // Whole-sequence decode (HF `decode(ids, skip_special_tokens)`).
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;  // end-of-generation ids
  virtual bool adds_bos() const = 0;                   // whether encode(add_special) adds BOS
  virtual bool is_special(int32_t id) const = 0;       // control / added special token
  virtual std::optional<int32_t> token_id(std::string_view piece) const = 0;

  // Chat template (Jinja source) from tokenizer_config.json or GGUF metadata, if any.
  virtual const std::optional<std::string>& chat_template() const = 0;
  // Text of special tokens the chat template refers to ("bos_token", "eos_token").
  virtual std::string bos_token_text() const = 0;
  virtual std::string eos_token_text() const = 0;
};

// From an HF model directory: tokenizer.json (+ tokenizer_config.json), else tokenizer.model.
// Throws lowbit::Error naming the file when neither exists or one is malformed.
std::unique_ptr<Tokenizer> load_from_hf_dir(const std::string& dir);
// From a tokenizer.json path, with an optional tokenizer_config.json path ("" = none).
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& tokenizer_json,
                                               const std::string& tokenizer_config_json);
// From GGUF metadata (tokenizer.ggml.*; models "llama" and "gpt2").
std::unique_ptr<Tokenizer> load_from_gguf(const io::GgufFile& gguf);

}  // namespace lowbit::tokenizer
