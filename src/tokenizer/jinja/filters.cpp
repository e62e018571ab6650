// Jinja filters (jinja2.filters semantics; tojson is transformers' override: json.dumps with
// ensure_ascii=False and optional indent/separators/sort_keys).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"

namespace lowbit::tokenizer::jinja {
namespace {

std::string upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = c - 'a' + 'A';
  return s;
}
std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = c - 'A' + 'a';
  return s;
}
bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// attribute="a.b" or "0" path lookups used by map/selectattr/sort/...
Value attr_path(Interpreter& in, const Value& v, const std::string& path, int line) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur.is_list() && !part.empty() &&
        part.find_first_not_of("0123456789") == std::string::npos) {
      size_t i = std::stoul(part.substr(0, 9));
      cur = i < cur.items().size() ? cur.items()[i] : Value::undefined(part);
    } else if (cur.is_dict() || cur.kind() == Kind::kNamespace) {
      const Value* x = cur.find(part);
      cur = x ? *x : Value::undefined(part);
    } else {
      cur = cur.is_undefined() ? cur : get_attr(in, cur, part, line);
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Python-style "%s %d" formatting for the `format` filter.
std::string percent_format(Interpreter& in, const std::string& f, const CallArgs& a) {
  std::string out;
  size_t idx = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out += f[i];
      continue;
    }
    if (++i >= f.size()) in.error(a.line, "format: incomplete format");
    char c = f[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (idx >= a.pos.size()) in.error(a.line, "format: not enough arguments for format string");
    const Value& v = a.pos[idx++];
    if (c == 's')
      out += v.to_str();
    else if (c == 'r')
      out += v.repr();
    else if (c == 'd' || c == 'i') {
      if (!v.is_number()) in.error(a.line, "format: %d needs a number");
      out += std::to_string(v.kind() == Kind::kFloat ? static_cast<int64_t>(v.as_float())
                                                     : v.as_int());
    } else {
      in.error(a.line, std::string("format: unsupported conversion %") + c);
    }
    in.check_string_size(out.size(), a.line);
  }
  return out;
}

bool run_test(Interpreter& in, const Value& item, const CallArgs& a, size_t first_arg) {
  if (a.pos.size() <= first_arg) return item.truthy();
  if (!a.pos[first_arg].is_string()) in.error(a.line, a.what + ": test name must be a string");
  CallArgs t;
  t.line = a.line;
  t.what = "test '" + a.pos[first_arg].str() + "'";
  t.pos.assign(a.pos.begin() + first_arg + 1, a.pos.end());
  return apply_test(in, a.pos[first_arg].str(), item, t);
}

std::string json_ensure_ascii(const std::string& s) {
  std::string out;
  for (char32_t c : utf8_decode(s)) {
    if (c < 0x80) {
      out += static_cast<char>(c);
      continue;
    }
    auto esc = [&](unsigned u) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", u);
      out += b;
    };
    if (c >= 0x10000) {
      c -= 0x10000;
      esc(0xd800 + (c >> 10));
      esc(0xdc00 + (c & 0x3ff));
    } else {
      esc(c);
    }
  }
  return out;
}

Value sort_key(Interpreter& in, const Value& v, const Value* attr, bool case_sensitive, int line) {
  Value k = attr && attr->is_string() ? attr_path(in, v, attr->str(), line) : v;
  if (!case_sensitive && k.is_string()) return Value(lower(k.str()));
  return k;
}

}  // namespace

Value apply_filter(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  const int line = a.line;
  if (name == "default" || name == "d") {
    a.allow(2, {"default_value", "boolean"});
    const Value* def = a.get(0, "default_value");
    const Value* boolean = a.get(1, "boolean");
    bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    if (use_default) return def ? *def : Value(std::string());
    return v;
  }
  if (name == "safe" || name == "string") {
    a.allow(0, {});
    return v.is_string() ? v : Value(v.to_str());
  }
  if (name == "trim") {
    a.allow(1, {"chars"});
    return Value(py_strip(v.to_str(), a.get(0, "chars"), true, true));
  }
  if (name == "upper") return Value(upper(v.to_str()));
  if (name == "lower") return Value(lower(v.to_str()));
  if (name == "capitalize") {
    std::string s = lower(v.to_str());
    if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = s[0] - 'a' + 'A';
    return Value(s);
  }
  if (name == "title") {
    std::string s = v.to_str();
    bool prev = false;
    for (char& c : s) {
      if (alpha(c)) c = prev ? lower(std::string(1, c))[0] : upper(std::string(1, c))[0];
      prev = alpha(c);
    }
    return Value(s);
  }
  if (name == "length" || name == "count") {
    switch (v.kind()) {
      case Kind::kUndefined:
        return Value(int64_t{0});
      case Kind::kString:
        return Value(static_cast<int64_t>(utf8_length(v.str())));
      case Kind::kList:
        return Value(static_cast<int64_t>(v.items().size()));
      case Kind::kDict:
        return Value(static_cast<int64_t>(v.entries().size()));
      default:
        in.error(line, "object of type '" + v.type_name() + "' has no len()");
    }
  }
  if (name == "tojson") {
    a.allow(1, {"indent", "ensure_ascii", "separators", "sort_keys"});
    const Value* indent = a.get(0, "indent");
    const Value* ensure_ascii = a.get(1000, "ensure_ascii");
    const Value* seps = a.get(1000, "separators");
    const Value* sort_keys = a.get(1000, "sort_keys");
    int ind = -1;
    if (indent && !indent->is_none()) {
      if (indent->is_string()) in.error(line, "tojson: string indents are not supported");
      ind = static_cast<int>(std::clamp<int64_t>(indent->as_int(), 0, 64));
    }
    std::string item_sep = ind >= 0 ? "," : ", ", key_sep = ": ";
    if (seps && !seps->is_none()) {
      if (!seps->is_list() || seps->items().size() != 2 || !seps->items()[0].is_string() ||
          !seps->items()[1].is_string()) {
        in.error(line, "tojson: separators must be a pair of strings");
      }
      item_sep = seps->items()[0].str();
      key_sep = seps->items()[1].str();
    }
    std::string out = to_json(v, ind, item_sep, key_sep, sort_keys && sort_keys->truthy());
    if (ensure_ascii && ensure_ascii->truthy()) out = json_ensure_ascii(out);
    in.check_string_size(out.size(), line);
    return Value(std::move(out));
  }
  if (name == "join") {
    a.allow(2, {"d", "attribute"});
    const Value* sep = a.get(0, "d");
    const Value* attr = a.get(1, "attribute");
    std::string s = sep ? sep->to_str() : "", out;
    bool first = true;
    for (const Value& x : iterate_value(in, v, line)) {
      if (!first) out += s;
      first = false;
      out += (attr ? attr_path(in, x, attr->to_str(), line) : x).to_str();
      in.check_string_size(out.size(), line);
    }
    return Value(std::move(out));
  }
  if (name == "first" || name == "last") {
    List items = iterate_value(in, v, line);
    if (items.empty()) return Value::undefined(name);
    return name == "first" ? items.front() : items.back();
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) in.error(line, "filter 'items' needs a mapping, got '" + v.type_name() + "'");
    List out;
    for (const auto& [k, x] : v.entries()) out.push_back(Value::list({Value(k), x}, true));
    return Value::list(std::move(out));
  }
  if (name == "list") return Value::list(iterate_value(in, v, line));
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.str());
      std::reverse(u.begin(), u.end());
      return Value(utf8_encode(u));
    }
    List items = iterate_value(in, v, line);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "int" || name == "float") {
    a.allow(2, {"default", "base"});
    const Value* def = a.get(0, "default");
    bool want_int = name == "int";
    Value fallback = def ? *def : (want_int ? Value(int64_t{0}) : Value(0.0));
    if (v.is_number()) {
      return want_int
                 ? Value(v.kind() == Kind::kFloat ? static_cast<int64_t>(v.as_float()) : v.as_int())
                 : Value(v.as_float());
    }
    if (!v.is_string()) return fallback;
    std::string s = py_strip(v.str(), nullptr, true, true);
    if (s.empty()) return fallback;
    char* end = nullptr;
    errno = 0;
    if (want_int) {
      long long x = std::strtoll(s.c_str(), &end, 10);
      if (errno == 0 && *end == 0) return Value(static_cast<int64_t>(x));
    }
    errno = 0;
    double d = std::strtod(s.c_str(), &end);
    if (*end != 0 || errno != 0 || std::isnan(d) || std::isinf(d)) return fallback;
    if (want_int) return Value(static_cast<int64_t>(d));
    return Value(d);
  }
  if (name == "abs") {
    if (!v.is_number()) in.error(line, "filter 'abs' needs a number");
    if (v.kind() == Kind::kFloat) return Value(std::fabs(v.as_float()));
    if (v.as_int() == INT64_MIN) in.error(line, "integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (name == "round") {
    a.allow(2, {"precision", "method"});
    const Value* p = a.get(0, "precision");
    const Value* m = a.get(1, "method");
    std::string method = m ? m->to_str() : "common";
    int prec = p ? static_cast<int>(std::clamp<int64_t>(p->as_int(), -300, 300)) : 0;
    if (!v.is_number()) in.error(line, "filter 'round' needs a number");
    double x = v.as_float(), scale = std::pow(10.0, prec);
    if (method == "common") {
      if (v.kind() != Kind::kFloat) return Value(v.as_int());
      return Value(std::nearbyint(x * scale) / scale);  // Python round(): half to even
    }
    if (method == "floor") return Value(std::floor(x * scale) / scale);
    if (method == "ceil") return Value(std::ceil(x * scale) / scale);
    in.error(line, "round: method must be common, floor or ceil");
  }
  if (name == "replace") {
    a.allow(3, {"old", "new", "count"});
    CallArgs m = a;
    Value method = get_attr(in, Value(v.to_str()), "replace", line);
    return in.call(method, m, line);
  }
  if (name == "format") {
    if (!v.is_string()) in.error(line, "filter 'format' needs a string");
    return Value(percent_format(in, v.str(), a));
  }
  if (name == "escape" || name == "e" || name == "forceescape") {
    std::string out;
    for (char c : v.to_str()) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    in.check_string_size(out.size(), line);
    return Value(std::move(out));
  }
  if (name == "indent") {  // jinja2 3.x do_indent
    a.allow(3, {"width", "first", "blank"});
    const Value* w = a.get(0, "width");
    const Value* first = a.get(1, "first");
    const Value* blank = a.get(2, "blank");
    std::string pad = w && w->is_string()
                          ? w->str()
                          : std::string(w ? std::clamp<int64_t>(w->as_int(), 0, 256) : 4, ' ');
    std::vector<std::string> lines;
    std::string s = v.to_str() + "\n";
    for (size_t start = 0, nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(s.substr(start, nl - start));
    }
    std::string out = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty() || (blank && blank->truthy())) out += pad;
      out += lines[i];
      in.check_string_size(out.size(), line);
    }
    if (first && first->truthy()) out = pad + out;
    return Value(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep = name == "selectattr" || name == "select";
    if (by_attr && (a.pos.empty() || !a.pos[0].is_string())) {
      in.error(line, "filter '" + name + "' needs an attribute name");
    }
    List out;
    for (const Value& x : iterate_value(in, v, line)) {
      in.tick(line);
      Value probe = by_attr ? attr_path(in, x, a.pos[0].str(), line) : x;
      if (run_test(in, probe, a, by_attr ? 1 : 0) == keep) out.push_back(x);
    }
    return Value::list(std::move(out));
  }
  if (name == "map") {
    const Value* attr = a.get(1000, "attribute");
    List out;
    for (const Value& x : iterate_value(in, v, line)) {
      in.tick(line);
      if (attr) {
        Value r = attr_path(in, x, attr->to_str(), line);
        const Value* def = a.get(1000, "default");
        out.push_back(r.is_undefined() && def ? *def : r);
      } else {
        if (a.pos.empty() || !a.pos[0].is_string())
          in.error(line, "map needs a filter name or attribute=");
        CallArgs f;
        f.line = line;
        f.what = "filter '" + a.pos[0].str() + "'";
        f.pos.assign(a.pos.begin() + 1, a.pos.end());
        f.kw = a.kw;
        out.push_back(apply_filter(in, a.pos[0].str(), x, f));
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "unique" || name == "sort" || name == "min" || name == "max" || name == "dictsort") {
    const bool dictsort = name == "dictsort";
    const Value* cs = a.get(dictsort ? 0 : (name == "sort" ? 1 : 0), "case_sensitive");
    const Value* attr =
        a.get(dictsort ? 1000 : (name == "sort" ? 2 : (name == "unique" ? 1 : 1)), "attribute");
    const Value* rev = a.get(name == "sort" ? 0 : (dictsort ? 2 : 1000), "reverse");
    bool case_sensitive = cs && cs->truthy();
    List items;
    if (dictsort) {
      if (!v.is_dict()) in.error(line, "filter 'dictsort' needs a mapping");
      for (const auto& [k, x] : v.entries()) items.push_back(Value::list({Value(k), x}, true));
    } else {
      items = iterate_value(in, v, line);
    }
    std::vector<Value> keys;
    for (const Value& x : items) {
      Value key = dictsort ? x.items()[0] : x;
      keys.push_back(sort_key(in, key, dictsort ? nullptr : attr, case_sensitive, line));
    }
    if (name == "unique") {
      List out;
      std::vector<Value> seen;
      for (size_t i = 0; i < items.size(); ++i) {
        bool dup = false;
        for (const Value& s : seen) dup = dup || equals(s, keys[i]);
        if (!dup) {
          seen.push_back(keys[i]);
          out.push_back(items[i]);
        }
        in.tick(line);
      }
      return Value::list(std::move(out));
    }
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return compare(keys[x], keys[y]) < 0; });
    if (rev && rev->truthy()) {
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t x, size_t y) { return compare(keys[x], keys[y]) > 0; });
    }
    if (name == "min" || name == "max") {
      if (items.empty()) return Value::undefined(name);
      return name == "min" ? items[order.front()] : items[order.back()];
    }
    List out;
    for (size_t i : order) out.push_back(items[i]);
    return Value::list(std::move(out));
  }
  if (name == "sum") {
    const Value* attr = a.get(1000, "attribute");
    const Value* start = a.get(1000, "start");
    Value acc = start ? *start : Value(int64_t{0});
    for (const Value& x : iterate_value(in, v, line)) {
      Value y = attr ? attr_path(in, x, attr->to_str(), line) : x;
      if (!acc.is_number() || !y.is_number()) in.error(line, "sum: items must be numbers");
      if (acc.kind() == Kind::kFloat || y.kind() == Kind::kFloat) {
        acc = Value(acc.as_float() + y.as_float());
      } else {
        int64_t r;
        if (__builtin_add_overflow(acc.as_int(), y.as_int(), &r))
          in.error(line, "integer overflow");
        acc = Value(r);
      }
    }
    return acc;
  }
  if (name == "attr") {
    if (a.pos.empty() || !a.pos[0].is_string()) in.error(line, "attr needs a name");
    return get_attr(in, v, a.pos[0].str(), line);
  }
  if (name == "wordcount") {
    CallArgs none;
    Value sp = get_attr(in, Value(v.to_str()), "split", line);
    return Value(static_cast<int64_t>(in.call(sp, none, line).items().size()));
  }
  in.error(line, "unknown filter '" + name + "'");
}

}  // namespace lowbit::tokenizer::jinja
