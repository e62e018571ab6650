// `lowbit generate`: streams a completion to stdout, speeds to stderr.
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "core/error.h"
#include "engine/generate.h"
#include "engine/model_loader.h"
#include "tokenizer/chat_template.h"

namespace lowbit::cli {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 character.
size_t complete_utf8_prefix(const std::string& s) {
  size_t n = s.size(), i = n;
  for (int back = 0; back < 4 && i > 0; ++back) {
    unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // lead byte (or ASCII) at i-1
      size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      return (n - (i - 1) >= need) ? n : i - 1;
    }
    --i;
  }
  return n;
}

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int64_t max_tokens = 128;
  float temperature = -1;  // -1: generation_config.json default, else 0.8
  int top_k = -1;
  float top_p = -1;
  uint64_t seed = 0;
  bool chat = false;
  std::string system;
  int64_t context = 0;
  DeviceOptions device;
};

int run_generate(const GenerateOptions& o) {
  apply_threads(o.model.threads);
  auto registry = method_registry(o.model.plugins);
  const bool on_gpu = engine::resolve_device(o.device.device) == engine::Device::kCuda;
  engine::LoadedModel m =
      engine::load_model(o.model.model, {o.model.quantization, true, !on_gpu}, registry);
  if (!on_gpu)
    m.model->set_kv_cache_dtype(engine::cpu_kv_cache_dtype(o.device.cuda.kv_cache_dtype),
                                engine::kv_scale_granularity(o.device.cuda.kv_cache_scales));
  const tokenizer::Tokenizer& tok = m.require_tokenizer();

  std::vector<int32_t> prompt;
  if (o.chat) {
    const auto& tmpl = tok.chat_template();
    if (!tmpl) fail("{}: --chat needs a chat template, and the model has none", o.model.model);
    tokenizer::ChatTemplateInputs in;
    if (!o.system.empty()) in.messages.push_back({"system", o.system});
    in.messages.push_back({"user", o.prompt});
    in.bos_token = tok.bos_token_text();
    in.eos_token = tok.eos_token_text();
    prompt = tok.encode(tokenizer::render_chat_template(*tmpl, in), false);
  } else {
    prompt = tok.encode(o.prompt, true);
  }
  if (prompt.empty()) {
    auto bos = tok.bos_id();
    if (!bos) fail("{}: empty prompt and the tokenizer has no BOS token", o.model.model);
    prompt.push_back(*bos);
  }

  engine::SamplingParams sp;
  sp.temperature = o.temperature >= 0 ? o.temperature : m.generation.temperature.value_or(0.8f);
  sp.top_k = o.top_k >= 0 ? o.top_k : m.generation.top_k.value_or(40);
  sp.top_p = o.top_p >= 0 ? o.top_p : m.generation.top_p.value_or(0.95f);
  sp.seed = o.seed;
  int64_t context =
      o.context > 0 ? std::min(o.context, m.config.max_position) : m.config.max_position;

  std::vector<int32_t> generated;
  size_t printed = 0;
  auto on_token = [&](int32_t id) {
    generated.push_back(id);
    std::string text = tok.decode(generated, true);
    size_t upto = complete_utf8_prefix(text);
    if (upto > printed) {
      std::fwrite(text.data() + printed, 1, upto - printed, stdout);
      std::fflush(stdout);
      printed = upto;
    }
    return true;
  };
  auto stats =
      on_gpu ? engine::generate_cuda(m, prompt, o.max_tokens, context, sp, m.eos_ids(), on_token,
                                     o.device.cuda)
             : engine::generate(*m.model, prompt, o.max_tokens, context, sp, m.eos_ids(), on_token);
  std::string text = tok.decode(generated, true);
  if (text.size() > printed) std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(
      stderr, "prompt: %lld tokens, %.1f tok/s | generation: %lld tokens, %.1f tok/s%s\n",
      (long long)stats.prompt_tokens, stats.prompt_tokens / stats.prompt_seconds,
      (long long)stats.generated_tokens,
      stats.generation_seconds > 0 ? stats.generated_tokens / stats.generation_seconds : 0.0,
      stats.stopped_at_eos ? " (end of text)" : "");
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "generate text from a prompt");
  add_model_options(*cmd, o->model);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  cmd->add_option("-n,--max-tokens", o->max_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  cmd->add_option("--temperature", o->temperature, "0 = greedy (default 0.8)");
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens (0 = off, default 40)");
  cmd->add_option("--top-p", o->top_p, "nucleus sampling threshold (default 0.95)");
  cmd->add_option("--seed", o->seed, "random seed");
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the model's chat template");
  cmd->add_option("--system", o->system, "system message for --chat");
  cmd->add_option("-c,--ctx-size", o->context, "context length (default: the model's)");
  add_device_options(*cmd, o->device);
  return [o] { return run_generate(*o); };
}

}  // namespace lowbit::cli
