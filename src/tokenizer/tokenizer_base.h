// Pieces shared by the byte-level BPE and SentencePiece-style tokenizers: the added/special
// token matcher (HF AddedVocabulary semantics) and a base class holding the metadata every
// Tokenizer reports (BOS/EOS, specials, chat template).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lowbit::tokenizer {

// One entry of tokenizer.json "added_tokens" (or a GGUF control / user-defined token).
struct AddedToken {
  std::string content;  // the raw text it matches
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;       // the match also swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
};

// A piece of the input after splitting out added tokens: either one token or plain text.
struct Fragment {
  int32_t token = -1;  // >= 0: an added token; -1: text [offset, offset + length)
  size_t offset = 0;
  size_t length = 0;
};

// Leftmost-longest matching of added tokens in raw text (HF matches them before
// normalization and pre-tokenization; llama.cpp does the same for control/user tokens).
class AddedTokenMatcher {
 public:
  void add(const AddedToken& t);
  bool empty() const { return count_ == 0; }
  // include_special = false leaves special tokens in the text fragments.
  std::vector<Fragment> split(std::string_view text, bool include_special = true) const;

 private:
  // Tokens grouped by first byte, longest first.
  std::vector<std::vector<AddedToken>> by_first_byte_ = std::vector<std::vector<AddedToken>>(256);
  size_t count_ = 0;
};

// Everything except encode/decode/token_bytes/token_id lives here.
class TokenizerBase : public Tokenizer {
 public:
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool adds_bos() const override { return add_bos_ && bos_id_.has_value(); }
  bool is_special(int32_t id) const override { return special_ids_.count(id) != 0; }
  const std::optional<std::string>& chat_template() const override { return chat_template_; }
  std::string bos_token_text() const override { return bos_id_ ? token_bytes(*bos_id_) : ""; }
  std::string eos_token_text() const override { return eos_text_; }

  // Setters used by the loaders.
  void set_bos(std::optional<int32_t> id, bool add) { bos_id_ = id, add_bos_ = add; }
  void set_add_eos(bool add) { add_eos_ = add; }
  // The first id is the one eos_token_text() names; the rest are other end-of-generation ids.
  void add_eos_id(int32_t id);
  void set_eos_text(std::string t) { eos_text_ = std::move(t); }
  void set_chat_template(std::optional<std::string> t) { chat_template_ = std::move(t); }
  void mark_special(int32_t id) { special_ids_.insert(id); }
  void add_token(const AddedToken& t);  // matched in text; special ones marked special

 protected:
  void check_id(int32_t id, const char* what) const;
  // BOS/EOS around `ids` when add_special.
  void wrap_special(std::vector<int32_t>& ids, bool add_special) const;

  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  std::vector<int32_t> eos_ids_;
  std::string eos_text_;
  std::optional<std::string> chat_template_;
  std::unordered_set<int32_t> special_ids_;
  AddedTokenMatcher added_;
  std::unordered_map<int32_t, std::string> added_text_;  // id -> raw content
  std::string source_;                                   // file name for messages
};

}  // namespace lowbit::tokenizer
