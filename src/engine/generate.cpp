#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace lowbit::engine {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GenerationStats generate(models::LlamaModel& model, const std::vector<int32_t>& prompt,
                         int64_t max_tokens, int64_t context, const SamplingParams& sampling,
                         const std::vector<int32_t>& eos_ids,
                         const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt has no tokens (not even BOS)");
  if (max_tokens < 0) fail("max-tokens is {}, expected >= 0", max_tokens);
  const int64_t n_prompt = int64_t(prompt.size());
  if (n_prompt + max_tokens > context)
    fail("prompt of {} tokens + {} new tokens exceeds the context of {} tokens", n_prompt,
         max_tokens, context);
  Sampler sampler(sampling);
  KvCache cache = model.make_cache(n_prompt + std::max<int64_t>(max_tokens, 1));
  GenerationStats stats;
  stats.prompt_tokens = n_prompt;
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  model.forward(prompt, cache, false, logits);
  stats.prompt_seconds = seconds_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < max_tokens; ++i) {
    int32_t next = sampler.sample(logits);
    if (std::find(eos_ids.begin(), eos_ids.end(), next) != eos_ids.end()) {
      stats.stopped_at_eos = true;
      break;
    }
    ++stats.generated_tokens;
    if (on_token && !on_token(next)) break;
    if (i + 1 == max_tokens) break;
    int32_t one[1] = {next};
    model.forward(one, cache, false, logits);
  }
  stats.generation_seconds = seconds_since(t1);
  return stats;
}

PerplexityResult perplexity(models::LlamaModel& model, const std::vector<int32_t>& tokens,
                            int64_t ctx, int64_t max_chunks, int32_t bos,
                            const std::function<void(int64_t, double)>& on_chunk) {
  if (ctx < 4) fail("--ctx is {}, expected at least 4", ctx);
  if (ctx > model.config().max_position)
    fail("--ctx {} exceeds the model's context length {}", ctx, model.config().max_position);
  const int64_t available = int64_t(tokens.size()) / ctx;
  if (int64_t(tokens.size()) < 2 * ctx)
    fail("the text has {} tokens; at least 2 × ctx = {} are needed", tokens.size(), 2 * ctx);
  const int64_t chunks = max_chunks > 0 ? std::min(max_chunks, available) : available;
  const int64_t vocab = model.config().vocab_size;
  PerplexityResult r;
  auto t0 = std::chrono::steady_clock::now();
  double nll = 0;
  std::vector<float> logits;
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos >= 0) chunk[0] = bos;
    KvCache cache = model.make_cache(ctx);
    model.forward(chunk, cache, true, logits);
    // Score positions first..ctx-2 (each predicts the next token), as llama-perplexity.
    for (int64_t j = ctx / 2; j < ctx - 1; ++j) {
      const float* row = logits.data() + j * vocab;
      float max_logit = *std::max_element(row, row + vocab);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v] - max_logit));
      int32_t target = tokens[size_t(c * ctx + j + 1)];
      nll -= double(row[target] - max_logit) - std::log(sum);
      ++r.scored_tokens;
    }
    r.ppl_after_chunk.push_back(std::exp(nll / double(r.scored_tokens)));
    if (on_chunk) on_chunk(c + 1, r.ppl_after_chunk.back());
  }
  r.chunks = chunks;
  r.nll_mean = nll / double(r.scored_tokens);
  r.ppl = std::exp(r.nll_mean);
  r.seconds = seconds_since(t0);
  return r;
}

std::vector<int32_t> bench_prompt_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t state = 12345;
  for (auto& t : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    t = int32_t((state >> 33) % uint64_t(vocab));
  }
  return ids;
}

}  // namespace lowbit::engine
