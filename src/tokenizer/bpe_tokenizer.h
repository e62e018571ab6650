// Byte-level BPE (GPT-2 style: Llama 3, Qwen2/3, SmolLM) built from tokenizer.json or GGUF
// "gpt2" metadata. Pipeline of encode(): split out added tokens (raw text) -> optional NFC ->
// regex pre-tokenizer stages (PCRE2, UTF+UCP, JIT; every match and every gap is a piece) ->
// bytes of each piece -> BPE merges by rank (cached per piece) -> BOS/EOS.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_base.h"

namespace lowbit::tokenizer {

class RegexSplitter;

struct BpeSpec {
  std::string source;  // file name for error messages
  // id -> piece as stored in the vocab (byte-level mapped chars, e.g. "Ġthe"); "" = no token.
  std::vector<std::string> vocab;
  // Merges in rank order, as pairs of stored pieces.
  std::vector<std::pair<std::string, std::string>> merges;
  // Pre-tokenizer regexes applied in sequence (each isolates its matches). A stage with
  // remove=true drops its matches instead (HF Split behavior "Removed").
  struct Stage {
    std::string regex;
    bool remove = false;
  };
  std::vector<Stage> stages;
  bool add_prefix_space = false;  // ByteLevel add_prefix_space
  bool ignore_merges = false;     // a piece that is itself in the vocab is one token
  bool byte_fallback = false;     // unknown bytes -> "<0xNN>"
  bool nfc = false;               // NFC normalizer
  std::optional<int32_t> unk_id;
};

class ByteBpeTokenizer : public TokenizerBase {
 public:
  explicit ByteBpeTokenizer(const BpeSpec& spec);
  ~ByteBpeTokenizer() override;

  using Tokenizer::encode;
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::optional<int32_t> token_id(std::string_view piece) const override;

 private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_piece(std::string_view bytes, std::vector<int32_t>& out) const;

  std::vector<std::string> pieces_;  // id -> stored piece
  std::vector<std::string> bytes_;   // id -> raw bytes
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // normal vocab tokens only
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  int32_t byte_token_[256];                     // id of each single byte (-1 if none)
  BpeSpec spec_flags_;                          // flags only (vocab/merges moved out)
  std::unique_ptr<RegexSplitter> splitter_;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace lowbit::tokenizer
