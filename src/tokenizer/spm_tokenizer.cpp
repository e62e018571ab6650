#include "tokenizer/spm_tokenizer.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/text_util.h"

namespace lowbit::tokenizer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

std::string escape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (char c : s) {
    if (c == ' ') {
      out += kSpace;
    } else {
      out += c;
    }
  }
  return out;
}

// sentencepiece's remove_extra_whitespaces: trim, and collapse runs of ' ' to one.
std::string collapse_spaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

SpmTokenizer::SpmTokenizer(const SpmSpec& spec) : spec_(spec) {
  source_ = spec.source;
  vocab_size_ = static_cast<int32_t>(spec_.pieces.size());
  if (spec_.scores.size() != spec_.pieces.size() || spec_.types.size() != spec_.pieces.size()) {
    fail("{}: {} pieces but {} scores and {} types", source_, spec_.pieces.size(),
         spec_.scores.size(), spec_.types.size());
  }
  piece_to_id_.reserve(spec_.pieces.size() * 2);
  for (int b = 0; b < 256; ++b) byte_token_[b] = -1;
  for (size_t i = 0; i < spec_.pieces.size(); ++i) {
    const std::string& p = spec_.pieces[i];
    auto id = static_cast<int32_t>(i);
    piece_to_id_.emplace(p, id);
    SpmPieceType t = spec_.types[i];
    if (t == SpmPieceType::kByte && p.size() == 6 && p.compare(0, 3, "<0x") == 0) {
      int v = std::stoi(p.substr(3, 2), nullptr, 16);
      if (v >= 0 && v < 256) byte_token_[v] = id;
    }
    if (t == SpmPieceType::kControl || t == SpmPieceType::kUserDefined ||
        t == SpmPieceType::kUnknown) {
      AddedToken a;
      a.content = p;
      a.id = id;
      a.special = t != SpmPieceType::kUserDefined;
      add_token(a);
    }
  }
}

std::optional<int32_t> SpmTokenizer::token_id(std::string_view piece) const {
  auto it = piece_to_id_.find(std::string(piece));
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size_)
    fail("{}: token id {} is outside [0, {})", source_, id, vocab_size_);
  const std::string& p = spec_.pieces[static_cast<size_t>(id)];
  SpmPieceType t = spec_.types[static_cast<size_t>(id)];
  if (t == SpmPieceType::kByte && p.size() == 6) {
    return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
  }
  if (t == SpmPieceType::kControl || t == SpmPieceType::kUnknown) return p;
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

std::string SpmTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool first_text = true;
  for (int32_t id : ids) {
    bool special = is_special(id);
    if (skip_special && special) continue;
    std::string piece = token_bytes(id);
    // The dummy-prefix space of the first text piece is not part of the text (sentencepiece
    // and llama.cpp both drop it).
    if (first_text && !special && spec_.add_space_prefix && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    if (!special) first_text = false;
    out += piece;
  }
  return sanitize_utf8(out);
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_special,
                                           bool parse_special) const {
  std::string clean = sanitize_utf8(text);
  std::vector<int32_t> ids;
  bool prev_special = true;  // the start counts as "after a special token"
  for (const Fragment& f : added_.split(clean, parse_special)) {
    if (f.token >= 0) {
      ids.push_back(f.token);
      prev_special = true;
      continue;
    }
    std::string frag = clean.substr(f.offset, f.length);
    if (spec_.remove_extra_whitespaces) frag = collapse_spaces(frag);
    if (spec_.add_space_prefix && prev_special) frag.insert(frag.begin(), ' ');
    encode_text(escape_spaces(frag), ids);
    prev_special = false;
  }
  wrap_special(ids, add_special);
  return ids;
}

void SpmTokenizer::encode_text(std::string text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  struct Sym {
    int32_t prev, next;
    const char* text;
    size_t n;
  };
  std::vector<Sym> sym;
  for (size_t i = 0; i < text.size();) {
    size_t n = std::min(utf8_len(static_cast<uint8_t>(text[i])), text.size() - i);
    int32_t k = static_cast<int32_t>(sym.size());
    sym.push_back({k - 1, k + 1, text.data() + i, n});
    i += n;
  }
  sym.back().next = -1;
  struct Bigram {
    int32_t left, right;
    float score;
    size_t size;
  };
  auto worse = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> heap(worse);
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    std::string_view s(sym[l].text, sym[l].n + sym[r].n);
    auto it = piece_to_id_.find(std::string(s));
    if (it == piece_to_id_.end()) return;
    heap.push({l, r, spec_.scores[static_cast<size_t>(it->second)], s.size()});
    rev[s] = {std::string_view(sym[l].text, sym[l].n), std::string_view(sym[r].text, sym[r].n)};
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);
  while (!heap.empty()) {
    Bigram b = heap.top();
    heap.pop();
    Sym& L = sym[b.left];
    Sym& R = sym[b.right];
    if (L.n == 0 || R.n == 0 || L.n + R.n != b.size) continue;  // stale
    L.n += R.n;
    R.n = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = b.left;
    try_add(L.prev, b.left);
    try_add(b.left, L.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    resegment(std::string_view(sym[i].text, sym[i].n), rev, out);
  }
}

void SpmTokenizer::resegment(
    std::string_view text,
    const std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>& rev,
    std::vector<int32_t>& out) const {
  auto it = piece_to_id_.find(std::string(text));
  if (it != piece_to_id_.end()) {
    out.push_back(it->second);
    return;
  }
  auto r = rev.find(text);
  if (r == rev.end()) {
    for (char c : text) {
      int32_t id = byte_token_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        out.push_back(id);
      } else if (spec_.unk_id) {
        out.push_back(*spec_.unk_id);
      }
    }
    return;
  }
  resegment(r->second.first, rev, out);
  resegment(r->second.second, rev, out);
}

}  // namespace lowbit::tokenizer
