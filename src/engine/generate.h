// Autoregressive generation and llama-perplexity-style evaluation over a LlamaModel.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "models/llama.h"

namespace lowbit::engine {

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0;
  double generation_seconds = 0;  // from the first sampled token to the last
  bool stopped_at_eos = false;
};

// Feeds `prompt` (non-empty) then samples up to max_tokens tokens, calling on_token for each
// (return false to stop). Stops after an id in eos_ids (which is reported, not appended).
// Refuses, with the numbers, a prompt + max_tokens that does not fit `context` tokens.
GenerationStats generate(models::LlamaModel& model, const std::vector<int32_t>& prompt,
                         int64_t max_tokens, int64_t context, const SamplingParams& sampling,
                         const std::vector<int32_t>& eos_ids,
                         const std::function<bool(int32_t)>& on_token);

struct PerplexityResult {
  double ppl = 0;
  double nll_mean = 0;
  int64_t scored_tokens = 0;
  int64_t chunks = 0;
  std::vector<double> ppl_after_chunk;  // running estimate, as llama-perplexity prints
  double seconds = 0;
};

// llama.cpp's llama-perplexity protocol: `tokens` is the whole text tokenized (with BOS when
// the tokenizer adds it); non-overlapping chunks of `ctx` tokens, the first token of each
// replaced by BOS when bos >= 0; the second half of each chunk is scored (positions
// ctx/2 .. ctx-2 predict the next token). max_chunks <= 0 means all full chunks.
PerplexityResult perplexity(models::LlamaModel& model, const std::vector<int32_t>& tokens,
                            int64_t ctx, int64_t max_chunks, int32_t bos,
                            const std::function<void(int64_t chunk, double ppl)>& on_chunk = {});

// The speed tests' prompt (`lowbit bench`, eval's footprints, CPU and GPU): n deterministic
// pseudo-random token ids below `vocab`, from llama-bench's LCG.
std::vector<int32_t> bench_prompt_ids(int64_t n, int64_t vocab);

}  // namespace lowbit::engine
