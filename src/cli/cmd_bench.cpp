// `lowbit bench`: prompt-processing and generation speed on one model, like llama-bench
// (pp: one forward over N prompt tokens; tg: N single-token steps from an empty context).
#include <omp.h>

#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "engine/generate.h"
#include "engine/model_loader.h"

namespace lowbit::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  int64_t prompt_tokens = 512;
  int64_t gen_tokens = 128;
  int repetitions = 3;
  bool json = false;
};

int run_bench(const BenchOptions& o) {
  apply_threads(o.model.threads);
  auto registry = method_registry(o.model.plugins);
  engine::LoadedModel m =
      engine::load_model(o.model.model, {o.model.quantization, false}, registry);
  auto& model = *m.model;
  const int64_t vocab = m.config.vocab_size;
  const std::vector<int32_t> prompt = engine::bench_prompt_ids(o.prompt_tokens, vocab);
  std::vector<float> logits;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  double best_pp = 0, best_tg = 0;
  for (int r = 0; r < o.repetitions + 1; ++r) {  // first round warms up
    if (o.prompt_tokens > 0) {
      auto cache = model.make_cache(o.prompt_tokens);
      auto t0 = now();
      model.forward(prompt, cache, false, logits);
      double pp = o.prompt_tokens / secs(t0, now());
      if (r > 0) best_pp = std::max(best_pp, pp);
    }
    if (o.gen_tokens > 0) {
      auto cache = model.make_cache(o.gen_tokens);
      int32_t tok = prompt.empty() ? 1 : prompt[0];
      auto t0 = now();
      for (int64_t i = 0; i < o.gen_tokens; ++i) {
        int32_t one[1] = {tok};
        model.forward(one, cache, false, logits);
        tok = int32_t((tok * 31 + 7) % vocab);
      }
      double tg = o.gen_tokens / secs(t0, now());
      if (r > 0) best_tg = std::max(best_tg, tg);
    }
  }
  if (o.json) {
    std::printf(
        "{\"pp_tok_s\": %.3f, \"tg_tok_s\": %.3f, \"weight_bytes\": %llu, "
        "\"weight_bytes_per_token\": %llu, \"threads\": %d}\n",
        best_pp, best_tg, (unsigned long long)model.weight_bytes(),
        (unsigned long long)model.weight_bytes_per_token(), omp_get_max_threads());
  } else {
    std::printf(
        "pp%lld: %.1f tok/s\ntg%lld: %.1f tok/s\nweights: %.1f MB (%.1f MB read per token)\n",
        (long long)o.prompt_tokens, best_pp, (long long)o.gen_tokens, best_tg,
        model.weight_bytes() / 1e6, model.weight_bytes_per_token() / 1e6);
  }
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "prompt and generation speed (best of repetitions)");
  add_model_options(*cmd, o->model);
  cmd->add_option("--prompt-tokens", o->prompt_tokens)->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--gen-tokens", o->gen_tokens)->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--repetitions", o->repetitions)->check(CLI::Range(1, 100));
  cmd->add_flag("--json", o->json, "print one JSON object");
  return [o] { return run_bench(*o); };
}

}  // namespace lowbit::cli
