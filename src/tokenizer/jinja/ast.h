// Syntax tree of a parsed Jinja template. One node struct per layer (expressions, statements)
// with a kind tag keeps the evaluator a pair of switches.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace lowbit::tokenizer::jinja {

enum class ExprKind {
  kLiteral,  // value
  kName,     // name
  kList,     // args
  kTuple,    // args
  kDict,     // args = k0, v0, k1, v1, ...
  kGetAttr,  // args[0].name
  kGetItem,  // args[0][args[1]]
  kSlice,    // args[0][args[1]:args[2]:args[3]], missing parts are null
  kCall,     // args[0](args[1..], kwargs)
  kFilter,   // args[0] | name(args[1..], kwargs)
  kTest,     // args[0] is [not] name(args[1..])
  kUnary,    // name in {not, -, +}, args[0]
  kBinary,   // name is the operator, args[0], args[1]
  kCond,     // args[1] if args[0] else args[2] (args[2] may be null)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  std::string name;
  Value value;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // branches, else_body
  kFor,          // names (targets), expr (iterable), expr2 (filter, may be null), body, else_body
  kSet,          // names (targets) = expr; or attr set: names[0].attr = expr
  kBlockSet,     // names[0] = rendered body, optionally piped through filter expr2 (arg0 is null)
  kMacro,        // names[0], params, body
  kCallBlock,    // expr is the call; body is the caller() macro
  kFilterBlock,  // expr2 is a filter chain applied to the rendered body
  kBreak,
  kContinue,
  kBody,  // body only (e.g. transformers' {% generation %})
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;
  std::vector<std::string> names;
  std::string attr;
  ExprPtr expr, expr2;
  Body body, else_body;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters with defaults
};

}  // namespace lowbit::tokenizer::jinja
