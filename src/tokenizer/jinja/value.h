// Values of the sandboxed Jinja interpreter. They mirror the Python objects that jinja2 sees
// when transformers renders a chat template: None, bool, int, float, str, list/tuple, dict
// (insertion-ordered, string keys), jinja2's default Undefined, namespace() objects and
// callables (macros, builtin functions, bound string/dict methods).
// Lists and dicts are immutable once built (ImmutableSandboxedEnvironment refuses mutating
// methods), so they are shared by pointer; only a Namespace is mutable ({% set ns.x = ... %}).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lowbit::tokenizer::jinja {

class Value;
using List = std::vector<Value>;
// Python dicts keep insertion order; chat dicts are small, so a vector with linear lookup is fine.
using Dict = std::vector<std::pair<std::string, Value>>;

struct CallArgs;
class Interpreter;
using NativeFn = std::function<Value(Interpreter&, CallArgs&)>;

struct Callable {
  std::string name;
  NativeFn fn;
};

enum class Kind {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kDict,
  kNamespace,
  kCallable
};

class Value {
 public:
  Value() = default;  // Undefined
  static Value none();
  static Value undefined(std::string name = {});
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double d);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(List items, bool tuple = false);
  static Value dict(Dict items);
  static Value make_namespace(Dict items);
  static Value callable(std::string name, NativeFn fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_float() const;  // any number
  const std::string& str() const { return *s_; }
  const List& items() const { return *l_; }
  const Dict& entries() const { return *d_; }
  Dict& ns_entries() const { return *d_; }  // namespaces only
  const Callable& fn() const { return *c_; }
  // Name of the variable an Undefined came from (for error messages).
  const std::string& undefined_name() const { return s_ ? *s_ : empty_; }

  // Lookup of a dict key; nullptr when absent.
  const Value* find(std::string_view key) const;

  bool truthy() const;
  // Python str(value) as jinja2 prints it in {{ }}.
  std::string to_str() const;
  // Python repr(value); throws past 200 levels (namespaces can contain themselves).
  std::string repr(int depth = 0) const;
  // Drops a namespace's attributes (breaks reference cycles at the end of a render).
  void clear_namespace() const {
    if (kind_ == Kind::kNamespace) d_->clear();
  }
  std::string type_name() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool tuple_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<const List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<const Callable> c_;
  static const std::string empty_;
};

// Python ==, and <, <= for sortable pairs (numbers, strings, lists); throws on other pairs.
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);

// Python repr of a float (shortest round-trip digits, "1e+16", "0.1", "2.0").
std::string format_float(double d);
// Python repr of a str (quotes chosen like CPython).
std::string python_repr_string(const std::string& s);

// json.dumps(value, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort_keys)
// as transformers' tojson filter calls it. indent < 0 means None.
std::string to_json(const Value& v, int indent, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys);

Value from_json(const nlohmann::ordered_json& j);

// UTF-8 helpers: Python indexes str by code point.
std::u32string utf8_decode(const std::string& s);
std::string utf8_encode(const std::u32string& s);
size_t utf8_length(const std::string& s);

}  // namespace lowbit::tokenizer::jinja
