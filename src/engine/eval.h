// What a quantization costs and buys: a quantized model compared with its reference on the
// same tokens (perplexity of each, KL divergence of the next-token distributions, top-1
// agreement) plus each model's weight bytes, peak resident memory and speed. The CLI's
// `lowbit eval` prints these as a table (the "quant card").
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/gpu_generate.h"
#include "engine/model_loader.h"
#include "models/llama.h"

namespace lowbit::engine {

// KL(P_ref || P_q) = Σ_v P_ref(v) (log P_ref(v) - log P_q(v)) of one position, with both
// log-softmaxes in double (llama-perplexity --kl-divergence). ref, q: [vocab] logits.
double kl_divergence(std::span<const float> ref_logits, std::span<const float> q_logits);

// The p-quantile (0 <= p <= 1) of `values`, linearly interpolated between the two nearest
// order statistics (numpy's default); 0 for an empty vector.
double percentile(std::vector<double> values, double p);

// Accumulates statistics over scored positions, one position at a time. The negative
// log-likelihoods are summed exactly as engine::perplexity() does (same order, same float
// max-subtraction), so the perplexities here equal `lowbit perplexity`'s bit for bit.
struct PositionComparison {
  double nll = 0, nll_reference = 0;  // -log P(target) under each model
  double kld = 0;                     // KL(P_ref || P_q)
  bool same_top1 = false;
};

class DistributionComparison {
 public:
  // q, ref: [vocab] logits for the same position; target: the token that follows it.
  // scratch_*: [vocab] work space, so positions can be compared on several threads.
  static PositionComparison compare(std::span<const float> q_logits,
                                    std::span<const float> ref_logits, int32_t target,
                                    std::vector<double>& scratch_q,
                                    std::vector<double>& scratch_ref);
  // Adds one position; the order of calls fixes the order of the sums.
  void add(const PositionComparison& position);
  void add(std::span<const float> q_logits, std::span<const float> ref_logits, int32_t target) {
    add(compare(q_logits, ref_logits, target, logp_q_, logp_ref_));
  }

  int64_t positions() const { return int64_t(kld_.size()); }
  double nll_mean() const;
  double nll_mean_reference() const;
  double ppl() const;
  double ppl_reference() const;
  double kld_mean() const;
  double kld_percentile(double p) const { return percentile(kld_, p); }
  double top1() const;  // fraction of positions where both argmaxes agree

 private:
  double nll_ = 0, nll_reference_ = 0, kld_sum_ = 0;
  int64_t same_top1_ = 0;
  std::vector<double> kld_;                // one per position (for percentiles)
  std::vector<double> logp_q_, logp_ref_;  // scratch: [vocab]
};

struct ComparisonResult {
  double ppl = 0, ppl_reference = 0;
  double nll_mean = 0, nll_mean_reference = 0;
  double kld = 0, kld_p99 = 0;
  double top1 = 0;
  int64_t chunks = 0;
  int64_t scored_tokens = 0;
  double seconds = 0;
};

// Runs both models over `tokens` in llama-perplexity's chunks (see engine::perplexity: chunks
// of ctx tokens starting with BOS when bos >= 0, positions ctx/2 .. ctx-2 scored) and compares
// their next-token distributions. Holds only one chunk of logits per model ([ctx, vocab] each)
// at a time. Both models must have the same vocabulary size; quantized and reference may be
// the same object.
ComparisonResult compare_models(
    models::LlamaModel& quantized, models::LlamaModel& reference,
    const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_chunks, int32_t bos,
    const std::function<void(int64_t chunk, double ppl, double ppl_reference)>& on_chunk = {});

// Logits of every position of one chunk, computed from an empty context: [chunk.size(), vocab].
using ChunkLogits =
    std::function<void(const std::vector<int32_t>& chunk, std::vector<float>& logits)>;

// compare_models for any backend: `quantized` and `reference` produce the chunks' logits (both
// with `vocab` entries per position); ctx and the text length are checked here.
ComparisonResult compare_chunk_logits(
    const ChunkLogits& quantized, const ChunkLogits& reference, int64_t vocab,
    const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_chunks, int32_t bos,
    const std::function<void(int64_t chunk, double ppl, double ppl_reference)>& on_chunk = {});

// Throws, naming both paths, unless the two models have the same vocabulary size.
void check_same_vocabulary(const LoadedModel& quantized, const LoadedModel& reference);

struct SpeedResult {
  double pp_tok_s = 0;  // one forward over prompt_tokens
  double tg_tok_s = 0;  // gen_tokens single-token steps from an empty cache
};

// `lowbit bench`'s protocol: pseudo-random prompt ids (llama-bench's LCG), one warm-up round,
// then the best of `repetitions`. A size of 0 skips that measurement.
SpeedResult measure_speed(models::LlamaModel& model, int64_t prompt_tokens, int64_t gen_tokens,
                          int repetitions);

// One model measured on its own: what loading it and running it costs.
struct Footprint {
  std::string path;
  std::string method;  // quantization method that loaded it
  int64_t vocab_size = 0;
  uint64_t weight_bytes = 0;
  uint64_t baseline_rss_bytes = 0;  // the measuring process before loading anything
  uint64_t peak_rss_bytes = 0;      // its peak resident set (includes the baseline)
  SpeedResult speed;
};

struct FootprintOptions {
  int64_t prompt_tokens = 128;
  int64_t gen_tokens = 32;
  int repetitions = 3;
  // Run the model on the GPU (measure_speed_cuda): weight_bytes are then the GPU's copy and
  // peak RSS is the host side of a GPU run.
  bool on_gpu = false;
  CudaRunOptions cuda;
};

// Loads `path` in a forked child process and runs measure_speed there, so that the child's
// peak RSS belongs to this one model alone (two models in one process share one high-water
// mark, and mmap'd weights count only once touched). `check_loaded` runs in the child right
// after loading (throw to refuse the model early). Errors in the child are rethrown here.
// Precondition: this process has not yet run an OpenMP parallel region (libgomp's thread
// pool does not survive fork; the child would wait on threads that do not exist).
Footprint measure_footprint(const std::string& path, const LoadOptions& options,
                            const quant::MethodRegistry& registry, const FootprintOptions& bench,
                            const std::function<void(const LoadedModel&)>& check_loaded = {});

}  // namespace lowbit::engine
