// Jinja lexer with the whitespace rules transformers uses (trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False): splits the source into text and tag tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit::tokenizer::jinja {

enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tok kind;
  std::string text;  // text, name, decoded string literal or operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Throws lowbit::Error("chat template: ... at line L") on malformed input.
std::vector<Token> tokenize(const std::string& source);

}  // namespace lowbit::tokenizer::jinja
