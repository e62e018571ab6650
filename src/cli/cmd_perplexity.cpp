// `lowbit perplexity`: llama-perplexity's protocol; the last line is "PPL = <value>".
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "core/error.h"
#include "engine/generate.h"
#include "engine/model_loader.h"

namespace lowbit::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int64_t ctx = 512;
  int64_t chunks = -1;
  DeviceOptions device;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_perplexity(const PerplexityOptions& o) {
  apply_threads(o.model.threads);
  std::string text = read_text(o.file);
  auto registry = method_registry(o.model.plugins);
  const bool on_gpu = engine::resolve_device(o.device.device) == engine::Device::kCuda;
  engine::LoadedModel m =
      engine::load_model(o.model.model, {o.model.quantization, true, !on_gpu}, registry);
  if (!on_gpu)
    m.model->set_kv_cache_dtype(engine::cpu_kv_cache_dtype(o.device.cuda.kv_cache_dtype),
                                engine::kv_scale_granularity(o.device.cuda.kv_cache_scales));
  const auto& tok = m.require_tokenizer();
  std::vector<int32_t> tokens = tok.encode(text, true, /*parse_special=*/false);
  int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  std::fprintf(stderr, "%s: %zu tokens, ctx %lld\n", o.file.c_str(), tokens.size(),
               (long long)o.ctx);
  auto on_chunk = [](int64_t c, double p) {
    std::fprintf(stderr, "[%lld]%.4f,", (long long)c, p);
    std::fflush(stderr);
  };
  auto r = on_gpu
               ? engine::perplexity_cuda(m, tokens, o.ctx, o.chunks, bos, on_chunk, o.device.cuda)
               : engine::perplexity(*m.model, tokens, o.ctx, o.chunks, bos, on_chunk);
  std::fprintf(stderr, "\n%lld chunks, %lld scored tokens, %.1f tokens/s\n", (long long)r.chunks,
               (long long)r.scored_tokens, double(r.chunks * o.ctx) / r.seconds);
  std::printf("PPL = %.4f\n", r.ppl);
  return 0;
}

}  // namespace

Runner add_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a text (llama-perplexity protocol)");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx", o->ctx, "tokens per chunk")->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "maximum number of chunks (default: all)");
  add_device_options(*cmd, o->device);
  return [o] { return run_perplexity(*o); };
}

}  // namespace lowbit::cli
