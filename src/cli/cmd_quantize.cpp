// `lowbit quantize`: writes a GGUF of a llama-quantize file type (Q4_K_M, Q8_0, IQ4_XS, ...)
// from a GGUF model, with llama-quantize's per-tensor mixture rules and byte-exact quantizers
// (io/gguf_export.h). Optional --imatrix: an importance matrix in llama.cpp's imatrix GGUF
// format (llama-imatrix or `lowbit imatrix`).
// `lowbit imatrix`: runs a model over a text (llama-perplexity's chunks) and writes the mean
// squared input activation of every linear layer in that format (engine/imatrix_collector.h).
#include <omp.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "engine/generate.h"
#include "engine/imatrix_collector.h"
#include "engine/model_loader.h"
#include "io/gguf.h"
#include "io/gguf_export.h"
#include "io/gguf_imatrix.h"
#include "kernels/cpu/gguf_quantize.h"

namespace lowbit::cli {
namespace {

struct QuantizeOptions {
  std::string model, out, type, imatrix, output_type, token_embd_type;
  int threads = 0;
  bool pure = false, dry_run = false, quiet = false;
};

// A tensor type named on the command line ("q8_0", "F16"): one lowbit can write.
DType tensor_type_option(const std::string& opt, const std::string& v) {
  for (int i = 0; i < int(DType::kCount); ++i) {
    const std::string_view n = name(DType(i));
    if (n.size() != v.size()) continue;
    bool same = true;
    for (size_t k = 0; k < n.size() && same; ++k)
      same = std::toupper(static_cast<unsigned char>(v[k])) == n[k];
    if (same && kernels::cpu::gguf_quantize_supports(DType(i))) return DType(i);
  }
  fail("{} {}: expected one of {}", opt, v, kernels::cpu::gguf_quantize_supported_list());
}

int run_quantize(const QuantizeOptions& o) {
  apply_threads(o.threads);
  if (std::filesystem::is_directory(o.model))
    fail(
        "{}: quantizing a Hugging Face directory is not supported yet; convert it to GGUF "
        "first (e.g. llama.cpp's convert_hf_to_gguf.py) and pass the .gguf",
        o.model);
  if (!o.dry_run && std::filesystem::exists(o.out) && std::filesystem::equivalent(o.model, o.out))
    fail("--out {} is the input file; write to another path", o.out);
  const auto t0 = std::chrono::steady_clock::now();
  auto in = io::GgufFile::open(o.model);
  std::unique_ptr<io::Imatrix> imatrix;
  if (!o.imatrix.empty()) imatrix = std::make_unique<io::Imatrix>(io::read_imatrix(o.imatrix));
  io::GgufExportOptions opts;
  opts.file_type = o.type;
  opts.pure = o.pure;
  opts.imatrix = imatrix.get();
  if (!o.output_type.empty())
    opts.overrides.output = tensor_type_option("--output-tensor-type", o.output_type);
  if (!o.token_embd_type.empty())
    opts.overrides.token_embd = tensor_type_option("--token-embedding-type", o.token_embd_type);
  const io::GgufExportResult r =
      o.dry_run ? io::plan_gguf_export(*in, opts) : io::export_gguf(*in, o.out, opts);
  if (!o.quiet) {
    for (const auto& t : r.tensors) {
      std::printf("%-36s %-16s %6s -> %-6s%s%s%s\n", t.name.c_str(), shape_string(t.shape).c_str(),
                  std::string(name(t.from)).c_str(), std::string(name(t.to)).c_str(),
                  t.copied ? " (copied)" : "", t.used_imatrix ? " (imatrix)" : "",
                  t.note.empty() ? "" : ("  [" + t.note + "]").c_str());
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %s: %zu tensors, %.2f MiB -> %.2f MiB (%s), %.1f s, %d threads\n",
              o.dry_run ? "would write" : "wrote", o.out.c_str(), r.tensors.size(),
              double(r.bytes_in) / (1 << 20), double(r.bytes_out) / (1 << 20), o.type.c_str(), secs,
              omp_get_max_threads());
  return 0;
}

struct ImatrixOptions {
  ModelOptions model;
  std::string file, out;
  int64_t ctx = 512;
  int64_t chunks = -1;
  bool process_output = false;
};

int run_imatrix(const ImatrixOptions& o) {
  apply_threads(o.model.threads);
  std::ifstream f(o.file, std::ios::binary);
  if (!f) fail("{}: cannot open", o.file);
  std::stringstream text;
  text << f.rdbuf();
  auto registry = method_registry(o.model.plugins);
  engine::LoadedModel m = engine::load_model(o.model.model, {o.model.quantization, true}, registry);
  const auto& tok = m.require_tokenizer();
  const std::vector<int32_t> tokens = tok.encode(text.str(), true, /*parse_special=*/false);
  const int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  if (int64_t(tokens.size()) < 2 * o.ctx)
    fail("{}: {} tokens; need at least 2 × --ctx ({}) for one chunk", o.file, tokens.size(),
         2 * o.ctx);
  engine::ImatrixCollector collector(o.process_output);
  auto on_chunk = [](int64_t c, double p) {
    std::fprintf(stderr, "[%lld]%.4f,", (long long)c, p);
    std::fflush(stderr);
  };
  const auto r = engine::perplexity(*m.model, tokens, o.ctx, o.chunks, bos, on_chunk);
  const io::Imatrix im = collector.result({o.file}, uint32_t(r.chunks), uint32_t(o.ctx));
  if (im.entries.empty())
    fail("{}: no llama-family linear layers were seen; cannot write an imatrix", o.model.model);
  io::write_imatrix(im, o.out);
  std::fprintf(stderr, "\n");
  std::printf("wrote %s: %zu matrices, %lld chunks of %lld tokens; PPL = %.4f\n", o.out.c_str(),
              im.entries.size(), (long long)r.chunks, (long long)o.ctx, r.ppl);
  return 0;
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  auto* cmd = app.add_subcommand(
      "quantize", "write a GGUF of a llama-quantize type (Q4_K_M, Q8_0, IQ4_XS, ...) from a GGUF");
  cmd->add_option("-m,--model", o->model, "input model (.gguf)")->required();
  cmd->add_option("-o,--out", o->out, "output .gguf (written to a temp file, then renamed)")
      ->required();
  cmd->add_option("--type", o->type, "file type: " + io::gguf_file_type_list())->required();
  cmd->add_option("--imatrix", o->imatrix, "importance matrix (llama.cpp imatrix GGUF)");
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--output-tensor-type", o->output_type,
                  "type of output.weight (and of tied token embeddings)");
  cmd->add_option("--token-embedding-type", o->token_embd_type, "type of token_embd.weight");
  cmd->add_flag("--pure", o->pure, "no mixture: every quantizable tensor gets the type itself");
  cmd->add_flag("--dry-run", o->dry_run, "print the per-tensor types without writing");
  cmd->add_flag("-q,--quiet", o->quiet, "only print the summary line");
  return [o] { return run_quantize(*o); };
}

Runner add_imatrix(CLI::App& app) {
  auto o = std::make_shared<ImatrixOptions>();
  auto* cmd = app.add_subcommand(
      "imatrix", "importance matrix of a model over a text (llama.cpp imatrix GGUF format)");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->file, "calibration text")->required();
  cmd->add_option("-o,--out", o->out, "output imatrix .gguf")->required();
  cmd->add_option("-c,--ctx", o->ctx, "tokens per chunk (default 512)")
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "maximum number of chunks (default: all)");
  cmd->add_flag("--process-output", o->process_output, "also collect lm_head (output.weight)");
  return [o] { return run_imatrix(*o); };
}

}  // namespace lowbit::cli
