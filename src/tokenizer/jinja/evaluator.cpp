#include "tokenizer/jinja/evaluator.h"

#include <cmath>
#include <limits>
#include <optional>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/parser.h"

namespace lowbit::tokenizer::jinja {

const Value* CallArgs::get(size_t i, const char* name) const {
  if (i < pos.size()) return &pos[i];
  for (const auto& [k, v] : kw) {
    if (k == name) return &v;
  }
  return nullptr;
}

void CallArgs::allow(size_t max_pos, std::initializer_list<const char*> names) const {
  if (pos.size() > max_pos) {
    fail("chat template: {} takes at most {} positional arguments, got {} at line {}", what,
         max_pos, pos.size(), line);
  }
  for (const auto& [k, v] : kw) {
    bool ok = false;
    for (const char* n : names) ok = ok || k == n;
    if (!ok) fail("chat template: {} got an unexpected argument '{}' at line {}", what, k, line);
  }
}

Value* Frame::find(const std::string& name) {
  for (Frame* f = this; f; f = f->parent.get()) {
    for (auto& [k, v] : f->vars) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Frame::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

Interpreter::Interpreter(const Limits& limits) : limits_(limits) {}

Interpreter::~Interpreter() {
  for (const Value& ns : namespaces_) ns.clear_namespace();
  for (const auto& f : captured_frames_) f->vars.clear();
}

void Interpreter::error(int line, const std::string& what) const {
  fail("chat template: {} at line {}", what, line ? line : line_);
}

void Interpreter::check_string_size(size_t bytes, int line) const {
  if (bytes > limits_.max_output_bytes) {
    error(line, fmt::format("string of {} bytes exceeds the output budget of {} bytes", bytes,
                            limits_.max_output_bytes));
  }
}

void Interpreter::check_items(size_t n, int line) const {
  if (n > limits_.max_items) {
    error(line, fmt::format("container of {} items exceeds the budget of {} items", n,
                            limits_.max_items));
  }
}

void Interpreter::tick(int line) {
  if ((++steps_ & 63) == 0 && std::chrono::steady_clock::now() > deadline_) {
    error(line, fmt::format("rendering exceeded the time budget of {} s", limits_.max_seconds));
  }
}

void Interpreter::count_iterations(int64_t n, int line) {
  iterations_ += n;
  if (iterations_ > limits_.max_loop_iterations) {
    error(line, fmt::format("more than {} loop iterations", limits_.max_loop_iterations));
  }
  tick(line);
}

std::string Interpreter::render(const Body& body, Dict globals) {
  globals_ = std::move(globals);
  frame_ = std::make_shared<Frame>();
  deadline_ = std::chrono::steady_clock::now() +
              std::chrono::microseconds(static_cast<int64_t>(limits_.max_seconds * 1e6));
  std::string out;
  out_ = &out;
  Flow f = exec_body(body);
  if (f != Flow::kNormal) error(line_, "'break' or 'continue' outside of a loop");
  return out;
}

void Interpreter::emit(const std::string& s) {
  if (s.size() > limits_.max_output_bytes - std::min(out_total_, limits_.max_output_bytes)) {
    error(line_, fmt::format("output exceeds the budget of {} bytes", limits_.max_output_bytes));
  }
  out_total_ += s.size();
  out_->append(s);
}

std::string Interpreter::render_block(const Body& body) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  try {
    Flow f = exec_body(body);
    if (f != Flow::kNormal) error(line_, "'break' or 'continue' outside of a loop");
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buf;
}

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const auto& s : body) {
    Flow f = exec(*s);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  line_ = s.line;
  tick(s.line);
  switch (s.kind) {
    case StmtKind::kText:
      emit(s.text);
      break;
    case StmtKind::kOutput:
      emit(eval(*s.expr).to_str());
      break;
    case StmtKind::kIf:
      for (const auto& [cond, body] : s.branches) {
        if (eval(*cond).truthy()) return exec_body(body);
      }
      return exec_body(s.else_body);
    case StmtKind::kFor:
      exec_for(s);
      break;
    case StmtKind::kSet:
      exec_set(s);
      break;
    case StmtKind::kBlockSet: {
      Value v(render_block(s.body));
      if (s.expr2) {
        auto saved = frame_;
        frame_ = std::make_shared<Frame>(Frame{{{kBodyVar, v}}, saved});
        try {
          v = eval(*s.expr2);
        } catch (...) {
          frame_ = saved;
          throw;
        }
        frame_ = saved;
      }
      frame_->set(s.names[0], v);
      break;
    }
    case StmtKind::kFilterBlock: {
      Value body(render_block(s.body));
      auto saved = frame_;
      frame_ = std::make_shared<Frame>(Frame{{{kBodyVar, body}}, saved});
      Value v;
      try {
        v = eval(*s.expr2);
      } catch (...) {
        frame_ = saved;
        throw;
      }
      frame_ = saved;
      emit(v.to_str());
      break;
    }
    case StmtKind::kMacro:
      frame_->set(s.names[0], make_macro(s));
      break;
    case StmtKind::kCallBlock: {
      const Expr& ce = *s.expr;
      Value callee = eval(*ce.args[0]);
      CallArgs args;
      args.line = s.line;
      for (size_t i = 1; i < ce.args.size(); ++i) args.pos.push_back(eval(*ce.args[i]));
      for (const auto& [k, e] : ce.kwargs) args.kw.emplace_back(k, eval(*e));
      auto closure = frame_;
      const Body* body = &s.body;
      args.kw.emplace_back("caller",
                           Value::callable("caller", [closure, body](Interpreter& in, CallArgs&) {
                             auto saved = in.frame_;
                             in.frame_ = std::make_shared<Frame>(Frame{{}, closure});
                             std::string r;
                             try {
                               r = in.render_block(*body);
                             } catch (...) {
                               in.frame_ = saved;
                               throw;
                             }
                             in.frame_ = saved;
                             return Value(std::move(r));
                           }));
      emit(call(callee, args, s.line).to_str());
      break;
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kBody:
      return exec_body(s.body);
  }
  return Flow::kNormal;
}
namespace {

// Items a for loop (or a filter) iterates over: list items, dict keys, str code points.
List iterate(Interpreter& in, const Value& v, int line) {
  switch (v.kind()) {
    case Kind::kUndefined:
      return {};
    case Kind::kList:
      return v.items();
    case Kind::kDict: {
      List keys;
      for (const auto& [k, x] : v.entries()) keys.emplace_back(k);
      return keys;
    }
    case Kind::kString: {
      List chars;
      for (char32_t c : utf8_decode(v.str())) chars.emplace_back(utf8_encode(std::u32string(1, c)));
      return chars;
    }
    default:
      in.error(line, "'" + v.type_name() + "' object is not iterable");
  }
}

[[noreturn]] void undefined_error(Interpreter& in, const Value& v, int line) {
  in.error(line, "'" + (v.undefined_name().empty() ? std::string("value") : v.undefined_name()) +
                     "' is undefined");
}

}  // namespace

List iterate_value(Interpreter& in, const Value& v, int line) { return iterate(in, v, line); }

void Interpreter::exec_for(const Stmt& s) {
  Value seq = eval(*s.expr);
  List items = iterate(*this, seq, s.line);
  auto outer = frame_;
  auto bind = [&](Frame& f, const Value& item) {
    if (s.names.size() == 1) {
      f.set(s.names[0], item);
      return;
    }
    if (!item.is_list() || item.items().size() != s.names.size()) {
      error(s.line, fmt::format("cannot unpack '{}' into {} loop variables", item.type_name(),
                                s.names.size()));
    }
    for (size_t i = 0; i < s.names.size(); ++i) f.set(s.names[i], item.items()[i]);
  };
  if (s.expr2) {  // `for x in xs if cond`: filtered before loop.index/length are computed
    List kept;
    for (const Value& item : items) {
      count_iterations(1, s.line);
      frame_ = std::make_shared<Frame>(Frame{{}, outer});
      try {
        bind(*frame_, item);
        if (eval(*s.expr2).truthy()) kept.push_back(item);
      } catch (...) {
        frame_ = outer;
        throw;
      }
      frame_ = outer;
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  try {
    for (int64_t i = 0; i < n; ++i) {
      count_iterations(1, s.line);
      frame_ = std::make_shared<Frame>(Frame{{}, outer});
      Dict loop = {
          {"index", Value(i + 1)},
          {"index0", Value(i)},
          {"revindex", Value(n - i)},
          {"revindex0", Value(n - i - 1)},
          {"first", Value(i == 0)},
          {"last", Value(i == n - 1)},
          {"length", Value(n)},
          {"depth", Value(int64_t{1})},
          {"depth0", Value(int64_t{0})},
          {"previtem", i > 0 ? items[i - 1] : Value::undefined("loop.previtem")},
          {"nextitem", i + 1 < n ? items[i + 1] : Value::undefined("loop.nextitem")},
      };
      loop.emplace_back("cycle", Value::callable("loop.cycle", [i](Interpreter& in, CallArgs& a) {
                          if (a.pos.empty()) in.error(a.line, "loop.cycle needs an argument");
                          return a.pos[static_cast<size_t>(i) % a.pos.size()];
                        }));
      frame_->set("loop", Value::dict(std::move(loop)));
      bind(*frame_, items[i]);
      Flow f = exec_body(s.body);
      frame_ = outer;
      if (f == Flow::kBreak) break;
    }
    if (n == 0) exec_body(s.else_body);
  } catch (...) {
    frame_ = outer;
    throw;
  }
  frame_ = outer;
}

void Interpreter::exec_set(const Stmt& s) {
  Value v = eval(*s.expr);
  if (!s.attr.empty()) {
    Value* target = frame_->find(s.names[0]);
    if (!target || target->kind() != Kind::kNamespace) {
      error(s.line, "cannot assign attribute '" + s.attr + "' on non-namespace object '" +
                        s.names[0] + "'");
    }
    if (s.attr[0] == '_') {
      error(s.line, "cannot store underscore-prefixed attribute '" + s.attr + "' on a namespace");
    }
    Dict& d = target->ns_entries();
    for (auto& [k, old] : d) {
      if (k == s.attr) {
        old = std::move(v);
        return;
      }
    }
    check_items(d.size() + 1, s.line);
    d.emplace_back(s.attr, std::move(v));
    return;
  }
  if (s.names.size() == 1) {
    frame_->set(s.names[0], std::move(v));
    return;
  }
  if (!v.is_list() || v.items().size() != s.names.size()) {
    error(s.line, fmt::format("cannot unpack into {} names", s.names.size()));
  }
  for (size_t i = 0; i < s.names.size(); ++i) frame_->set(s.names[i], v.items()[i]);
}

Value Interpreter::make_macro(const Stmt& s) {
  auto closure = frame_;
  captured_frames_.push_back(closure);
  const Stmt* def = &s;
  return Value::callable(s.names[0], [closure, def](Interpreter& in, CallArgs& args) {
    if (in.call_depth_ >= in.limits_.max_call_depth) {
      in.error(args.line, fmt::format("macro calls nested deeper than {} (recursion budget)",
                                      in.limits_.max_call_depth));
    }
    auto frame = std::make_shared<Frame>(Frame{{}, closure});
    List varargs;
    for (size_t i = 0; i < args.pos.size(); ++i) {
      if (i < def->params.size())
        frame->set(def->params[i].first, args.pos[i]);
      else
        varargs.push_back(args.pos[i]);
    }
    Dict kwargs;
    for (auto& [k, v] : args.kw) {
      bool is_param = false;
      for (const auto& p : def->params) is_param = is_param || p.first == k;
      if (is_param || k == "caller")
        frame->set(k, v);
      else
        kwargs.emplace_back(k, v);
    }
    frame->set("varargs", Value::list(std::move(varargs)));
    frame->set("kwargs", Value::dict(std::move(kwargs)));
    auto saved = in.frame_;
    in.frame_ = frame;
    ++in.call_depth_;
    std::string r;
    try {
      for (const auto& [name, def_expr] : def->params) {
        bool bound = false;
        for (const auto& [k, v] : frame->vars) bound = bound || k == name;
        if (!bound) frame->set(name, def_expr ? in.eval(*def_expr) : Value::undefined(name));
      }
      r = in.render_block(def->body);
    } catch (...) {
      in.frame_ = saved;
      --in.call_depth_;
      throw;
    }
    in.frame_ = saved;
    --in.call_depth_;
    return Value(std::move(r));
  });
}

Value Interpreter::lookup(const std::string& name) {
  if (Value* v = frame_->find(name)) return *v;
  for (const auto& [k, v] : globals_) {
    if (k == name) return v;
  }
  return Value::undefined(name);
}

Value Interpreter::call(const Value& callee, CallArgs& args, int line) {
  if (callee.is_undefined()) undefined_error(*this, callee, line);
  if (callee.kind() != Kind::kCallable) error(line, "'" + callee.type_name() + "' is not callable");
  tick(line);
  args.line = line;
  if (args.what.empty()) args.what = "'" + callee.fn().name + "'";
  return callee.fn().fn(*this, args);
}

Value Interpreter::subscript(const Value& obj, const Value& key, int line) {
  switch (obj.kind()) {
    case Kind::kUndefined:
      return Value::undefined(obj.undefined_name());
    case Kind::kDict:
    case Kind::kNamespace:
      if (key.is_string()) {
        if (const Value* v = obj.find(key.str())) return *v;
        return get_attr(*this, obj, key.str(), line);
      }
      return Value::undefined();
    case Kind::kList:
    case Kind::kString:
      if (key.kind() == Kind::kInt || key.kind() == Kind::kBool) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          int64_t n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value::undefined("index " + std::to_string(key.as_int()));
          return obj.items()[i];
        }
        std::u32string u = utf8_decode(obj.str());
        int64_t n = static_cast<int64_t>(u.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("index " + std::to_string(key.as_int()));
        return Value(utf8_encode(std::u32string(1, u[i])));
      }
      if (key.is_string()) return get_attr(*this, obj, key.str(), line);
      return Value::undefined();
    default:
      if (key.is_string()) return get_attr(*this, obj, key.str(), line);
      return Value::undefined();
  }
}

Value Interpreter::slice(const Value& obj, const Expr& e) {
  if (obj.is_undefined()) return obj;
  if (!obj.is_list() && !obj.is_string())
    error(e.line, "'" + obj.type_name() + "' is not sliceable");
  auto part = [&](int k) -> std::optional<int64_t> {
    if (!e.args[k]) return std::nullopt;
    Value v = eval(*e.args[k]);
    if (v.is_none()) return std::nullopt;
    if (v.kind() != Kind::kInt && v.kind() != Kind::kBool)
      error(e.line, "slice indices must be integers");
    return v.as_int();
  };
  auto start = part(1), stop = part(2), step_opt = part(3);
  int64_t step = step_opt.value_or(1);
  if (step == 0) error(e.line, "slice step cannot be zero");
  std::u32string u;
  int64_t n;
  if (obj.is_list()) {
    n = static_cast<int64_t>(obj.items().size());
  } else {
    u = utf8_decode(obj.str());
    n = static_cast<int64_t>(u.size());
  }
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t lo = adjust(start, step < 0 ? n - 1 : 0);
  int64_t hi = adjust(stop, step < 0 ? -1 : n);
  List out_list;
  std::u32string out_str;
  for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
    if (obj.is_list())
      out_list.push_back(obj.items()[i]);
    else
      out_str += u[i];
  }
  if (obj.is_list()) return Value::list(std::move(out_list), obj.is_tuple());
  return Value(utf8_encode(out_str));
}

Value Interpreter::eval(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.value;
    case ExprKind::kName:
      return lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      List l;
      for (const auto& a : e.args) l.push_back(eval(*a));
      return Value::list(std::move(l), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        if (!k.is_string()) error(e.line, "dict keys must be strings, got '" + k.type_name() + "'");
        Value v = eval(*e.args[i + 1]);
        bool replaced = false;
        for (auto& [ok, ov] : d) {
          if (ok == k.str()) {
            ov = v;
            replaced = true;
          }
        }
        if (!replaced) d.emplace_back(k.str(), std::move(v));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::kGetAttr: {
      Value obj = eval(*e.args[0]);
      // Deliberately lenient: an attribute of Undefined is Undefined (jinja2 would raise), so
      // `a.b is defined` works when `a` is missing.
      if (obj.is_undefined()) return Value::undefined(e.name);
      return get_attr(*this, obj, e.name, e.line);
    }
    case ExprKind::kGetItem:
      return subscript(eval(*e.args[0]), eval(*e.args[1]), e.line);
    case ExprKind::kSlice:
      return slice(eval(*e.args[0]), e);
    case ExprKind::kCall:
      return eval_call(e);
    case ExprKind::kFilter:
    case ExprKind::kTest: {
      Value base = eval(*e.args[0]);
      CallArgs args;
      args.line = e.line;
      args.what = (e.kind == ExprKind::kFilter ? "filter '" : "test '") + e.name + "'";
      for (size_t i = 1; i < e.args.size(); ++i) args.pos.push_back(eval(*e.args[i]));
      for (const auto& [k, x] : e.kwargs) args.kw.emplace_back(k, eval(*x));
      tick(e.line);
      if (e.kind == ExprKind::kFilter) return apply_filter(*this, e.name, base, args);
      return Value(apply_test(*this, e.name, base, args) != e.negated);
    }
    case ExprKind::kUnary: {
      Value v = eval(*e.args[0]);
      if (e.name == "not") return Value(!v.truthy());
      if (v.is_undefined()) undefined_error(*this, v, e.line);
      if (!v.is_number())
        error(e.line, "bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.kind() == Kind::kFloat ? v : Value(v.as_int());
      if (v.kind() == Kind::kFloat) return Value(-v.as_float());
      if (v.as_int() == std::numeric_limits<int64_t>::min()) error(e.line, "integer overflow");
      return Value(-v.as_int());
    }
    case ExprKind::kBinary:
      return eval_binary(e);
    case ExprKind::kCond:
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined();
  }
  return Value();
}

Value Interpreter::eval_call(const Expr& e) {
  Value callee = eval(*e.args[0]);
  CallArgs args;
  for (size_t i = 1; i < e.args.size(); ++i) args.pos.push_back(eval(*e.args[i]));
  for (const auto& [k, x] : e.kwargs) args.kw.emplace_back(k, eval(*x));
  return call(callee, args, e.line);
}

}  // namespace lowbit::tokenizer::jinja
