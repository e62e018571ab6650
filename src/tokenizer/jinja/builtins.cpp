// Attribute access, str/dict methods, tests and global functions of the sandbox.
#include "tokenizer/jinja/builtins.h"

#include <ctime>

#include "core/error.h"

namespace lowbit::tokenizer::jinja {
namespace {

bool is_py_space(char32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

const std::string& need_str(Interpreter& in, const Value* v, const CallArgs& a, const char* what) {
  if (!v || !v->is_string()) {
    in.error(a.line, fmt::format("{}: argument '{}' must be a string", a.what, what));
  }
  return v->str();
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none()) {
    std::u32string u = utf8_decode(s);
    size_t i = 0;
    while (true) {
      while (i < u.size() && is_py_space(u[i])) ++i;
      if (i >= u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = u.size();
        while (e > i && is_py_space(u[e - 1])) --e;
        out.push_back(utf8_encode(u.substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !is_py_space(u[j])) ++j;
      out.push_back(utf8_encode(u.substr(i, j - i)));
      i = j;
    }
    return out;
  }
  const std::string& d = sep->str();
  if (d.empty()) fail("chat template: split: empty separator");
  size_t start = 0;
  while (true) {
    size_t p = s.find(d, start);
    if (p == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) {
      out.push_back(s.substr(start));
      break;
    }
    out.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep,
                       int64_t count, Interpreter& in, int line) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    std::u32string u = utf8_decode(s);
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || done < count) {
        out += rep;
        ++done;
      }
      if (i < u.size()) out += utf8_encode(std::u32string(1, u[i]));
      in.check_string_size(out.size(), line);
    }
    return out;
  }
  size_t start = 0;
  while (true) {
    size_t p = (count < 0 || done < count) ? s.find(old, start) : std::string::npos;
    if (p == std::string::npos) {
      out.append(s, start, std::string::npos);
      break;
    }
    out.append(s, start, p - start);
    out += rep;
    in.check_string_size(out.size(), line);
    ++done;
    start = p + old.size();
  }
  in.check_string_size(out.size(), line);
  return out;
}

// ASCII case mapping (Python maps all of Unicode; chat templates apply these to roles/names).
std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = c - 'a' + 'A';
  return s;
}
std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = c - 'A' + 'a';
  return s;
}
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool prefix_match(const std::string& s, const Value& p, bool suffix, Interpreter& in, int line) {
  auto one = [&](const Value& x) {
    if (!x.is_string()) in.error(line, "startswith/endswith takes a str or a tuple of str");
    const std::string& t = x.str();
    if (t.size() > s.size()) return false;
    return suffix ? s.compare(s.size() - t.size(), t.size(), t) == 0
                  : s.compare(0, t.size(), t) == 0;
  };
  if (p.is_list()) {
    for (const Value& x : p.items())
      if (one(x)) return true;
    return false;
  }
  return one(p);
}

std::string py_format(Interpreter& in, const std::string& f, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '{' && i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < f.size() && f[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      size_t e = f.find('}', i);
      if (e == std::string::npos) in.error(a.line, "format: unmatched '{'");
      std::string field = f.substr(i + 1, e - i - 1);
      if (field.find_first_of(":!") != std::string::npos) {
        in.error(a.line, "format: conversions and format specs are not supported");
      }
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_idx < a.pos.size()) v = &a.pos[auto_idx];
        ++auto_idx;
      } else if (field.find_first_not_of("0123456789") == std::string::npos) {
        size_t k = std::stoul(field.substr(0, 9));
        if (k < a.pos.size()) v = &a.pos[k];
      } else {
        for (const auto& [k, x] : a.kw)
          if (k == field) v = &x;
      }
      if (!v) in.error(a.line, "format: no argument for '{" + field + "}'");
      out += v->to_str();
      in.check_string_size(out.size(), a.line);
      i = e;
    } else {
      out += c;
    }
  }
  return out;
}

Value bound(const std::string& name, NativeFn fn) { return Value::callable(name, std::move(fn)); }

Value str_method(const Value& obj, const std::string& name) {
  const std::string s = obj.str();
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return bound(name, [s, l, r](Interpreter&, CallArgs& a) {
      a.allow(1, {"chars"});
      return Value(py_strip(s, a.get(0, "chars"), l, r));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool suffix = name == "endswith";
    return bound(name, [s, suffix](Interpreter& in, CallArgs& a) {
      a.allow(1, {});
      if (a.pos.empty()) in.error(a.line, a.what + " takes one argument");
      return Value(prefix_match(s, a.pos[0], suffix, in, a.line));
    });
  }
  if (name == "split") {
    return bound(name, [s](Interpreter& in, CallArgs& a) {
      a.allow(2, {"sep", "maxsplit"});
      const Value* sep = a.get(0, "sep");
      if (sep && !sep->is_none()) need_str(in, sep, a, "sep");
      const Value* ms = a.get(1, "maxsplit");
      List out;
      for (auto& p : py_split(s, sep, ms ? ms->as_int() : -1)) out.emplace_back(std::move(p));
      in.check_items(out.size(), a.line);
      return Value::list(std::move(out));
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return bound(name, [s, name](Interpreter& in, CallArgs& a) {
      a.allow(0, {});
      CallArgs none;
      return apply_filter(in, name, Value(s), none);
    });
  }
  if (name == "replace") {
    return bound(name, [s](Interpreter& in, CallArgs& a) {
      a.allow(3, {});
      const Value* c = a.get(2, "count");
      return Value(py_replace(s, need_str(in, a.get(0, "old"), a, "old"),
                              need_str(in, a.get(1, "new"), a, "new"), c ? c->as_int() : -1, in,
                              a.line));
    });
  }
  if (name == "format") {
    return bound(name, [s](Interpreter& in, CallArgs& a) { return Value(py_format(in, s, a)); });
  }
  if (name == "join") {
    return bound(name, [s](Interpreter& in, CallArgs& a) {
      a.allow(1, {});
      if (a.pos.empty()) in.error(a.line, "join takes one argument");
      std::string out;
      bool first = true;
      for (const Value& x : iterate_value(in, a.pos[0], a.line)) {
        if (!x.is_string()) in.error(a.line, "join: sequence item is not a str");
        if (!first) out += s;
        first = false;
        out += x.str();
        in.check_string_size(out.size(), a.line);
      }
      return Value(std::move(out));
    });
  }
  if (name == "find" || name == "count") {
    bool find = name == "find";
    return bound(name, [s, find](Interpreter& in, CallArgs& a) {
      a.allow(1, {});
      const std::string& t = need_str(in, a.get(0, "sub"), a, "sub");
      if (find) {
        size_t p = s.find(t);
        return p == std::string::npos ? Value(int64_t{-1})
                                      : Value(static_cast<int64_t>(utf8_length(s.substr(0, p))));
      }
      if (t.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(t); p != std::string::npos; p = s.find(t, p + t.size())) ++n;
      return Value(n);
    });
  }
  if (name == "splitlines") {
    return bound(name, [s](Interpreter& in, CallArgs& a) {
      List out;
      size_t start = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' || s[i] == '\r') {
          out.emplace_back(s.substr(start, i - start));
          if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
          start = i + 1;
        }
      }
      if (start < s.size()) out.emplace_back(s.substr(start));
      in.check_items(out.size(), a.line);
      return Value::list(std::move(out));
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isupper" ||
      name == "islower" || name == "isalnum") {
    return bound(name, [s, name](Interpreter&, CallArgs&) {
      if (s.empty()) return Value(false);
      bool any_cased = false;
      for (char c : s) {
        bool up = c >= 'A' && c <= 'Z', lo = c >= 'a' && c <= 'z', dg = c >= '0' && c <= '9';
        any_cased = any_cased || up || lo;
        if (name == "isdigit" && !dg) return Value(false);
        if (name == "isalpha" && !(up || lo)) return Value(false);
        if (name == "isalnum" && !(up || lo || dg)) return Value(false);
        if (name == "isspace" && !is_py_space(static_cast<unsigned char>(c))) return Value(false);
        if (name == "isupper" && lo) return Value(false);
        if (name == "islower" && up) return Value(false);
      }
      if (name == "isupper" || name == "islower") return Value(any_cased);
      return Value(true);
    });
  }
  return Value::undefined(name);
}

Value dict_method(const Value& obj, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return bound(name, [obj, name](Interpreter&, CallArgs& a) {
      a.allow(0, {});
      List out;
      for (const auto& [k, v] : obj.entries()) {
        if (name == "items")
          out.push_back(Value::list({Value(k), v}, /*tuple=*/true));
        else if (name == "keys")
          out.emplace_back(k);
        else
          out.push_back(v);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return bound(name, [obj](Interpreter& in, CallArgs& a) {
      a.allow(2, {});
      if (a.pos.empty()) in.error(a.line, "get takes a key");
      if (a.pos[0].is_string()) {
        if (const Value* v = obj.find(a.pos[0].str())) return *v;
      }
      return a.pos.size() > 1 ? a.pos[1] : Value::none();
    });
  }
  return Value();
}

}  // namespace

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::u32string u = utf8_decode(s);
  std::u32string set;
  bool ws = !chars || chars->is_none();
  if (!ws) set = utf8_decode(chars->to_str());
  auto strip_it = [&](char32_t c) {
    return ws ? is_py_space(c) : set.find(c) != std::u32string::npos;
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return utf8_encode(u.substr(b, e - b));
}

Value get_attr(Interpreter& in, const Value& obj, const std::string& name, int line) {
  if (name.empty() || name[0] == '_') return Value::undefined(name);  // sandbox: no dunders
  switch (obj.kind()) {
    case Kind::kDict: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(name);
    }
    case Kind::kNamespace:
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(name);
    case Kind::kString:
      return str_method(obj, name);
    default:
      return Value::undefined(name);
  }
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  auto arg = [&]() -> const Value& {
    if (a.pos.empty()) in.error(a.line, "test '" + name + "' needs an argument");
    return a.pos[0];
  };
  const Kind k = v.kind();
  if (name == "defined") return k != Kind::kUndefined;
  if (name == "undefined") return k == Kind::kUndefined;
  if (name == "none") return k == Kind::kNone;
  if (name == "string") return k == Kind::kString;
  if (name == "number") return k == Kind::kInt || k == Kind::kFloat || k == Kind::kBool;
  if (name == "integer") return k == Kind::kInt;
  if (name == "float") return k == Kind::kFloat;
  if (name == "boolean") return k == Kind::kBool;
  if (name == "true") return k == Kind::kBool && v.as_bool();
  if (name == "false") return k == Kind::kBool && !v.as_bool();
  if (name == "mapping") return k == Kind::kDict;
  if (name == "iterable")
    return k == Kind::kString || k == Kind::kList || k == Kind::kDict || k == Kind::kUndefined;
  if (name == "sequence") return k == Kind::kString || k == Kind::kList || k == Kind::kDict;
  if (name == "callable") return k == Kind::kCallable;
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (k != Kind::kInt && k != Kind::kBool) in.error(a.line, "test '" + name + "' needs an int");
    int64_t x = v.as_int();
    if (name == "odd") return x % 2 != 0;
    if (name == "even") return x % 2 == 0;
    const Value& d = arg();
    if (d.as_int() == 0) in.error(a.line, "divisibleby 0");
    return x % d.as_int() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg());
  if (name == "ne" || name == "!=") return !equals(v, arg());
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, arg()) < 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, arg()) > 0;
  if (name == "le" || name == "<=") return compare(v, arg()) <= 0;
  if (name == "ge" || name == ">=") return compare(v, arg()) >= 0;
  if (name == "in") {
    const Value& c = arg();
    if (c.is_string()) return v.is_string() && c.str().find(v.str()) != std::string::npos;
    if (c.is_dict()) return v.is_string() && c.find(v.str());
    for (const Value& x : iterate_value(in, c, a.line))
      if (equals(x, v)) return true;
    return false;
  }
  if (name == "sameas") {
    const Value& o = arg();
    if (k != o.kind()) return false;
    if (k == Kind::kNone || k == Kind::kUndefined) return true;
    if (k == Kind::kBool) return v.as_bool() == o.as_bool();
    return equals(v, o) && (k != Kind::kList && k != Kind::kDict);
  }
  if (name == "lower") return v.is_string() && ascii_lower(v.str()) == v.str();
  if (name == "upper") return v.is_string() && ascii_upper(v.str()) == v.str();
  if (name == "escaped") return false;
  in.error(a.line, "unknown test '" + name + "'");
}

Dict make_globals() {
  Dict g;
  g.emplace_back(
      "range", Value::callable("range", [](Interpreter& in, CallArgs& a) {
        a.allow(3, {});
        for (const Value& x : a.pos) {
          if (x.kind() != Kind::kInt && x.kind() != Kind::kBool)
            in.error(a.line, "range() takes integers");
        }
        int64_t start = 0, stop = 0, step = 1;
        if (a.pos.size() == 1)
          stop = a.pos[0].as_int();
        else if (a.pos.size() >= 2) {
          start = a.pos[0].as_int();
          stop = a.pos[1].as_int();
          if (a.pos.size() == 3) step = a.pos[2].as_int();
        } else {
          in.error(a.line, "range() takes 1 to 3 arguments");
        }
        if (step == 0) in.error(a.line, "range() step must not be zero");
        // Size first, in floating point, so huge ranges fail before allocating.
        double count = std::max(0.0, std::ceil((static_cast<double>(stop) - start) / step));
        in.check_items(count > 1e18 ? in.limits().max_items + 1 : static_cast<size_t>(count),
                       a.line);
        List out;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
        return Value::list(std::move(out));
      }));
  auto make_dict = [](Interpreter& in, CallArgs& a, bool ns) {
    Dict d;
    if (!a.pos.empty()) {
      if (a.pos.size() > 1 || !a.pos[0].is_dict()) in.error(a.line, a.what + " takes one mapping");
      d = a.pos[0].entries();
    }
    for (auto& [k, v] : a.kw) {
      if (ns && !k.empty() && k[0] == '_') {
        in.error(a.line, "cannot store underscore-prefixed attribute '" + k + "' on a namespace");
      }
      bool found = false;
      for (auto& [dk, dv] : d) {
        if (dk == k) {
          dv = v;
          found = true;
        }
      }
      if (!found) d.emplace_back(k, v);
    }
    if (!ns) return Value::dict(std::move(d));
    Value v = Value::make_namespace(std::move(d));
    in.track_namespace(v);
    return v;
  };
  g.emplace_back("namespace",
                 Value::callable("namespace", [make_dict](Interpreter& in, CallArgs& a) {
                   return make_dict(in, a, true);
                 }));
  g.emplace_back("dict", Value::callable("dict", [make_dict](Interpreter& in, CallArgs& a) {
                   return make_dict(in, a, false);
                 }));
  g.emplace_back(
      "raise_exception", Value::callable("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
        throw Error("chat template raised: " + (a.pos.empty() ? std::string() : a.pos[0].to_str()));
      }));
  g.emplace_back("strftime_now", Value::callable("strftime_now", [](Interpreter& in, CallArgs& a) {
                   a.allow(1, {});
                   const std::string& f = need_str(in, a.get(0, "format"), a, "format");
                   if (f.size() > 256)
                     in.error(a.line, "strftime_now: format longer than 256 bytes");
                   std::time_t t = std::time(nullptr);
                   std::tm tm{};
                   localtime_r(&t, &tm);
                   char buf[4096];
                   size_t n = std::strftime(buf, sizeof(buf), f.c_str(), &tm);
                   return Value(std::string(buf, n));
                 }));
  return g;
}

}  // namespace lowbit::tokenizer::jinja
