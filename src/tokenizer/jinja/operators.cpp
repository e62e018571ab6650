// Binary operators with Python semantics (int64 with overflow checks instead of bignums).
#include <cmath>
#include <limits>

#include "core/error.h"
#include "tokenizer/jinja/evaluator.h"

namespace lowbit::tokenizer::jinja {
namespace {

bool is_int(const Value& v) { return v.kind() == Kind::kInt || v.kind() == Kind::kBool; }

bool contains(Interpreter& in, const Value& container, const Value& item, int line) {
  switch (container.kind()) {
    case Kind::kUndefined:
      return false;
    case Kind::kString:
      if (!item.is_string()) {
        in.error(line, "'in <string>' requires string as left operand, not " + item.type_name());
      }
      return container.str().find(item.str()) != std::string::npos;
    case Kind::kList:
      for (const Value& x : container.items()) {
        if (equals(x, item)) return true;
      }
      return false;
    case Kind::kDict:
      return item.is_string() && container.find(item.str()) != nullptr;
    default:
      in.error(line, "argument of type '" + container.type_name() + "' is not iterable");
  }
}

[[noreturn]] void unsupported(Interpreter& in, const std::string& op, const Value& a,
                              const Value& b, int line) {
  for (const Value* v : {&a, &b}) {
    if (v->is_undefined()) {
      in.error(line,
               "'" + (v->undefined_name().empty() ? std::string("value") : v->undefined_name()) +
                   "' is undefined");
    }
  }
  in.error(line, "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
                     b.type_name() + "'");
}

Value repeat(Interpreter& in, const Value& seq, int64_t times, int line) {
  if (times <= 0) return seq.is_string() ? Value(std::string()) : Value::list({});
  if (seq.is_string()) {
    size_t n = seq.str().size();
    if (n && static_cast<uint64_t>(times) > in.limits().max_output_bytes / n + 1) {
      in.check_string_size(in.limits().max_output_bytes + 1, line);
    }
    in.check_string_size(n * times, line);
    std::string out;
    out.reserve(n * times);
    for (int64_t i = 0; i < times; ++i) out += seq.str();
    return Value(std::move(out));
  }
  size_t n = seq.items().size();
  if (n && static_cast<uint64_t>(times) > in.limits().max_items / n + 1) {
    in.check_items(in.limits().max_items + 1, line);
  }
  in.check_items(n * times, line);
  List out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out));
}

}  // namespace

Value Interpreter::eval_binary(const Expr& e) {
  const std::string& op = e.name;
  const int line = e.line;
  if (op == "and") {
    Value a = eval(*e.args[0]);
    return a.truthy() ? eval(*e.args[1]) : a;
  }
  if (op == "or") {
    Value a = eval(*e.args[0]);
    return a.truthy() ? a : eval(*e.args[1]);
  }
  Value a = eval(*e.args[0]);
  Value b = eval(*e.args[1]);
  if (op == "==") return Value(equals(a, b));
  if (op == "!=") return Value(!equals(a, b));
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    if (a.is_undefined() || b.is_undefined()) unsupported(*this, op, a, b, line);
    int c;
    try {
      c = compare(a, b);
    } catch (const Error&) {
      error(line, "'" + op + "' not supported between instances of '" + a.type_name() + "' and '" +
                      b.type_name() + "'");
    }
    if (op == "<") return Value(c < 0);
    if (op == ">") return Value(c > 0);
    if (op == "<=") return Value(c <= 0);
    return Value(c >= 0);
  }
  if (op == "in") return Value(contains(*this, b, a, line));
  if (op == "notin") return Value(!contains(*this, b, a, line));
  if (op == "~") {
    std::string sa = a.to_str(), sb = b.to_str();
    check_string_size(sa.size() + sb.size(), line);
    return Value(sa + sb);
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_string_size(a.str().size() + b.str().size(), line);
      return Value(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      check_items(a.items().size() + b.items().size(), line);
      List l = a.items();
      l.insert(l.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(l), a.is_tuple() && b.is_tuple());
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && is_int(b)) return repeat(*this, a, b.as_int(), line);
    if ((b.is_string() || b.is_list()) && is_int(a)) return repeat(*this, b, a.as_int(), line);
  }
  if (!a.is_number() || !b.is_number()) unsupported(*this, op, a, b, line);
  const bool ints = is_int(a) && is_int(b);
  if (op == "/") {
    if (b.as_float() == 0.0) error(line, "division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (ints) {
    int64_t x = a.as_int(), y = b.as_int(), r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) error(line, "integer overflow");
      return Value(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) error(line, "integer overflow");
      return Value(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) error(line, "integer overflow");
      return Value(r);
    }
    if (op == "//" || op == "%") {
      if (y == 0) error(line, "integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) error(line, "integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward -inf
        --q;
        m += y;
      }
      return op == "//" ? Value(q) : Value(m);
    }
    if (op == "**") {
      if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(result, x, &result)) error(line, "integer overflow");
        if (result == 0 || result == 1) break;
        if (result == -1) {
          result = ((y - i - 1) % 2 == 0) ? -1 : 1;
          break;
        }
      }
      return Value(result);
    }
  }
  double x = a.as_float(), y = b.as_float();
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "**") return Value(std::pow(x, y));
  if (op == "//" || op == "%") {
    if (y == 0.0) error(line, "float division or modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (op == "%") return Value(m);
    return Value(std::floor(x / y));
  }
  error(line, "unknown operator '" + op + "'");
}

}  // namespace lowbit::tokenizer::jinja
