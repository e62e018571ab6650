// SentencePiece-style BPE (Llama 2 tokenizer.model, GGUF "llama"): llama.cpp's SPM algorithm.
// Text fragments (between special tokens) get a leading space when add_space_prefix and the
// previous fragment was a special token (or the start); spaces become U+2581 "▁"; UTF-8
// characters are merged pairwise, highest vocab score first (ties: leftmost), only into
// pieces that exist in the vocab; pieces that end up unknown fall back to <0xNN> tokens.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_base.h"

namespace lowbit::tokenizer {

enum class SpmPieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct SpmSpec {
  std::string source;
  std::vector<std::string> pieces;  // with "▁" for spaces
  std::vector<float> scores;
  std::vector<SpmPieceType> types;
  bool add_space_prefix = true;
  bool remove_extra_whitespaces = false;  // sentencepiece normalizer option
  std::optional<int32_t> unk_id;
};

class SpmTokenizer : public TokenizerBase {
 public:
  // Control, user-defined and unknown pieces become matchable special/added tokens.
  explicit SpmTokenizer(const SpmSpec& spec);

  using Tokenizer::encode;
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::optional<int32_t> token_id(std::string_view piece) const override;

 private:
  void encode_text(std::string text, std::vector<int32_t>& out) const;
  void resegment(std::string_view text,
                 const std::unordered_map<std::string_view,
                                          std::pair<std::string_view, std::string_view>>& rev,
                 std::vector<int32_t>& out) const;

  SpmSpec spec_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  int32_t byte_token_[256];
};

}  // namespace lowbit::tokenizer
