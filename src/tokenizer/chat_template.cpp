// Chat templates are rendered by our own sandboxed Jinja interpreter (src/tokenizer/jinja/):
// Debian 12 packages no C++ Jinja library that handles Hugging Face templates, and the
// interpreter must enforce budgets (RELIABILITY.md rule 7) that a general engine lacks.
// Semantics follow transformers' apply_chat_template: ImmutableSandboxedEnvironment with
// trim_blocks=True, lstrip_blocks=True, loopcontrols, raise_exception, strftime_now, namespace,
// dict and a tojson filter that is json.dumps(ensure_ascii=False).
#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/parser.h"

namespace lowbit::tokenizer {
namespace {

using nlohmann::ordered_json;

// transformers' _alias_reasoning_fields: {"thinking": r, **message, "reasoning_content": r}.
ordered_json alias_reasoning(const ordered_json& message) {
  if (!message.is_object()) return message;
  const ordered_json* reasoning = nullptr;
  for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
    auto it = message.find(key);
    if (it != message.end() && !it->is_null()) {
      reasoning = &*it;
      break;
    }
  }
  if (!reasoning) return message;
  ordered_json out = ordered_json::object();
  out["thinking"] = *reasoning;
  for (const auto& [k, v] : message.items()) out[k] = v;
  out["reasoning_content"] = *reasoning;
  return out;
}

}  // namespace

std::string render_chat_template_json(const std::string& jinja_source,
                                      const ordered_json& variables,
                                      const ChatTemplateLimits& limits) {
  if (!variables.is_object()) fail("chat template: variables must be a JSON object");
  jinja::Body body = jinja::parse_template(jinja_source);
  jinja::Dict globals = jinja::make_globals();
  auto set = [&globals](const std::string& k, jinja::Value v) {
    for (auto& [gk, gv] : globals) {
      if (gk == k) {
        gv = std::move(v);
        return;
      }
    }
    globals.emplace_back(k, std::move(v));
  };
  set("tools", jinja::Value::none());
  set("documents", jinja::Value::none());
  set("add_generation_prompt", jinja::Value(false));
  for (const auto& [k, v] : variables.items()) {
    if (k == "messages" && v.is_array()) {
      ordered_json msgs = ordered_json::array();
      for (const auto& m : v) msgs.push_back(alias_reasoning(m));
      set(k, jinja::from_json(msgs));
    } else {
      set(k, jinja::from_json(v));
    }
  }
  jinja::Interpreter interp(limits);
  return interp.render(body, std::move(globals));
}

std::string render_chat_template(const std::string& jinja_source, const ChatTemplateInputs& inputs,
                                 const ChatTemplateLimits& limits) {
  ordered_json vars = ordered_json::object();
  ordered_json msgs = ordered_json::array();
  for (const ChatMessage& m : inputs.messages) {
    msgs.push_back(ordered_json{{"role", m.role}, {"content", m.content}});
  }
  vars["messages"] = std::move(msgs);
  vars["add_generation_prompt"] = inputs.add_generation_prompt;
  // transformers passes only the special tokens that are set.
  if (!inputs.bos_token.empty()) vars["bos_token"] = inputs.bos_token;
  if (!inputs.eos_token.empty()) vars["eos_token"] = inputs.eos_token;
  if (inputs.extra.is_object()) {
    for (const auto& [k, v] : inputs.extra.items()) vars[k] = ordered_json::parse(v.dump());
  }
  return render_chat_template_json(jinja_source, vars, limits);
}

}  // namespace lowbit::tokenizer
