// Recursive-descent parser for the Jinja subset used by Hugging Face chat templates. Operator
// precedence follows jinja2's parser (or < and < not < compare < +,- < ~ < *,/,//,% < ** <
// unary -, + < postfix / filters / tests).
#pragma once

#include <string>

#include "tokenizer/jinja/ast.h"

namespace lowbit::tokenizer::jinja {

// Name given to the body of {% set x | filter %} / {% filter %} blocks inside their filter chain.
inline constexpr const char* kBodyVar = "\x01body";

// Throws lowbit::Error("chat template: syntax error: ... at line L").
Body parse_template(const std::string& source);

}  // namespace lowbit::tokenizer::jinja
