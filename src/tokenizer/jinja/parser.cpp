#include "tokenizer/jinja/parser.h"

#include <set>

#include "core/error.h"
#include "tokenizer/jinja/lexer.h"

namespace lowbit::tokenizer::jinja {
namespace {

// Deeply nested input must not overflow the C++ stack (RELIABILITY rule 7).
constexpr int kMaxNesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, &end);
    return b;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxNesting) p->error("template nested deeper than 200 levels");
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  [[noreturn]] void error(const std::string& what) {
    fail("chat template: syntax error: {} at line {}", what, cur().line);
  }
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().kind == Tok::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == Tok::kName && cur().text == n; }
  void expect_op(const char* op) {
    if (!is_op(op)) error(std::string("expected '") + op + "', found " + describe());
    advance();
  }
  std::string describe() const {
    switch (cur().kind) {
      case Tok::kEof:
        return "end of template";
      case Tok::kBlockEnd:
        return "end of tag '%}'";
      case Tok::kVarEnd:
        return "end of print '}}'";
      case Tok::kText:
        return "text";
      default:
        return "'" + cur().text + "'";
    }
  }
  std::string expect_name() {
    if (cur().kind != Tok::kName) error("expected a name, found " + describe());
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().kind != Tok::kBlockEnd) error("expected end of tag '%}', found " + describe());
    advance();
  }

  ExprPtr node(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // Parses statements until a block tag whose keyword is in `ends`; stores the keyword.
  Body parse_body(const std::set<std::string>& ends, std::string* end_found) {
    DepthGuard g(this);
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.kind == Tok::kEof) {
        if (!ends.empty()) {
          error("unexpected end of template, expected '" + *ends.begin() + "'");
        }
        return body;
      }
      if (tk.kind == Tok::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->line = tk.line;
        s->text = tk.text;
        body.push_back(std::move(s));
        advance();
      } else if (tk.kind == Tok::kVarBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = tk.line;
        s->expr = parse_expr();
        if (cur().kind != Tok::kVarEnd) error("expected end of print '}}', found " + describe());
        advance();
        body.push_back(std::move(s));
      } else if (tk.kind == Tok::kBlockBegin) {
        advance();
        if (cur().kind != Tok::kName) error("expected a statement keyword, found " + describe());
        std::string kw = cur().text;
        if (ends.count(kw)) {
          advance();
          *end_found = kw;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        error("unexpected " + describe());
      }
    }
  }

  StmtPtr parse_statement() {
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    std::string kw = expect_name();
    std::string end;
    if (kw == "if") {
      s->kind = StmtKind::kIf;
      ExprPtr cond = parse_expr();
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          cond = parse_expr();
          expect_block_end();
          continue;
        }
        if (end == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, &end);
        }
        expect_block_end();
        break;
      }
    } else if (kw == "for") {
      s->kind = StmtKind::kFor;
      s->names.push_back(expect_name());
      while (is_op(",")) {
        advance();
        s->names.push_back(expect_name());
      }
      if (!is_name("in")) error("expected 'in' in for loop, found " + describe());
      advance();
      s->expr = parse_or_cond(/*allow_cond=*/false);
      if (is_name("if")) {
        advance();
        s->expr2 = parse_expr();
      }
      if (is_name("recursive")) error("recursive for loops are not supported");
      expect_block_end();
      s->body = parse_body({"else", "endfor"}, &end);
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &end);
      }
      expect_block_end();
    } else if (kw == "set") {
      std::string first = expect_name();
      if (is_op(".")) {
        advance();
        s->kind = StmtKind::kSet;
        s->names.push_back(first);
        s->attr = expect_name();
        expect_op("=");
        s->expr = parse_tuple_expr();
        expect_block_end();
      } else {
        s->names.push_back(first);
        while (is_op(",")) {
          advance();
          s->names.push_back(expect_name());
        }
        if (is_op("=")) {
          advance();
          s->kind = StmtKind::kSet;
          s->expr = parse_tuple_expr();
          expect_block_end();
        } else {
          if (s->names.size() != 1) error("block set takes one name");
          s->kind = StmtKind::kBlockSet;
          if (is_op("|")) s->expr2 = parse_filter_chain();
          expect_block_end();
          s->body = parse_body({"endset"}, &end);
          expect_block_end();
        }
      }
    } else if (kw == "macro") {
      s->kind = StmtKind::kMacro;
      s->names.push_back(expect_name());
      parse_params(s.get());
      expect_block_end();
      s->body = parse_body({"endmacro"}, &end);
      expect_block_end();
    } else if (kw == "call") {
      s->kind = StmtKind::kCallBlock;
      if (is_op("(")) error("call block parameters are not supported");
      s->expr = parse_expr();
      if (s->expr->kind != ExprKind::kCall) error("expected a macro call after 'call'");
      expect_block_end();
      s->body = parse_body({"endcall"}, &end);
      expect_block_end();
    } else if (kw == "filter") {
      s->kind = StmtKind::kFilterBlock;
      s->expr2 = parse_filter_chain(/*leading_pipe=*/false);
      expect_block_end();
      s->body = parse_body({"endfilter"}, &end);
      expect_block_end();
    } else if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      expect_block_end();
    } else if (kw == "generation") {
      // transformers' AssistantTracker extension: renders its body unchanged.
      s->kind = StmtKind::kBody;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
    } else {
      --pos_;
      error("unknown or unsupported statement '" + kw + "'");
    }
    return s;
  }

  void parse_params(Stmt* s) {
    expect_op("(");
    while (!is_op(")")) {
      std::string n = expect_name();
      ExprPtr def;
      if (is_op("=")) {
        advance();
        def = parse_expr();
      }
      s->params.emplace_back(n, std::move(def));
      if (!is_op(",")) break;
      advance();
    }
    expect_op(")");
  }

  // `| f1(args) | f2` applied to the block body (named kBodyVar).
  ExprPtr parse_filter_chain(bool leading_pipe = true) {
    auto base = node(ExprKind::kName, cur().line);
    base->name = kBodyVar;
    ExprPtr e = std::move(base);
    bool first = true;
    while (is_op("|") || (first && !leading_pipe)) {
      if (is_op("|")) advance();
      first = false;
      e = parse_filter(std::move(e));
    }
    return e;
  }

  // `a, b` without parentheses makes a tuple (set statements).
  ExprPtr parse_tuple_expr() {
    int line = cur().line;
    ExprPtr e = parse_expr();
    if (!is_op(",")) return e;
    auto t = node(ExprKind::kTuple, line);
    t->args.push_back(std::move(e));
    while (is_op(",")) {
      advance();
      t->args.push_back(parse_expr());
    }
    return t;
  }

  ExprPtr parse_expr() { return parse_or_cond(true); }

  ExprPtr parse_or_cond(bool allow_cond) {
    DepthGuard g(this);
    ExprPtr e = parse_or();
    while (allow_cond && is_name("if")) {
      auto c = node(ExprKind::kCond, cur().line);
      advance();
      c->args.push_back(parse_or());  // condition
      c->args.push_back(std::move(e));
      if (is_name("else")) {
        advance();
        c->args.push_back(parse_or_cond(true));
      } else {
        c->args.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, int line) {
    auto b = node(ExprKind::kBinary, line);
    b->name = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      int line = cur().line;
      advance();
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      int line = cur().line;
      advance();
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(this);
      auto u = node(ExprKind::kUnary, cur().line);
      advance();
      u->name = "not";
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      int line = cur().line;
      std::string op;
      if (cur().kind == Tok::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == Tok::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        return e;
      }
      e = binary(op, std::move(e), parse_math1(), line);
    }
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      e = binary(op, std::move(e), parse_concat(), line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      int line = cur().line;
      advance();
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      e = binary(op, std::move(e), parse_pow(), line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      int line = cur().line;
      advance();
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = node(ExprKind::kUnary, cur().line);
      u->name = cur().text;
      advance();
      u->args.push_back(parse_unary(false));
      e = std::move(u);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& tk = cur();
    int line = tk.line;
    switch (tk.kind) {
      case Tok::kName: {
        auto e = node(ExprKind::kLiteral, line);
        const std::string& n = tk.text;
        if (n == "true" || n == "True")
          e->value = Value(true);
        else if (n == "false" || n == "False")
          e->value = Value(false);
        else if (n == "none" || n == "None")
          e->value = Value::none();
        else {
          e->kind = ExprKind::kName;
          e->name = n;
        }
        advance();
        return e;
      }
      case Tok::kString: {
        std::string s;
        while (cur().kind == Tok::kString) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        auto e = node(ExprKind::kLiteral, line);
        e->value = Value(std::move(s));
        return e;
      }
      case Tok::kInt: {
        auto e = node(ExprKind::kLiteral, line);
        e->value = Value(tk.int_value);
        advance();
        return e;
      }
      case Tok::kFloat: {
        auto e = node(ExprKind::kLiteral, line);
        e->value = Value(tk.float_value);
        advance();
        return e;
      }
      case Tok::kOp:
        if (tk.text == "(") {
          advance();
          if (is_op(")")) {
            advance();
            return node(ExprKind::kTuple, line);
          }
          ExprPtr e = parse_expr();
          if (is_op(",")) {
            auto t = node(ExprKind::kTuple, line);
            t->args.push_back(std::move(e));
            while (is_op(",")) {
              advance();
              if (is_op(")")) break;
              t->args.push_back(parse_expr());
            }
            e = std::move(t);
          }
          expect_op(")");
          return e;
        }
        if (tk.text == "[") {
          advance();
          auto l = node(ExprKind::kList, line);
          while (!is_op("]")) {
            l->args.push_back(parse_expr());
            if (!is_op(",")) break;
            advance();
          }
          expect_op("]");
          return l;
        }
        if (tk.text == "{") {
          advance();
          auto d = node(ExprKind::kDict, line);
          while (!is_op("}")) {
            d->args.push_back(parse_expr());
            expect_op(":");
            d->args.push_back(parse_expr());
            if (!is_op(",")) break;
            advance();
          }
          expect_op("}");
          return d;
        }
        break;
      default:
        break;
    }
    error("unexpected " + describe());
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int line = cur().line;
      if (is_op(".")) {
        advance();
        auto a = node(ExprKind::kGetAttr, line);
        if (cur().kind == Tok::kInt) {  // foo.0 is foo[0]
          a->kind = ExprKind::kGetItem;
          a->args.push_back(std::move(e));
          auto idx = node(ExprKind::kLiteral, line);
          idx->value = Value(cur().int_value);
          advance();
          a->args.push_back(std::move(idx));
        } else {
          a->name = expect_name();
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        advance();
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    int n = 0;
    bool slice = false;
    while (true) {
      if (is_op(":")) {
        slice = true;
        if (++n > 2) error("too many ':' in slice");
        advance();
        continue;
      }
      if (is_op("]")) break;
      if (parts[n]) error("expected ':' or ']' in subscript");
      parts[n] = parse_expr();
    }
    expect_op("]");
    auto e = node(slice ? ExprKind::kSlice : ExprKind::kGetItem, line);
    e->args.push_back(std::move(obj));
    if (slice) {
      for (auto& p : parts) e->args.push_back(std::move(p));
    } else {
      if (!parts[0]) error("empty subscript");
      e->args.push_back(std::move(parts[0]));
    }
    return e;
  }

  void parse_args(Expr* e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().kind == Tok::kName && peek().kind == Tok::kOp && peek().text == "=") {
        std::string k = cur().text;
        advance();
        advance();
        e->kwargs.emplace_back(k, parse_expr());
      } else {
        if (!e->kwargs.empty()) error("positional argument after keyword argument");
        e->args.push_back(parse_expr());
      }
      if (!is_op(",")) break;
      advance();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = node(ExprKind::kCall, cur().line);
    c->args.push_back(std::move(callee));
    parse_args(c.get());
    return c;
  }

  ExprPtr parse_filter(ExprPtr base) {
    auto f = node(ExprKind::kFilter, cur().line);
    f->name = expect_name();
    while (is_op(".")) {  // dotted filter names
      advance();
      f->name += "." + expect_name();
    }
    f->args.push_back(std::move(base));
    if (is_op("(")) parse_args(f.get());
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        advance();
        e = parse_filter(std::move(e));
      } else if (is_name("is")) {
        auto t = node(ExprKind::kTest, cur().line);
        advance();
        if (is_name("not")) {
          t->negated = true;
          advance();
        }
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(t.get());
        } else if ((cur().kind == Tok::kString || cur().kind == Tok::kInt ||
                    cur().kind == Tok::kFloat || is_op("[") || is_op("{") ||
                    (cur().kind == Tok::kName && !is_name("else") && !is_name("or") &&
                     !is_name("and") && !is_name("if") && !is_name("in") && !is_name("not") &&
                     !is_name("is") && !is_name("recursive")))) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::string& source) { return Parser(tokenize(source)).parse_all(); }

}  // namespace lowbit::tokenizer::jinja
