#include "tokenizer/tokenizer_base.h"

#include <algorithm>

#include "core/error.h"

namespace lowbit::tokenizer {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
// Word characters for single_word (ASCII alnum, '_' and any non-ASCII byte).
bool is_word(char c) {
  auto u = static_cast<uint8_t>(c);
  return u >= 0x80 || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}

}  // namespace

void AddedTokenMatcher::add(const AddedToken& t) {
  if (t.content.empty()) return;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(t.content[0])];
  for (auto& e : bucket) {
    if (e.content == t.content) {  // later definitions win, like a map insert
      e = t;
      return;
    }
  }
  bucket.push_back(t);
  std::stable_sort(bucket.begin(), bucket.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  ++count_;
}

std::vector<Fragment> AddedTokenMatcher::split(std::string_view text, bool include_special) const {
  std::vector<Fragment> out;
  size_t text_start = 0;  // start of the pending plain-text fragment
  size_t i = 0;
  while (i < text.size()) {
    const auto& bucket = by_first_byte_[static_cast<uint8_t>(text[i])];
    const AddedToken* hit = nullptr;
    for (const auto& t : bucket) {
      if (!include_special && t.special) continue;
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        size_t end = i + t.content.size();
        if ((i > 0 && is_word(text[i - 1])) || (end < text.size() && is_word(text[end]))) {
          continue;
        }
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip) {
      while (start > text_start && is_space(text[start - 1])) --start;
    }
    if (hit->rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    if (start > text_start) out.push_back({-1, text_start, start - text_start});
    out.push_back({hit->id, start, end - start});
    i = text_start = end;
  }
  if (text_start < text.size()) out.push_back({-1, text_start, text.size() - text_start});
  return out;
}

void TokenizerBase::add_eos_id(int32_t id) {
  if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
}

void TokenizerBase::add_token(const AddedToken& t) {
  check_id(t.id, "added token");
  added_.add(t);
  added_text_[t.id] = t.content;
  if (t.special) special_ids_.insert(t.id);
}

void TokenizerBase::check_id(int32_t id, const char* what) const {
  if (id < 0 || id >= vocab_size_) {
    fail("{}: {} id {} is outside the vocabulary [0, {})", source_, what, id, vocab_size_);
  }
}

void TokenizerBase::wrap_special(std::vector<int32_t>& ids, bool add_special) const {
  if (!add_special) return;
  if (add_bos_ && bos_id_) ids.insert(ids.begin(), *bos_id_);
  if (add_eos_ && !eos_ids_.empty()) ids.push_back(eos_ids_.front());
}

}  // namespace lowbit::tokenizer
