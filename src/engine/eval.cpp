#include "engine/eval.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lowbit::engine {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// logp[v] = log softmax(row)[v], entirely in double. Returns the index of the (first) largest
// logit.
int64_t log_softmax(std::span<const float> row, std::vector<double>& logp) {
  auto max_it = std::max_element(row.begin(), row.end());
  const double max_logit = *max_it;
  double sum = 0;
  for (float x : row) sum += std::exp(double(x) - max_logit);
  // NaN anywhere (or an infinite max) makes the sum NaN: refuse rather than report NaN.
  if (!std::isfinite(sum) || !std::isfinite(max_logit))
    fail("logits of {} entries contain NaN or infinity", row.size());
  const double log_sum = std::log(sum);
  logp.resize(row.size());
  for (size_t v = 0; v < row.size(); ++v) logp[v] = double(row[v]) - max_logit - log_sum;
  return max_it - row.begin();
}

// -log softmax(row)[target] exactly as engine::perplexity() computes it (max subtracted in
// float, exponentials summed in double), so that the perplexities here equal `lowbit
// perplexity`'s bit for bit. log_softmax() differs from it by float rounding (~1e-7 relative).
double perplexity_nll(std::span<const float> row, int32_t target) {
  const float max_logit = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float x : row) sum += std::exp(double(x - max_logit));
  return -(double(row[size_t(target)] - max_logit) - std::log(sum));
}

// KL(P || Q) from the two log-softmaxes: Σ_v P(v) (log P(v) - log Q(v)).
double kl_from_log_probs(const std::vector<double>& logp, const std::vector<double>& logq) {
  double kl = 0;
  for (size_t v = 0; v < logp.size(); ++v)
    if (logp[v] != -INFINITY)  // a masked (-inf) logit has P = 0 and adds 0, not 0 × inf
      kl += std::exp(logp[v]) * (logp[v] - logq[v]);
  return kl;
}

// A line "<key>: <n> kB" of /proc/self/status, in bytes (0 if absent).
uint64_t proc_status_bytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size() + 1, key + ":") == 0)
      return std::stoull(line.substr(key.size() + 1)) * 1024;
  return 0;
}

void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent went away; nothing useful left to do
    done += size_t(n);
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

// Runs in the forked child: load, check, measure; the answer is one JSON object.
nlohmann::json footprint_in_child(const std::string& path, const LoadOptions& options,
                                  const quant::MethodRegistry& registry,
                                  const FootprintOptions& bench,
                                  const std::function<void(const LoadedModel&)>& check_loaded) {
  const uint64_t baseline = proc_status_bytes("VmRSS");
  LoadOptions load = options;
  if (bench.on_gpu) load.cpu_model = false;  // the CUDA backend reads the checkpoint itself
  LoadedModel m = load_model(path, load, registry);
  if (check_loaded) check_loaded(m);
  SpeedResult speed;
  uint64_t weight_bytes = 0;
  if (bench.on_gpu) {
    CudaSpeed s =
        measure_speed_cuda(m, bench.prompt_tokens, bench.gen_tokens, bench.repetitions, bench.cuda);
    speed = {s.pp_tok_s, s.tg_tok_s};
    weight_bytes = s.weight_bytes;
  } else {
    speed = measure_speed(*m.model, bench.prompt_tokens, bench.gen_tokens, bench.repetitions);
    weight_bytes = m.model->weight_bytes();
  }
  return {{"path", m.path},
          {"method", m.quant->name()},
          {"vocab_size", m.config.vocab_size},
          {"weight_bytes", weight_bytes},
          {"baseline_rss_bytes", baseline},
          {"peak_rss_bytes", proc_status_bytes("VmHWM")},
          {"pp_tok_s", speed.pp_tok_s},
          {"tg_tok_s", speed.tg_tok_s}};
}

}  // namespace

double kl_divergence(std::span<const float> ref_logits, std::span<const float> q_logits) {
  if (ref_logits.size() != q_logits.size() || ref_logits.empty())
    fail("kl_divergence: logits of {} and {} entries, expected the same non-zero size",
         ref_logits.size(), q_logits.size());
  std::vector<double> logp, logq;
  log_softmax(ref_logits, logp);
  log_softmax(q_logits, logq);
  return kl_from_log_probs(logp, logq);
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(p, 0.0, 1.0) * double(values.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - double(lo)) * (values[hi] - values[lo]);
}

PositionComparison DistributionComparison::compare(std::span<const float> q_logits,
                                                   std::span<const float> ref_logits,
                                                   int32_t target, std::vector<double>& scratch_q,
                                                   std::vector<double>& scratch_ref) {
  if (q_logits.size() != ref_logits.size())
    fail("comparing logits of {} entries with reference logits of {}", q_logits.size(),
         ref_logits.size());
  if (target < 0 || size_t(target) >= ref_logits.size())
    fail("target token id {} is outside the vocabulary of {} tokens", target, ref_logits.size());
  PositionComparison r;
  const int64_t top_q = log_softmax(q_logits, scratch_q);
  const int64_t top_ref = log_softmax(ref_logits, scratch_ref);
  r.nll = perplexity_nll(q_logits, target);
  r.nll_reference = perplexity_nll(ref_logits, target);
  r.kld = kl_from_log_probs(scratch_ref, scratch_q);
  r.same_top1 = top_q == top_ref;
  return r;
}

void DistributionComparison::add(const PositionComparison& position) {
  nll_ += position.nll;
  nll_reference_ += position.nll_reference;
  kld_sum_ += position.kld;
  kld_.push_back(position.kld);
  if (position.same_top1) ++same_top1_;
}

double DistributionComparison::nll_mean() const {
  return positions() ? nll_ / double(positions()) : 0;
}
double DistributionComparison::nll_mean_reference() const {
  return positions() ? nll_reference_ / double(positions()) : 0;
}
double DistributionComparison::ppl() const { return std::exp(nll_mean()); }
double DistributionComparison::ppl_reference() const { return std::exp(nll_mean_reference()); }
double DistributionComparison::kld_mean() const {
  return positions() ? kld_sum_ / double(positions()) : 0;
}
double DistributionComparison::top1() const {
  return positions() ? double(same_top1_) / double(positions()) : 0;
}

ComparisonResult compare_models(models::LlamaModel& quantized, models::LlamaModel& reference,
                                const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_chunks,
                                int32_t bos,
                                const std::function<void(int64_t, double, double)>& on_chunk) {
  const int64_t vocab = reference.config().vocab_size;
  if (quantized.config().vocab_size != vocab)
    fail("the quantized model has a vocabulary of {} tokens, the reference {}",
         quantized.config().vocab_size, vocab);
  for (const auto* m : {&quantized, &reference})
    if (ctx > m->config().max_position)
      fail("--ctx {} exceeds the model's context length {}", ctx, m->config().max_position);
  auto on_cpu = [](models::LlamaModel& model) {
    return [&model](const std::vector<int32_t>& chunk, std::vector<float>& logits) {
      KvCache cache = model.make_cache(int64_t(chunk.size()));
      model.forward(chunk, cache, true, logits);
    };
  };
  return compare_chunk_logits(on_cpu(quantized), on_cpu(reference), vocab, tokens, ctx, max_chunks,
                              bos, on_chunk);
}

ComparisonResult compare_chunk_logits(
    const ChunkLogits& quantized, const ChunkLogits& reference, int64_t vocab,
    const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_chunks, int32_t bos,
    const std::function<void(int64_t, double, double)>& on_chunk) {
  if (ctx < 4) fail("--ctx is {}, expected at least 4", ctx);
  if (int64_t(tokens.size()) < 2 * ctx)
    fail("the text has {} tokens; at least 2 × ctx = {} are needed", tokens.size(), 2 * ctx);
  const int64_t available = int64_t(tokens.size()) / ctx;
  const int64_t chunks = max_chunks > 0 ? std::min(max_chunks, available) : available;

  auto t0 = std::chrono::steady_clock::now();
  DistributionComparison stats;
  std::vector<float> q_logits, ref_logits;  // [ctx, vocab] each, one chunk at a time
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos >= 0) chunk[0] = bos;
    reference(chunk, ref_logits);
    quantized(chunk, q_logits);
    if (int64_t(ref_logits.size()) != ctx * vocab || int64_t(q_logits.size()) != ctx * vocab)
      fail("chunk {}: {} and {} logits, expected {} positions × {} entries", c, ref_logits.size(),
           q_logits.size(), ctx, vocab);
    // Positions ctx/2 .. ctx-2 each predict the next token, as llama-perplexity scores them.
    // Compared in parallel (five exp() per vocabulary entry), then summed in order.
    const int64_t first = ctx / 2, n_scored = ctx - 1 - first;
    std::vector<PositionComparison> rows(static_cast<size_t>(n_scored));
    std::string row_error;
#pragma omp parallel
    {
      std::vector<double> scratch_q, scratch_ref;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n_scored; ++i) {
        const int64_t j = first + i;
        try {
          rows[size_t(i)] = DistributionComparison::compare(
              {q_logits.data() + j * vocab, size_t(vocab)},
              {ref_logits.data() + j * vocab, size_t(vocab)}, tokens[size_t(c * ctx + j + 1)],
              scratch_q, scratch_ref);
        } catch (const std::exception& e) {  // exceptions must not leave an OpenMP region
#pragma omp critical
          row_error = e.what();
        }
      }
    }
    if (!row_error.empty()) throw Error(row_error);
    for (const auto& row : rows) stats.add(row);
    if (on_chunk) on_chunk(c + 1, stats.ppl(), stats.ppl_reference());
  }
  ComparisonResult r;
  r.ppl = stats.ppl();
  r.ppl_reference = stats.ppl_reference();
  r.nll_mean = stats.nll_mean();
  r.nll_mean_reference = stats.nll_mean_reference();
  r.kld = stats.kld_mean();
  r.kld_p99 = stats.kld_percentile(0.99);
  r.top1 = stats.top1();
  r.chunks = chunks;
  r.scored_tokens = stats.positions();
  r.seconds = seconds_since(t0);
  return r;
}

void check_same_vocabulary(const LoadedModel& quantized, const LoadedModel& reference) {
  if (quantized.config.vocab_size != reference.config.vocab_size)
    fail(
        "{} has a vocabulary of {} tokens but the reference {} has {}; eval compares next-token "
        "distributions, so both models must share one tokenizer",
        quantized.path, quantized.config.vocab_size, reference.path, reference.config.vocab_size);
}

SpeedResult measure_speed(models::LlamaModel& model, int64_t prompt_tokens, int64_t gen_tokens,
                          int repetitions) {
  if (prompt_tokens < 0 || gen_tokens < 0 || repetitions < 1)
    fail(
        "speed test of {} prompt and {} generated tokens × {} repetitions, expected sizes >= 0 "
        "and at least one repetition",
        prompt_tokens, gen_tokens, repetitions);
  const int64_t vocab = model.config().vocab_size;
  const std::vector<int32_t> prompt = bench_prompt_ids(prompt_tokens, vocab);
  std::vector<float> logits;
  SpeedResult best;
  for (int r = 0; r < repetitions + 1; ++r) {  // the first round warms up
    if (prompt_tokens > 0) {
      KvCache cache = model.make_cache(prompt_tokens);
      auto t0 = std::chrono::steady_clock::now();
      model.forward(prompt, cache, false, logits);
      double pp = double(prompt_tokens) / seconds_since(t0);
      if (r > 0) best.pp_tok_s = std::max(best.pp_tok_s, pp);
    }
    if (gen_tokens > 0) {
      KvCache cache = model.make_cache(gen_tokens);
      int32_t tok = prompt.empty() ? 1 % int32_t(vocab) : prompt[0];
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < gen_tokens; ++i) {
        int32_t one[1] = {tok};
        model.forward(one, cache, false, logits);
        tok = int32_t((int64_t(tok) * 31 + 7) % vocab);
      }
      double tg = double(gen_tokens) / seconds_since(t0);
      if (r > 0) best.tg_tok_s = std::max(best.tg_tok_s, tg);
    }
  }
  return best;
}

Footprint measure_footprint(const std::string& path, const LoadOptions& options,
                            const quant::MethodRegistry& registry, const FootprintOptions& bench,
                            const std::function<void(const LoadedModel&)>& check_loaded) {
  int fds[2];
  if (::pipe(fds) != 0) fail("{}: cannot create a pipe: {}", path, std::strerror(errno));
  std::fflush(nullptr);  // the child must not write out this process's buffered output again
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("{}: cannot fork a process to measure the model: {}", path, std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    nlohmann::json answer;
    int code = 0;
    try {
      answer = footprint_in_child(path, options, registry, bench, check_loaded);
    } catch (const std::bad_alloc&) {
      answer = {{"error", fmt::format("{}: out of memory while loading and running it", path)}};
      code = 1;
    } catch (const std::exception& e) {
      answer = {{"error", e.what()}};
      code = 1;
    } catch (...) {
      answer = {{"error", fmt::format("{}: unknown failure while measuring it", path)}};
      code = 1;
    }
    write_all(fds[1], answer.dump());
    ::close(fds[1]);
    ::_exit(code);  // no atexit handlers, no stdio flush: this is a copy of the parent
  }
  ::close(fds[1]);
  std::string reply = read_all(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status))
    fail("{}: the process measuring this model was killed by signal {} ({}; out of memory?)", path,
         WTERMSIG(status), strsignal(WTERMSIG(status)));
  nlohmann::json answer = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (answer.is_object() && answer.contains("error"))
    throw Error(answer["error"].get<std::string>());
  if (!answer.is_object() || !answer.contains("peak_rss_bytes"))
    fail("{}: the process measuring this model exited with status {} and no result", path,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  Footprint f;
  f.path = answer["path"].get<std::string>();
  f.method = answer["method"].get<std::string>();
  f.vocab_size = answer["vocab_size"].get<int64_t>();
  f.weight_bytes = answer["weight_bytes"].get<uint64_t>();
  f.baseline_rss_bytes = answer["baseline_rss_bytes"].get<uint64_t>();
  f.peak_rss_bytes = answer["peak_rss_bytes"].get<uint64_t>();
  f.speed.pp_tok_s = answer["pp_tok_s"].get<double>();
  f.speed.tg_tok_s = answer["tg_tok_s"].get<double>();
  return f;
}

}  // namespace lowbit::engine
