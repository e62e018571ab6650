#include "engine/gpu_generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "core/error.h"

#ifdef LOWBIT_HAVE_CUDA
#include "models/llama_cuda.h"
#endif

namespace lowbit::engine {

#ifdef LOWBIT_HAVE_CUDA
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<models::CudaLlamaModel> upload(const LoadedModel& m, int64_t context,
                                               const CudaRunOptions& o) {
  models::CudaOptions co;
  co.kv_cache_dtype = o.kv_cache_dtype;
  co.kv_cache_scales = o.kv_cache_scales;
  co.gpu_memory_utilization = o.gpu_memory_utilization;
  co.cuda_graphs = o.cuda_graphs;
  co.max_context = context;
  auto model = std::make_unique<models::CudaLlamaModel>(m.config, *m.source, *m.quant, co);
  std::fprintf(stderr, "%s\n", model->describe().c_str());
  return model;
}

}  // namespace

GenerationStats generate_cuda(const LoadedModel& m, const std::vector<int32_t>& prompt,
                              int64_t max_tokens, int64_t context, const SamplingParams& sampling,
                              const std::vector<int32_t>& eos_ids,
                              const std::function<bool(int32_t)>& on_token,
                              const CudaRunOptions& options) {
  if (prompt.empty()) fail("generate: the prompt has no tokens (not even BOS)");
  if (max_tokens < 0) fail("max-tokens is {}, expected >= 0", max_tokens);
  const int64_t n_prompt = int64_t(prompt.size());
  if (n_prompt + max_tokens > context)
    fail("prompt of {} tokens + {} new tokens exceeds the context of {} tokens", n_prompt,
         max_tokens, context);
  auto model = upload(m, n_prompt + std::max<int64_t>(max_tokens, 1), options);
  Sampler sampler(sampling);
  const bool greedy = sampling.temperature <= 0.0f;
  const models::CudaLlamaModel::GpuSampling gpu_sampling{sampling.temperature, sampling.top_k,
                                                         sampling.top_p};
  std::mt19937_64 uniform_rng(sampling.seed);
  GenerationStats stats;
  stats.prompt_tokens = n_prompt;
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  model->forward(0, prompt, false, logits);
  stats.prompt_seconds = seconds_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  int32_t next = sampler.sample(logits);
  for (int64_t i = 0; i < max_tokens; ++i) {
    if (std::find(eos_ids.begin(), eos_ids.end(), next) != eos_ids.end()) {
      stats.stopped_at_eos = true;
      break;
    }
    ++stats.generated_tokens;
    if (on_token && !on_token(next)) break;
    if (i + 1 == max_tokens) break;
    if (greedy) {
      // argmax on the GPU, decode step replayed as a CUDA graph: no logits copy.
      int seq[1] = {0};
      int32_t in[1] = {next}, out[1] = {0};
      model->decode_greedy(seq, in, out);
      next = out[0];
    } else {
      // Drawn on the GPU from a uniform of a host RNG seeded like the CPU sampler.
      int seq[1] = {0};
      int32_t in[1] = {next}, out[1] = {0};
      float u[1] = {float(std::generate_canonical<double, 53>(uniform_rng))};
      if (u[0] >= 1.0f) u[0] = std::nextafter(1.0f, 0.0f);
      model->decode_sample(seq, in, gpu_sampling, u, out);
      next = out[0];
    }
  }
  stats.generation_seconds = seconds_since(t1);
  return stats;
}

PerplexityResult perplexity_cuda(const LoadedModel& m, const std::vector<int32_t>& tokens,
                                 int64_t ctx, int64_t max_chunks, int32_t bos,
                                 const std::function<void(int64_t, double)>& on_chunk,
                                 const CudaRunOptions& options) {
  if (ctx < 4) fail("--ctx is {}, expected at least 4", ctx);
  if (ctx > m.config.max_position)
    fail("--ctx {} exceeds the model's context length {}", ctx, m.config.max_position);
  const int64_t available = int64_t(tokens.size()) / ctx;
  if (int64_t(tokens.size()) < 2 * ctx)
    fail("the text has {} tokens; at least 2 × ctx = {} are needed", tokens.size(), 2 * ctx);
  const int64_t chunks = max_chunks > 0 ? std::min(max_chunks, available) : available;
  const int64_t vocab = m.config.vocab_size;
  auto model = upload(m, ctx, options);
  PerplexityResult r;
  auto t0 = std::chrono::steady_clock::now();
  double nll = 0;
  std::vector<float> logits;
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos >= 0) chunk[0] = bos;
    model->reset_sequence(0);
    model->forward(0, chunk, true, logits);
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

std::function<void(const std::vector<int32_t>&, std::vector<float>&)> cuda_chunk_logits(
    const LoadedModel& m, int64_t ctx, const CudaRunOptions& options) {
  std::shared_ptr<models::CudaLlamaModel> model = upload(m, ctx, options);
  return [model](const std::vector<int32_t>& chunk, std::vector<float>& logits) {
    model->reset_sequence(0);
    model->forward(0, chunk, true, logits);
  };
}

CudaSpeed measure_speed_cuda(const LoadedModel& m, int64_t prompt_tokens, int64_t gen_tokens,
                             int repetitions, const CudaRunOptions& options) {
  if (prompt_tokens < 0 || gen_tokens < 0 || repetitions < 1)
    fail(
        "speed test of {} prompt and {} generated tokens × {} repetitions, expected sizes >= 0 "
        "and at least one repetition",
        prompt_tokens, gen_tokens, repetitions);
  auto model = upload(m, std::max<int64_t>({prompt_tokens, gen_tokens, 1}), options);
  const int64_t vocab = m.config.vocab_size;
  const std::vector<int32_t> prompt = bench_prompt_ids(prompt_tokens, vocab);
  std::vector<float> logits;
  CudaSpeed best;
  best.weight_bytes = model->weight_bytes();
  for (int r = 0; r < repetitions + 1; ++r) {  // the first round warms up (and records graphs)
    if (prompt_tokens > 0) {
      model->reset_sequence(0);
      auto t0 = std::chrono::steady_clock::now();
      model->forward(0, prompt, false, logits);
      const double pp = double(prompt_tokens) / seconds_since(t0);
      if (r > 0) best.pp_tok_s = std::max(best.pp_tok_s, pp);
    }
    if (gen_tokens > 0) {
      // Greedy decode steps (CUDA graphs), each feeding back the argmax: generation as
      // `generate --device cuda --temperature 0` runs it. The first step fills an empty cache.
      model->reset_sequence(0);
      int seq[1] = {0};
      int32_t tok[1] = {prompt.empty() ? 1 % int32_t(vocab) : prompt[0]}, next[1] = {0};
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < gen_tokens; ++i) {
        model->decode_greedy(seq, tok, next);
        tok[0] = next[0];
      }
      const double tg = double(gen_tokens) / seconds_since(t0);
      if (r > 0) best.tg_tok_s = std::max(best.tg_tok_s, tg);
    }
  }
  return best;
}

#else  // no CUDA backend in this build

GenerationStats generate_cuda(const LoadedModel&, const std::vector<int32_t>&, int64_t, int64_t,
                              const SamplingParams&, const std::vector<int32_t>&,
                              const std::function<bool(int32_t)>&, const CudaRunOptions&) {
  fail("--device cuda: this lowbit was built without the CUDA backend; use --device cpu");
}

PerplexityResult perplexity_cuda(const LoadedModel&, const std::vector<int32_t>&, int64_t, int64_t,
                                 int32_t, const std::function<void(int64_t, double)>&,
                                 const CudaRunOptions&) {
  fail("--device cuda: this lowbit was built without the CUDA backend; use --device cpu");
}

std::function<void(const std::vector<int32_t>&, std::vector<float>&)> cuda_chunk_logits(
    const LoadedModel&, int64_t, const CudaRunOptions&) {
  fail("--device cuda: this lowbit was built without the CUDA backend; use --device cpu");
}

CudaSpeed measure_speed_cuda(const LoadedModel&, int64_t, int64_t, int, const CudaRunOptions&) {
  fail("--device cuda: this lowbit was built without the CUDA backend; use --device cpu");
}

#endif

}  // namespace lowbit::engine
