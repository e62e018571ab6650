// Renders a Hugging Face chat template (Jinja source) with a sandboxed Jinja interpreter
// (RELIABILITY.md rule 7: budgets on recursion depth, loop iterations and output size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lowbit::tokenizer {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
};

struct ChatTemplateInputs {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
  std::string bos_token;
  std::string eos_token;
  // Extra variables visible to the template (e.g. "enable_thinking", "tools", "date_string").
  nlohmann::json extra = nlohmann::json::object();
};

// Sandbox budgets for one render (RELIABILITY.md rule 7). Exceeding one throws lowbit::Error.
struct ChatTemplateLimits {
  int max_call_depth = 64;                  // nested macro calls (recursion)
  int64_t max_loop_iterations = 1'000'000;  // summed over all loops of one render
  size_t max_output_bytes = 16u << 20;      // total bytes written; also caps any one string
  size_t max_items = 1u << 18;  // caps any one list/dict the template builds (~100 B/item)
  double max_seconds = 2.0;     // wall clock for one render
};

// Throws lowbit::Error("chat template: <what> at line L") on syntax errors, unknown
// filters/tests, raise_exception() calls or exceeded budgets.
std::string render_chat_template(const std::string& jinja_source, const ChatTemplateInputs& inputs,
                                 const ChatTemplateLimits& limits = {});

// Renders with every template variable given as JSON, as transformers'
// render_jinja_template(conversations=[messages], tools=..., **kwargs) passes them: `variables`
// holds "messages" (any message fields: tool_calls, reasoning_content, ...), and optionally
// "tools", "documents", "add_generation_prompt", "bos_token", ... Missing "tools"/"documents"
// are None and a missing "add_generation_prompt" is false, as in transformers; reasoning
// fields of messages are aliased like transformers does (thinking/reasoning ->
// reasoning_content). Object key order is kept (it shows in tojson output).
std::string render_chat_template_json(const std::string& jinja_source,
                                      const nlohmann::ordered_json& variables,
                                      const ChatTemplateLimits& limits = {});

}  // namespace lowbit::tokenizer
