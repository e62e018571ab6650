// Filters, tests, attribute access (bound str/dict methods) and global functions of the
// sandbox. Only the whitelisted, side-effect-free operations below exist, which is what makes
// the interpreter a sandbox: there is no path to files, the clock (except strftime_now, as in
// transformers) or mutation of caller data.
#pragma once

#include <string>

#include "tokenizer/jinja/evaluator.h"

namespace lowbit::tokenizer::jinja {

// obj.name: dict keys, namespace attributes and bound methods of str/dict; Undefined if absent.
Value get_attr(Interpreter& in, const Value& obj, const std::string& name, int line);
Value apply_filter(Interpreter& in, const std::string& name, const Value& v, CallArgs& args);
bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args);
// range, namespace, dict, raise_exception, strftime_now.
Dict make_globals();

// Python's str.split/strip family on UTF-8 strings (shared with the filters).
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right);

}  // namespace lowbit::tokenizer::jinja
