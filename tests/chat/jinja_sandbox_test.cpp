// Sandbox budgets and error reporting of the chat-template interpreter (RELIABILITY rule 7):
// hostile templates must fail fast with a lowbit::Error, never hang, crash or exhaust memory.
#include <gtest/gtest.h>

#include <chrono>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace lowbit::tokenizer {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& src, ordered_json vars = ordered_json::object(),
                   const ChatTemplateLimits& limits = {}) {
  return render_chat_template_json(src, vars, limits);
}

// Renders `src`, expects a lowbit::Error whose message contains `needle`, and returns the time.
double expect_error(const std::string& src, const std::string& needle,
                    const ChatTemplateLimits& limits = {}) {
  auto t0 = std::chrono::steady_clock::now();
  try {
    render(src, ordered_json::object(), limits);
    ADD_FAILURE() << "no error for: " << src;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(JinjaSandbox, RaiseExceptionMessage) {
  try {
    render("{{ raise_exception('Conversation roles must alternate') }}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "chat template raised: Conversation roles must alternate");
  }
}

TEST(JinjaSandbox, SyntaxErrorsNameTheLine) {
  expect_error("line1\n{% if x %}\nok\n{% endfor %}", "at line 4");
  expect_error("a\nb\n{{ 1 + }}", "at line 3");
  expect_error("{% for x in y %}\n\n", "syntax error");
  expect_error("{{ 'unterminated }}", "unterminated string");
  expect_error("{# never closed", "unclosed comment");
  expect_error("{{ x ", "unclosed");
  expect_error("{% include 'other.jinja' %}", "unsupported statement 'include'");
  expect_error("x\n{{ a | nofilter }}", "unknown filter 'nofilter' at line 2");
  expect_error("{{ a is notatest }}", "unknown test 'notatest'");
  expect_error("{{ (1 }}", "unexpected '}'");
  expect_error("{{ (1 %}", "unclosed '{{'");
  expect_error("{% for x y %}", "expected 'in'");
  expect_error("{{ 1 ]] }}", "unexpected");
}

TEST(JinjaSandbox, RuntimeErrors) {
  expect_error("{{ 'a' + 1 }}", "unsupported operand");
  expect_error("{{ missing + 1 }}", "'missing' is undefined");
  expect_error("{{ 1 // 0 }}", "division");
  expect_error("{{ 9223372036854775807 + 1 }}", "integer overflow");
  expect_error("{% set x = 1 %}{% set x.a = 2 %}", "non-namespace");
  expect_error("{{ none|length }}", "no len()");
  expect_error("{% for x in 5 %}{% endfor %}", "not iterable");
  expect_error("{{ {1: 2} }}", "dict keys must be strings");
  expect_error("{{ [1]|tojson }}{{ x|tojson }}", "not JSON serializable");
  expect_error("{% break %}", "outside of a loop");
}

TEST(JinjaSandbox, UndefinedIsLenient) {
  // Deliberate, documented deviation: jinja2 raises on `a.b` when `a` is undefined.
  EXPECT_EQ(render("[{{ a.b }}]{{ a.b is defined }}{{ a['x'].y is undefined }}"), "[]FalseTrue");
  EXPECT_EQ(render("{{ m.content is string }}", {{"m", {{"content", "x"}}}}), "True");
  EXPECT_EQ(render("{{ m.__class__ }}|{{ m._x }}|{{ 'x'.__len__ }}", {{"m", {{"_x", 1}}}}), "||");
}

TEST(JinjaSandbox, NestedLoopsHitIterationBudget) {
  ChatTemplateLimits lim;
  lim.max_loop_iterations = 200'000;
  lim.max_seconds = 60;
  double s = expect_error(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
      "{% endfor %}{% endfor %}{% endfor %}",
      "more than 200000 loop iterations", lim);
  EXPECT_LT(s, 5.0);
  // With default limits it stops too (iteration or time budget, whichever comes first).
  s = expect_error(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
      "{% endfor %}{% endfor %}{% endfor %}",
      "chat template: ");
  EXPECT_LT(s, 5.0);
  ChatTemplateLimits small;
  small.max_loop_iterations = 100;
  expect_error("{% for a in range(20) %}{% for b in range(20) %}{% endfor %}{% endfor %}",
               "more than 100 loop iterations", small);
  // Filtered loops count the items they look at.
  expect_error("{% for a in range(200) if a > 1000 %}{% endfor %}", "loop iterations", small);
}

TEST(JinjaSandbox, RecursionHitsDepthBudget) {
  double s =
      expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion budget");
  EXPECT_LT(s, 5.0);
  // Mutual recursion through caller() also counts.
  expect_error(
      "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
      "recursion budget");
  ChatTemplateLimits lim;
  lim.max_call_depth = 5;
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ n }}{% endif %}{% endmacro %}"
                   "{{ f(4) }}",
                   ordered_json::object(), lim),
            "1234");
  expect_error("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(6) }}",
               "deeper than 5", lim);
}

TEST(JinjaSandbox, DeepSyntaxNestingIsRefused) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  expect_error(deep, "nested deeper");
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  expect_error(ifs, "nested deeper");
  std::string nots = "{{ " + std::string(0, ' ');
  for (int i = 0; i < 5000; ++i) nots += "not ";
  expect_error(nots + "x }}", "nested deeper");
}

TEST(JinjaSandbox, HugeOutputHitsOutputBudget) {
  double s = expect_error(
      "{% for a in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 1000 }}"
      "{% endfor %}",
      "output");
  EXPECT_LT(s, 5.0);
  // A single giant string is refused before it is allocated.
  expect_error("{{ 'x' * 9000000000000000000 }}", "budget");
  expect_error("{{ ['x'] * 9000000000000000000 }}", "budget");
  expect_error(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s"
      " %}{% endfor %}",
      "budget");
  expect_error("{{ range(9000000000000000000)|length }}", "budget");
  expect_error("{{ range(300000)|length }}", "budget");
  ChatTemplateLimits lim;
  lim.max_output_bytes = 10;
  EXPECT_EQ(render("0123456789", ordered_json::object(), lim), "0123456789");
  expect_error("0123456789{{ 'x' }}", "output exceeds the budget of 10 bytes", lim);
}

TEST(JinjaSandbox, TimeBudget) {
  ChatTemplateLimits lim;
  lim.max_seconds = 0.2;
  lim.max_loop_iterations = int64_t{1} << 40;
  // Sorting lists in a loop keeps each iteration cheap but the whole render long.
  double s = expect_error(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
      "{{ [3, 2, 1]|sort|first }}{% endfor %}{% endfor %}{% endfor %}",
      "time budget", lim);
  EXPECT_LT(s, 2.0);
}

TEST(JinjaSandbox, SelfReferencesDoNotLeakOrOverflow) {
  // A namespace holding itself and a macro closing over its own frame form reference cycles;
  // the interpreter breaks them after the render (LeakSanitizer checks this under ASan).
  expect_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", "nested deeper");
  EXPECT_EQ(render("{% set ns = namespace(a=[]) %}{% set ns.b = [ns] %}{{ ns.b|length }}"
                   "{% macro m() %}M{% endmacro %}{% set ns.m = m %}{{ ns.m() }}"),
            "1M");
}

TEST(JinjaSandbox, WhitespaceControlAndNewlines) {
  // \r\n is normalized and one trailing newline dropped, as jinja2 does.
  EXPECT_EQ(render("a\r\nb\r\n"), "a\nb");
  EXPECT_EQ(render("a\n\n"), "a\n");
  EXPECT_EQ(render("  {%- if true %}x{% endif %}\n"), "x");
  EXPECT_EQ(render("{% if true %}\nx\n{% endif %}\ny"), "x\ny");
  EXPECT_EQ(render("  {{ 'v' }}  "), "  v  ");
}

TEST(JinjaSandbox, StructApiDefaults) {
  ChatTemplateInputs in;
  in.messages = {{"user", "hi"}};
  in.add_generation_prompt = false;
  EXPECT_EQ(render_chat_template("{{ messages[0].content }}|{{ tools }}|{{ add_generation_prompt }}"
                                 "|{{ bos_token is defined }}",
                                 in),
            "hi|None|False|False");
  in.bos_token = "<s>";
  in.extra["date_string"] = "26 Jul 2024";
  EXPECT_EQ(render_chat_template("{{ bos_token }}{{ date_string }}", in), "<s>26 Jul 2024");
}

TEST(JinjaSandbox, StrftimeNowAndReasoningAlias) {
  std::string year = render("{{ strftime_now('%Y') }}");
  EXPECT_EQ(year.size(), 4u);
  ordered_json vars = {
      {"messages",
       ordered_json::array({{{"role", "assistant"}, {"content", "c"}, {"thinking", "t"}}})}};
  EXPECT_EQ(render("{{ messages[0].reasoning_content }}{{ messages[0]|tojson }}", vars),
            "t{\"thinking\": \"t\", \"role\": \"assistant\", \"content\": \"c\", "
            "\"reasoning_content\": \"t\"}");
}

}  // namespace
}  // namespace lowbit::tokenizer

namespace lowbit::tokenizer {
namespace {

// Mutated real templates (byte flips, deletions, duplications) must either render or throw
// lowbit::Error: never crash, hang or throw anything else.
TEST(JinjaSandbox, MutatedTemplatesFailCleanly) {
  const std::string base =
      "{%- set ns = namespace(i=0) %}{% for m in messages[::-1] if m.role != 'x' %}"
      "{%- set ns.i = ns.i + 1 %}{% if m.content is string and m.content.startswith('<') %}"
      "{{ m.content.split('>')[-1].strip() | tojson(indent=2) }}{% elif not loop.last %}"
      "{{ '<|im_start|>' + m['role'] ~ loop.index0 }}{% else %}{{ (m.content|trim)[1:3] }}"
      "{% endif %}{% endfor %}{% macro f(a, b=2) %}{{ a * b }}{% endmacro %}{{ f(ns.i) }}"
      "{# c #}{{ {'k': [1, 2.5, none, true]}|items|list }}{{ raise_exception('x') if 0 }}";
  ordered_json vars = {
      {"messages", ordered_json::array({{{"role", "user"}, {"content", "<a>b"}},
                                        {{"role", "assistant"}, {"content", "hi"}}})}};
  ChatTemplateLimits lim;
  lim.max_seconds = 0.5;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::string alphabet = "{}%#-+()[]'\".|~:,=*/ \nabfinorst0123456789_";
  int rendered = 0, errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = base;
    int edits = 1 + next() % 4;
    for (int k = 0; k < edits && !s.empty(); ++k) {
      size_t pos = next() % s.size();
      switch (next() % 4) {
        case 0:
          s[pos] = alphabet[next() % alphabet.size()];
          break;
        case 1:
          s.erase(pos, 1 + next() % 8);
          break;
        case 2:
          s.insert(pos, s.substr(next() % s.size(), 1 + next() % 16));
          break;
        default:
          s[pos] = static_cast<char>(next() & 0xff);
          break;
      }
    }
    try {
      render_chat_template_json(s, vars, lim);
      ++rendered;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(rendered + errors, 3000);
  EXPECT_GT(rendered, 100);
  EXPECT_GT(errors, 100);
}

}  // namespace
}  // namespace lowbit::tokenizer
