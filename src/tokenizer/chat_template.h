// Renders a Hugging Face chat template (Jinja source) with a sandboxed Jinja interpreter
// (RELIABILITY.md rule 7: budgets on recursion depth, loop iterations and output size).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lowbit::tokenizer {

struct ChatMessage {
  std::string role;     // "system" | "user" | "assistant" | "tool"
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

// Throws lowbit::Error("chat template: <what> at line L") on syntax errors, unknown
// filters/tests, raise_exception() calls or exceeded budgets.
std::string render_chat_template(const std::string& jinja_source,
                                 const ChatTemplateInputs& inputs);

}  // namespace lowbit::tokenizer
