#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace lowbit::engine {

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[size_t(best)]) best = int32_t(i);
  return best;
}

Sampler::Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    fail("temperature is {}, expected a finite value >= 0", p.temperature);
  if (p.top_k < 0) fail("top-k is {}, expected >= 0", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("top-p is {}, expected in (0, 1]", p.top_p);
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f) return argmax(logits);
  // Candidates sorted by logit; top-k, then softmax at the temperature, then top-p.
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  size_t keep = ids.size();
  if (params_.top_k > 0) keep = std::min(keep, size_t(params_.top_k));
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(keep);
  std::vector<double> probs(keep);
  double max_logit = logits[ids[0]], sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((double(logits[ids[i]]) - max_logit) / params_.temperature);
    sum += probs[i];
  }
  for (auto& p : probs) p /= sum;
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs[i];
      if (cum >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs.resize(cut);
    ids.resize(cut);
  }
  std::discrete_distribution<size_t> dist(probs.begin(), probs.end());
  return ids[dist(rng_)];
}

}  // namespace lowbit::engine
