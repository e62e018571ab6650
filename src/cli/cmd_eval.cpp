// `lowbit eval`: the quant card. A quantized model against its reference on the same tokens
// (perplexity of each, KL divergence and top-1 agreement of their next-token distributions),
// plus what each costs: weight bytes, peak RSS, prompt and generation speed.
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "core/error.h"
#include "engine/eval.h"
#include "engine/model_loader.h"

namespace lowbit::cli {
namespace {

struct EvalOptions {
  ModelOptions model;  // the quantized side: --model, --quantization, --threads, --plugin
  std::string reference;
  std::string reference_quantization;
  std::string file;
  int64_t ctx = 512;
  int64_t chunks = -1;
  int64_t bench_prompt = 128;
  int64_t bench_gen = 32;
  std::string json_path;
  std::string markdown_path;
  DeviceOptions device;  // both models run on it
};

// Both models live in one process for the comparison, where one high-water mark covers both
// and mmap'd weights count only once touched, so RSS there says nothing about either model.
// Instead each model is loaded on its own in a forked child (before this process loads
// anything) which runs the speed test; its peak RSS is that model's.
std::string rss_footnote(const EvalOptions& o, uint64_t baseline) {
  return fmt::format(
      "peak RSS: peak resident set of a separate process (forked before either model was "
      "loaded) that loads only that model and runs the speed test (pp{} + tg{}); it includes "
      "that process's {:.1f} MB before loading.",
      o.bench_prompt, o.bench_gen, double(baseline) / 1e6);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string format_bytes(uint64_t b) {
  if (b >= 1000000000ull) return fmt::format("{:.2f} GB", double(b) / 1e9);
  if (b >= 1000000ull) return fmt::format("{:.2f} MB", double(b) / 1e6);
  return fmt::format("{:.1f} kB", double(b) / 1e3);
}

std::string ratio(double q, double ref) {
  return ref > 0 ? fmt::format("{:.3g}x", q / ref) : std::string("-");
}

// The last path component (a model directory's or file's name) for tables.
std::string short_name(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

struct Card {
  std::vector<std::array<std::string, 4>> rows;  // label, quantized, reference, ratio
  std::vector<std::string> notes;
};

Card make_card(const EvalOptions& o, const engine::Footprint& q, const engine::Footprint& ref,
               const engine::ComparisonResult& r) {
  Card c;
  auto row = [&](std::string label, std::string a, std::string b, std::string x) {
    c.rows.push_back({std::move(label), std::move(a), std::move(b), std::move(x)});
  };
  row("", "quantized", "reference", "ratio");
  row("model", short_name(q.path), short_name(ref.path), "");
  row("method", q.method, ref.method, "");
  row("perplexity", fmt::format("{:.4f}", r.ppl), fmt::format("{:.4f}", r.ppl_reference),
      ratio(r.ppl, r.ppl_reference));
  row("KL divergence (mean)", fmt::format("{:.6f}", r.kld), "", "");
  row("KL divergence (p99)", fmt::format("{:.6f}", r.kld_p99), "", "");
  row("top-1 agreement", fmt::format("{:.2f} %", 100 * r.top1), "", "");
  row("weights", format_bytes(q.weight_bytes), format_bytes(ref.weight_bytes),
      ratio(double(q.weight_bytes), double(ref.weight_bytes)));
  row("peak RSS *", format_bytes(q.peak_rss_bytes), format_bytes(ref.peak_rss_bytes),
      ratio(double(q.peak_rss_bytes), double(ref.peak_rss_bytes)));
  row(fmt::format("pp{} tok/s", o.bench_prompt), fmt::format("{:.1f}", q.speed.pp_tok_s),
      fmt::format("{:.1f}", ref.speed.pp_tok_s), ratio(q.speed.pp_tok_s, ref.speed.pp_tok_s));
  row(fmt::format("tg{} tok/s", o.bench_gen), fmt::format("{:.1f}", q.speed.tg_tok_s),
      fmt::format("{:.1f}", ref.speed.tg_tok_s), ratio(q.speed.tg_tok_s, ref.speed.tg_tok_s));
  c.notes.push_back(fmt::format(
      "{}: ctx {}, {} chunks, {} scored tokens; KL(P_reference || P_quantized) per scored "
      "position; {} threads.",
      short_name(o.file), o.ctx, r.chunks, r.scored_tokens, omp_get_max_threads()));
  c.notes.push_back("* " + rss_footnote(o, std::max(q.baseline_rss_bytes, ref.baseline_rss_bytes)));
  return c;
}

void print_table(const Card& c) {
  std::array<size_t, 4> width{};
  for (const auto& r : c.rows)
    for (size_t i = 0; i < 4; ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : c.rows)
    std::printf("%-*s  %*s  %*s  %*s\n", int(width[0]), r[0].c_str(), int(width[1]), r[1].c_str(),
                int(width[2]), r[2].c_str(), int(width[3]), r[3].c_str());
  for (const auto& n : c.notes) std::printf("%s\n", n.c_str());
}

std::string markdown(const Card& c) {
  std::string md;
  for (size_t i = 0; i < c.rows.size(); ++i) {
    const auto& r = c.rows[i];
    md += fmt::format("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]);
    if (i == 0) md += "|---|---:|---:|---:|\n";
  }
  md += "\n";
  for (const auto& n : c.notes) md += n + "\n\n";
  return md;
}

nlohmann::json to_json(const EvalOptions& o, const engine::Footprint& q,
                       const engine::Footprint& ref, const engine::ComparisonResult& r,
                       int64_t tokens, double seconds) {
  return {
      {"model", q.path},
      {"reference", ref.path},
      {"method", q.method},
      {"method_reference", ref.method},
      {"device", o.device.device},
      {"file", o.file},
      {"ctx", o.ctx},
      {"chunks", r.chunks},
      {"tokens", tokens},
      {"scored_tokens", r.scored_tokens},
      {"ppl", r.ppl},
      {"ppl_reference", r.ppl_reference},
      {"kld", r.kld},
      {"kld_p99", r.kld_p99},
      {"top1", r.top1},
      {"weight_bytes", q.weight_bytes},
      {"weight_bytes_reference", ref.weight_bytes},
      {"peak_rss_bytes", q.peak_rss_bytes},
      {"peak_rss_bytes_reference", ref.peak_rss_bytes},
      {"rss_baseline_bytes", q.baseline_rss_bytes},
      {"rss_baseline_bytes_reference", ref.baseline_rss_bytes},
      {"peak_rss_note", rss_footnote(o, std::max(q.baseline_rss_bytes, ref.baseline_rss_bytes))},
      {"pp_tok_s", q.speed.pp_tok_s},
      {"tg_tok_s", q.speed.tg_tok_s},
      {"pp_tok_s_reference", ref.speed.pp_tok_s},
      {"tg_tok_s_reference", ref.speed.tg_tok_s},
      {"bench_prompt_tokens", o.bench_prompt},
      {"bench_gen_tokens", o.bench_gen},
      {"threads", omp_get_max_threads()},
      {"seconds", seconds}};
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) fail("{}: cannot write", path);
}

// The token ids both tokenizers give the text must agree, else the two models would not be
// scored on the same tokens.
void check_same_tokens(const engine::LoadedModel& q, const engine::LoadedModel& ref,
                       const std::vector<int32_t>& ref_tokens, const std::string& text) {
  if (!q.tokenizer) return;  // the quantized side has none: it is scored on the reference's
  std::vector<int32_t> q_tokens = q.tokenizer->encode(text, true, /*parse_special=*/false);
  size_t i = 0;
  while (i < q_tokens.size() && i < ref_tokens.size() && q_tokens[i] == ref_tokens[i]) ++i;
  if (i < q_tokens.size() || i < ref_tokens.size())
    fail(
        "{} and the reference {} tokenize the text differently ({} vs {} tokens, first "
        "difference at token {}); both models must share one tokenizer",
        q.path, ref.path, q_tokens.size(), ref_tokens.size(), i);
}

// Whether --device sends the models to the GPU. A CUDA runtime initialised in this process
// would not survive the fork of the footprint children, so the device is probed in a child of
// its own; on failure the parent repeats the probe to raise its message.
bool runs_on_gpu(const std::string& device) {
  if (device == "cpu") return false;
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) fail("--device {}: cannot fork a process to probe the GPU", device);
  if (pid == 0) {
    int code = 2;
    try {
      code = engine::resolve_device(device) == engine::Device::kCuda ? 0 : 1;
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
  if (code == 2) return engine::resolve_device(device) == engine::Device::kCuda;  // throws
  return code == 0;
}

int run_eval(const EvalOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  apply_threads(o.model.threads);
  std::string text = read_text(o.file);
  auto registry = method_registry(o.model.plugins);
  const bool on_gpu = runs_on_gpu(o.device.device);
  engine::LoadOptions q_options{o.model.quantization, false, !on_gpu};
  engine::LoadOptions ref_options{o.reference_quantization, false, !on_gpu};

  // Footprints first, while this process has loaded nothing, run no OpenMP region and made no
  // CUDA context (each child makes its own).
  engine::FootprintOptions bench{o.bench_prompt, o.bench_gen, 3, on_gpu, o.device.cuda};
  std::fprintf(stderr, "measuring %s\n", o.reference.c_str());
  engine::Footprint ref_fp = engine::measure_footprint(o.reference, ref_options, registry, bench);
  std::fprintf(stderr, "measuring %s\n", o.model.model.c_str());
  engine::Footprint q_fp = engine::measure_footprint(
      o.model.model, q_options, registry, bench, [&](const engine::LoadedModel& q) {
        if (q.config.vocab_size != ref_fp.vocab_size)
          fail(
              "{} has a vocabulary of {} tokens but the reference {} "
              "has {}; eval compares next-token distributions, so "
              "both models must share one tokenizer",
              q.path, q.config.vocab_size, ref_fp.path, ref_fp.vocab_size);
      });

  engine::LoadedModel ref =
      engine::load_model(o.reference, {o.reference_quantization, true, !on_gpu}, registry);
  engine::LoadedModel q =
      engine::load_model(o.model.model, {o.model.quantization, true, !on_gpu}, registry);
  // --kv-cache-dtype applies to the quantized side, like --quantization (CPU: the comparison;
  // the speed children keep f32 caches).
  if (!on_gpu)
    q.model->set_kv_cache_dtype(engine::cpu_kv_cache_dtype(o.device.cuda.kv_cache_dtype),
                                engine::kv_scale_granularity(o.device.cuda.kv_cache_scales));
  engine::check_same_vocabulary(q, ref);
  const auto& tok = ref.require_tokenizer();
  std::vector<int32_t> tokens = tok.encode(text, true, /*parse_special=*/false);
  check_same_tokens(q, ref, tokens, text);
  int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  std::fprintf(stderr, "%s: %zu tokens, ctx %lld\n", o.file.c_str(), tokens.size(),
               (long long)o.ctx);
  auto on_chunk = [](int64_t c, double ppl, double ppl_ref) {
    std::fprintf(stderr, "[%lld]%.4f/%.4f,", (long long)c, ppl, ppl_ref);
    std::fflush(stderr);
  };
  engine::ComparisonResult r;
  if (on_gpu) {
    for (const auto* m : {&q, &ref})
      if (o.ctx > m->config.max_position)
        fail("--ctx {} exceeds {}'s context length {}", o.ctx, m->path, m->config.max_position);
    engine::CudaRunOptions ref_cuda = o.device.cuda;
    ref_cuda.kv_cache_dtype = "auto";  // --kv-cache-dtype applies to the quantized side
    auto ref_logits = engine::cuda_chunk_logits(ref, o.ctx, ref_cuda);
    auto q_logits = engine::cuda_chunk_logits(q, o.ctx, o.device.cuda);
    r = engine::compare_chunk_logits(q_logits, ref_logits, ref.config.vocab_size, tokens, o.ctx,
                                     o.chunks, bos, on_chunk);
  } else {
    r = engine::compare_models(*q.model, *ref.model, tokens, o.ctx, o.chunks, bos, on_chunk);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "\n%lld chunks compared in %.1f s (%.1f s in all)\n", (long long)r.chunks,
               r.seconds, seconds);

  Card card = make_card(o, q_fp, ref_fp, r);
  print_table(card);
  if (!o.json_path.empty())
    write_file(o.json_path,
               to_json(o, q_fp, ref_fp, r, int64_t(tokens.size()), seconds).dump(1) + "\n");
  if (!o.markdown_path.empty()) write_file(o.markdown_path, markdown(card));
  return 0;
}

}  // namespace

Runner add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand(
      "eval", "quant card: a quantized model against its reference (ppl, KLD, memory, speed)");
  add_model_options(*cmd, o->model);
  cmd->add_option("-r,--reference", o->reference, "reference model (e.g. the unquantized one)")
      ->required();
  cmd->add_option("--reference-quantization", o->reference_quantization,
                  "force the reference's quantization method");
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx", o->ctx, "tokens per chunk")->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "maximum number of chunks (default: all)");
  cmd->add_option("--bench-prompt", o->bench_prompt, "prompt tokens of the speed test")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--bench-gen", o->bench_gen, "generated tokens of the speed test")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--json", o->json_path, "also write the results as JSON to this file");
  cmd->add_option("--markdown", o->markdown_path, "also write a markdown table to this file");
  add_device_options(*cmd, o->device);
  return [o] { return run_eval(*o); };
}

}  // namespace lowbit::cli
