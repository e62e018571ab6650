// Tree-walking evaluator with the sandbox budgets of RELIABILITY.md rule 7. Every loop
// iteration, macro call and statement ticks a step counter that checks the wall-clock budget;
// every append to the output and every string/list that an operator builds is size-checked
// before it is allocated.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace lowbit::tokenizer::jinja {

using Limits = ChatTemplateLimits;

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  int line = 0;
  std::string what;  // "filter 'join'" etc. for messages

  // Positional i, else keyword `name`, else nullptr.
  const Value* get(size_t i, const char* name) const;
  // Throws when arguments other than those named are present.
  void allow(size_t max_pos, std::initializer_list<const char*> names) const;
};

struct Frame {
  Dict vars;
  std::shared_ptr<Frame> parent;
  Value* find(const std::string& name);
  void set(const std::string& name, Value v);
};

class Interpreter {
 public:
  explicit Interpreter(const Limits& limits);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Body& body, Dict globals);

  const Limits& limits() const { return limits_; }
  [[noreturn]] void error(int line, const std::string& what) const;
  // Budget checks, called before allocating.
  void check_string_size(size_t bytes, int line) const;
  void check_items(size_t n, int line) const;
  void tick(int line);
  void count_iterations(int64_t n, int line);
  int current_line() const { return line_; }

  Value call(const Value& callee, CallArgs& args, int line);
  // Namespaces and frames captured by macros can form reference cycles (a macro stored in the
  // frame it closes over, `ns.self = ns`); they are tracked and cleared when the render ends.
  void track_namespace(const Value& ns) { namespaces_.push_back(ns); }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& s);
  void exec_for(const Stmt& s);
  void exec_set(const Stmt& s);
  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_call(const Expr& e);
  Value lookup(const std::string& name);
  void emit(const std::string& s);
  Value make_macro(const Stmt& s);
  std::string render_block(const Body& body);
  Value subscript(const Value& obj, const Value& key, int line);
  Value slice(const Value& obj, const Expr& e);

  Limits limits_;
  Dict globals_;
  std::shared_ptr<Frame> frame_;
  std::string* out_ = nullptr;
  size_t out_total_ = 0;
  int64_t iterations_ = 0;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  int line_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<Value> namespaces_;
  std::vector<std::shared_ptr<Frame>> captured_frames_;
};

// Items a for loop or filter iterates over: list items, dict keys, str code points, nothing for
// Undefined; throws for other kinds.
List iterate_value(Interpreter& in, const Value& v, int line);

}  // namespace lowbit::tokenizer::jinja
