// Next-token choice from logits: greedy (temperature 0) or temperature + top-k + top-p
// sampling with a seeded generator, in the order llama.cpp and HF apply them.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace lowbit::engine {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // throws on out-of-range values
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties), as torch.argmax.
int32_t argmax(std::span<const float> logits);

}  // namespace lowbit::engine
