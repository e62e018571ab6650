#include "tokenizer/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <queue>

#include "core/error.h"
#include "tokenizer/text_util.h"

namespace lowbit::tokenizer {

// Compiled pre-tokenizer stages. Matching state (match data, JIT stack) is per call, so one
// splitter serves concurrent encode() calls.
class RegexSplitter {
 public:
  RegexSplitter(const std::vector<BpeSpec::Stage>& stages, const std::string& source) {
    for (const auto& st : stages) {
      int err = 0;
      PCRE2_SIZE err_off = 0;
      pcre2_code* code =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(st.regex.data()), st.regex.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
      if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        fail("{}: pre-tokenizer regex '{}': {} at offset {}", source, st.regex,
             reinterpret_cast<const char*>(msg), err_off);
      }
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
      codes_.push_back({code, st.remove});
    }
  }
  ~RegexSplitter() {
    for (auto& c : codes_) pcre2_code_free(c.code);
  }

  // Appends [begin, end) spans of `text` (valid UTF-8) to `out`.
  void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
    std::vector<std::pair<size_t, size_t>> cur{{0, text.size()}}, next;
    if (codes_.empty()) {
      out.insert(out.end(), cur.begin(), cur.end());
      return;
    }
    pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
    pcre2_jit_stack* js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    pcre2_match_context* mc = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(mc, nullptr, js);
    try {
      for (const auto& c : codes_) {
        next.clear();
        for (auto [b, e] : cur) {
          auto subj = reinterpret_cast<PCRE2_SPTR>(text.data() + b);
          size_t len = e - b, pos = 0, last = 0;
          while (pos <= len) {
            int rc = pcre2_match(c.code, subj, len, pos, PCRE2_NO_UTF_CHECK, md, mc);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
              PCRE2_UCHAR msg[256];
              pcre2_get_error_message(rc, msg, sizeof(msg));
              fail("tokenizer: pre-tokenizer regex failed: {}", reinterpret_cast<const char*>(msg));
            }
            PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) {  // empty match: step one character, keep it in the gap
              if (ms >= len) break;
              pos = ms + utf8_len(static_cast<uint8_t>(text[b + ms]));
              continue;
            }
            if (ms > last) next.push_back({b + last, b + ms});
            if (!c.remove) next.push_back({b + ms, b + me});
            last = pos = me;
          }
          if (last < len) next.push_back({b + last, e});
        }
        cur.swap(next);
      }
    } catch (...) {
      pcre2_match_context_free(mc);
      pcre2_jit_stack_free(js);
      pcre2_match_data_free(md);
      throw;
    }
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    pcre2_match_data_free(md);
    out.insert(out.end(), cur.begin(), cur.end());
  }

 private:
  struct Code {
    pcre2_code* code;
    bool remove;
  };
  std::vector<Code> codes_;
};

ByteBpeTokenizer::ByteBpeTokenizer(const BpeSpec& spec) {
  source_ = spec.source;
  const ByteLevelMap& bl = byte_level_map();
  vocab_size_ = static_cast<int32_t>(spec.vocab.size());
  pieces_ = spec.vocab;
  bytes_.resize(pieces_.size());
  piece_to_id_.reserve(pieces_.size() * 2);
  bytes_to_id_.reserve(pieces_.size() * 2);
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const std::string& p = pieces_[id];
    if (p.empty()) continue;
    piece_to_id_.emplace(p, static_cast<int32_t>(id));
    std::string raw;
    if (bl.decode(p, raw)) {
      bytes_[id] = raw;
      bytes_to_id_.emplace(raw, static_cast<int32_t>(id));
    } else {
      bytes_[id] = p;  // not a byte-level piece (e.g. "<0x0A>" or an added token): raw text
    }
  }
  for (int b = 0; b < 256; ++b) {
    byte_token_[b] = -1;
    auto it = piece_to_id_.find(bl.encode_byte(static_cast<uint8_t>(b)));
    if (it != piece_to_id_.end()) byte_token_[b] = it->second;
    if (byte_token_[b] < 0 && spec.byte_fallback) {
      auto fb = piece_to_id_.find(fmt::format("<0x{:02X}>", b));
      if (fb != piece_to_id_.end()) byte_token_[b] = fb->second;
    }
  }
  for (auto [b, id] : piece_to_id_) {  // "<0xNN>" byte-fallback pieces decode to the byte
    if (b.size() == 6 && b.compare(0, 3, "<0x") == 0 && b[5] == '>' && spec.byte_fallback) {
      bytes_[id] = std::string(1, static_cast<char>(std::stoi(b.substr(3, 2), nullptr, 16)));
    }
  }
  merges_.reserve(spec.merges.size() * 2);
  int32_t rank = 0;
  for (const auto& [a, b] : spec.merges) {
    auto ia = piece_to_id_.find(a), ib = piece_to_id_.find(b), im = piece_to_id_.find(a + b);
    if (ia == piece_to_id_.end() || ib == piece_to_id_.end() || im == piece_to_id_.end()) {
      fail("{}: merge #{} '{} {}' refers to a piece missing from the vocab", source_, rank, a, b);
    }
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                   static_cast<uint32_t>(ib->second);
    merges_.emplace(key, Merge{rank, im->second});  // first (lowest rank) wins on duplicates
    ++rank;
  }
  spec_flags_.source = spec.source;
  spec_flags_.add_prefix_space = spec.add_prefix_space;
  spec_flags_.ignore_merges = spec.ignore_merges;
  spec_flags_.byte_fallback = spec.byte_fallback;
  spec_flags_.nfc = spec.nfc;
  spec_flags_.unk_id = spec.unk_id;
  splitter_ = std::make_unique<RegexSplitter>(spec.stages, spec.source);
}

ByteBpeTokenizer::~ByteBpeTokenizer() = default;

std::optional<int32_t> ByteBpeTokenizer::token_id(std::string_view piece) const {
  for (const auto& [id, text] : added_text_) {
    if (text == piece) return id;
  }
  auto it = piece_to_id_.find(std::string(piece));
  if (it != piece_to_id_.end()) return it->second;
  return std::nullopt;
}

std::string ByteBpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size_)
    fail("{}: token id {} is outside [0, {})", source_, id, vocab_size_);
  auto it = added_text_.find(id);
  if (it != added_text_.end()) return it->second;
  return bytes_[static_cast<size_t>(id)];
}

std::string ByteBpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    out += token_bytes(id);
  }
  return sanitize_utf8(out);  // HF decodes bytes with replacement of invalid UTF-8
}

std::vector<int32_t> ByteBpeTokenizer::encode(std::string_view text, bool add_special,
                                           bool parse_special) const {
  std::string clean = sanitize_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(clean.size() / 3 + 4);
  if (added_.empty()) {
    encode_text(clean, ids);
  } else {
    for (const Fragment& f : added_.split(clean, parse_special)) {
      if (f.token >= 0) {
        ids.push_back(f.token);
      } else {
        encode_text(std::string_view(clean).substr(f.offset, f.length), ids);
      }
    }
  }
  wrap_special(ids, add_special);
  return ids;
}

void ByteBpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::string normalized, prefixed;
  if (spec_flags_.nfc) {
    normalized = nfc(text);
    text = normalized;
  }
  if (spec_flags_.add_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed += ' ';
    prefixed += text;
    text = prefixed;
  }
  std::vector<std::pair<size_t, size_t>> spans;
  splitter_->split(text, spans);
  for (auto [b, e] : spans) bpe_piece(text.substr(b, e - b), out);
}

void ByteBpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (spec_flags_.ignore_merges) {
    auto it = bytes_to_id_.find(std::string(piece));
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Symbols start as single bytes, linked; a min-heap of (rank, left position) holds the
  // candidate merges and stale entries are skipped on pop (HF BPE word merge order).
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Sym> sym;
  sym.reserve(piece.size());
  std::vector<int32_t> result;
  for (size_t i = 0; i < piece.size(); ++i) {
    int32_t id = byte_token_[static_cast<uint8_t>(piece[i])];
    if (id < 0) {
      if (spec_flags_.unk_id) {
        id = *spec_flags_.unk_id;
      } else {
        continue;  // HF drops bytes it cannot represent when there is no unk token
      }
    }
    int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, n + 1});
  }
  if (!sym.empty()) sym.back().next = -1;
  struct Cand {
    int32_t rank, left, right, left_id, right_id, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t l) {
    if (l < 0) return;
    int32_t r = sym[l].next;
    if (r < 0) return;
    uint64_t k = (static_cast<uint64_t>(static_cast<uint32_t>(sym[l].id)) << 32) |
                 static_cast<uint32_t>(sym[r].id);
    auto it = merges_.find(k);
    if (it != merges_.end())
      heap.push({it->second.rank, l, r, sym[l].id, sym[r].id, it->second.id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& L = sym[c.left];
    if (L.id != c.left_id || L.next != c.right || sym[c.right].id != c.right_id) continue;
    L.id = c.new_id;
    L.next = sym[c.right].next;
    if (L.next >= 0) sym[L.next].prev = c.left;
    sym[c.right].id = -1;  // dead
    push(L.prev);
    push(c.left);
  }
  if (!sym.empty()) {
    for (int32_t i = 0; i >= 0; i = sym[i].next) result.push_back(sym[i].id);
  }
  out.insert(out.end(), result.begin(), result.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() > 200000) cache_.clear();
  cache_.emplace(std::move(key), std::move(result));
}

}  // namespace lowbit::tokenizer
