#include "tokenizer/jinja/lexer.h"

#include <cstring>

#include "core/error.h"

namespace lowbit::tokenizer::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// jinja2 normalizes \r\n and \r to \n and drops one trailing newline.
std::string normalize(const std::string& in) {
  std::string s;
  s.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      s += '\n';
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else {
      s += in[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(std::move(src)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < s_.size()) {
      size_t p = s_.find('{', pos);
      while (p != std::string::npos && p + 1 < s_.size() &&
             (s_[p + 1] == 0 || !strchr("{%#", s_[p + 1]))) {
        p = s_.find('{', p + 1);
      }
      if (p == std::string::npos || p + 1 >= s_.size()) {
        emit_text(s_.substr(pos));
        break;
      }
      std::string text = s_.substr(pos, p - pos);
      char kind = s_[p + 1];
      char sign = p + 2 < s_.size() ? s_[p + 2] : 0;
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_space(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop spaces/tabs between the start of the line and a block/comment tag.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        bool line_start = l_pos > 0 || pos == 0 || s_[pos - 1] == '\n';
        if (line_start && l_pos < text.size()) {
          bool all_ws = true;
          for (size_t i = l_pos; i < text.size(); ++i) all_ws = all_ws && is_space(text[i]);
          if (all_ws) text.resize(l_pos);
        }
      }
      emit_text(text);
      count_lines(pos, p);
      pos = p + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = comment(pos);
      } else {
        pos = tag(pos, kind == '{');
      }
    }
    out_.push_back(Token{Tok::kEof, "", 0, 0, line_});
    return std::move(out_);
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail("chat template: syntax error: {} at line {}", what, line_);
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < s_.size(); ++i) line_ += s_[i] == '\n';
  }

  void emit_text(const std::string& t) {
    if (!t.empty()) out_.push_back(Token{Tok::kText, t, 0, 0, line_});
  }

  // After a block/comment end: '-' eats all following whitespace, otherwise trim_blocks eats
  // one newline (unless '+').
  size_t after_end(size_t pos, char sign, bool block) {
    if (sign == '-') {
      while (pos < s_.size() && is_space(s_[pos])) ++pos;
    } else if (block && sign != '+' && pos < s_.size() && s_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  size_t comment(size_t pos) {
    size_t e = s_.find("#}", pos);
    if (e == std::string::npos) error("unclosed comment");
    char sign = e > pos && (s_[e - 1] == '-' || s_[e - 1] == '+') ? s_[e - 1] : 0;
    size_t next = after_end(e + 2, sign, true);
    count_lines(pos, next);
    return next;
  }

  size_t tag(size_t pos, bool var) {
    out_.push_back(Token{var ? Tok::kVarBegin : Tok::kBlockBegin, "", 0, 0, line_});
    size_t first_tok = out_.size();
    int depth = 0;
    while (true) {
      while (pos < s_.size() && is_space(s_[pos])) {
        line_ += s_[pos] == '\n';
        ++pos;
      }
      if (pos >= s_.size()) error(var ? "unclosed '{{'" : "unclosed '{%'");
      if (depth == 0) {
        const char* end = var ? "}}" : "%}";
        char sign = 0;
        size_t at = pos;
        if ((s_[pos] == '-' || (!var && s_[pos] == '+')) && s_.compare(pos + 1, 2, end) == 0) {
          sign = s_[pos];
          at = pos + 1;
        }
        if (s_.compare(at, 2, end) == 0) {
          out_.push_back(Token{var ? Tok::kVarEnd : Tok::kBlockEnd, "", 0, 0, line_});
          size_t next = after_end(at + 2, sign, !var);
          count_lines(at + 2, next);
          if (!var && out_.size() == first_tok + 2 && out_[first_tok].kind == Tok::kName &&
              out_[first_tok].text == "raw") {
            return raw(next);
          }
          return next;
        }
      }
      pos = expr_token(pos, depth);
    }
  }

  // {% raw %}...{% endraw %}: the body is literal text.
  size_t raw(size_t pos) {
    out_.resize(out_.size() - 3);  // drop BlockBegin raw BlockEnd
    size_t search = pos;
    while (true) {
      size_t p = s_.find("{%", search);
      if (p == std::string::npos) error("missing '{% endraw %}'");
      size_t q = p + 2;
      char lsign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) lsign = s_[q++];
      while (q < s_.size() && is_space(s_[q])) ++q;
      if (s_.compare(q, 6, "endraw") != 0) {
        search = p + 2;
        continue;
      }
      q += 6;
      while (q < s_.size() && is_space(s_[q])) ++q;
      char rsign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) rsign = s_[q++];
      if (s_.compare(q, 2, "%}") != 0) {
        search = p + 2;
        continue;
      }
      std::string body = s_.substr(pos, p - pos);
      if (lsign == '-') {
        while (!body.empty() && is_space(body.back())) body.pop_back();
      }
      emit_text(body);
      size_t next = after_end(q + 2, rsign, true);
      count_lines(pos, next);
      return next;
    }
  }

  size_t expr_token(size_t pos, int& depth) {
    char c = s_[pos];
    if (is_name_start(c)) {
      size_t e = pos;
      while (e < s_.size() && (is_name_start(s_[e]) || is_digit(s_[e]))) ++e;
      out_.push_back(Token{Tok::kName, s_.substr(pos, e - pos), 0, 0, line_});
      return e;
    }
    if (is_digit(c)) return number(pos);
    if (c == '\'' || c == '"') return string_lit(pos);
    static const char* kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : kTwo) {
      if (s_.compare(pos, 2, op) == 0) {
        out_.push_back(Token{Tok::kOp, op, 0, 0, line_});
        return pos + 2;
      }
    }
    if (strchr("+-*/%~<>=()[]{},.:|", c) && c != 0) {
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') {
        if (depth == 0) error(std::string("unexpected '") + c + "'");
        --depth;
      }
      out_.push_back(Token{Tok::kOp, std::string(1, c), 0, 0, line_});
      return pos + 1;
    }
    error(std::string("unexpected character '") + c + "'");
  }

  size_t number(size_t pos) {
    size_t e = pos;
    std::string digits;
    auto take_digits = [&]() {
      while (e < s_.size() &&
             (is_digit(s_[e]) || (s_[e] == '_' && e + 1 < s_.size() && is_digit(s_[e + 1])))) {
        if (s_[e] != '_') digits += s_[e];
        ++e;
      }
    };
    take_digits();
    bool is_float = false;
    if (e + 1 < s_.size() && s_[e] == '.' && is_digit(s_[e + 1])) {
      is_float = true;
      digits += s_[e++];
      take_digits();
    }
    if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t f = e + 1;
      if (f < s_.size() && (s_[f] == '+' || s_[f] == '-')) ++f;
      if (f < s_.size() && is_digit(s_[f])) {
        is_float = true;
        digits += 'e';
        digits += s_.substr(e + 1, f - e - 1);
        e = f;
        take_digits();
      }
    }
    Token t{is_float ? Tok::kFloat : Tok::kInt, digits, 0, 0, line_};
    if (is_float) {
      t.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      errno = 0;
      t.int_value = std::strtoll(digits.c_str(), nullptr, 10);
      if (errno == ERANGE) error("integer literal " + digits + " out of range");
    }
    out_.push_back(t);
    return e;
  }

  size_t string_lit(size_t pos) {
    char q = s_[pos];
    std::string v;
    size_t i = pos + 1;
    int start_line = line_;
    while (true) {
      if (i >= s_.size()) {
        line_ = start_line;
        error("unterminated string literal");
      }
      char c = s_[i];
      if (c == q) break;
      if (c == '\n') ++line_;
      if (c != '\\' || i + 1 >= s_.size()) {
        v += c;
        ++i;
        continue;
      }
      char n = s_[i + 1];
      i += 2;
      switch (n) {
        case 'n':
          v += '\n';
          break;
        case 't':
          v += '\t';
          break;
        case 'r':
          v += '\r';
          break;
        case '\\':
          v += '\\';
          break;
        case '\'':
          v += '\'';
          break;
        case '"':
          v += '"';
          break;
        case 'a':
          v += '\a';
          break;
        case 'b':
          v += '\b';
          break;
        case 'f':
          v += '\f';
          break;
        case 'v':
          v += '\v';
          break;
        case '0':
          v += '\0';
          break;
        case '\n':
          ++line_;
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
          if (i + len > s_.size()) error("truncated \\" + std::string(1, n) + " escape");
          uint32_t cp = 0;
          for (size_t k = 0; k < len; ++k) {
            char h = s_[i + k];
            int d = is_digit(h)              ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
            if (d < 0) error("bad \\" + std::string(1, n) + " escape");
            cp = cp * 16 + d;
          }
          if (cp > 0x10ffff) error("escape out of Unicode range");
          append_utf8(v, cp);
          i += len;
          break;
        }
        default:
          v += '\\';
          v += n;
      }
    }
    out_.push_back(Token{Tok::kString, v, 0, 0, line_});
    return i + 1;
  }

  std::string s_;
  std::vector<Token> out_;
  int line_ = 1;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(normalize(source)).run(); }

}  // namespace lowbit::tokenizer::jinja
