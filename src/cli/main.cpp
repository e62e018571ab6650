// lowbit command line: generate, perplexity, info, bench.
#include <omp.h>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "quant/plugin.h"

namespace lowbit::cli {

void add_model_options(CLI::App& cmd, ModelOptions& opts) {
  cmd.add_option("-m,--model", opts.model, "HF model directory, .gguf file or Hub id (org/name)")
      ->required();
  cmd.add_option("--quantization", opts.quantization,
                 "force a quantization method (must agree with the checkpoint; the online "
                 "methods int8, int4, bitsandbytes quantize float checkpoints while loading)");
  cmd.add_option("-t,--threads", opts.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  add_plugin_option(cmd, opts.plugins);
}

void add_plugin_option(CLI::App& cmd, std::vector<std::string>& plugins) {
  cmd.add_option("--plugin", plugins,
                 "load a quantization-method plugin (shared library; repeatable; also "
                 "LOWBIT_PLUGINS=a.so:b.so)")
      ->take_all()
      ->allow_extra_args(false);
}

quant::MethodRegistry method_registry(const std::vector<std::string>& plugins) {
  return quant::registry_with_plugins(plugins);
}

void apply_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

}  // namespace lowbit::cli

int main(int argc, char** argv) {
  CLI::App app{"lowbit: quantized LLM inference"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, lowbit::cli::Runner>> commands;
  auto add = [&](lowbit::cli::Runner (*fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    auto runner = fn(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(runner));
  };
  add(lowbit::cli::add_generate);
  add(lowbit::cli::add_perplexity);
  add(lowbit::cli::add_info);
  add(lowbit::cli::add_bench);
  add(lowbit::cli::add_eval);
  add(lowbit::cli::add_quantize);
  add(lowbit::cli::add_imatrix);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [cmd, run] : commands)
      if (cmd->parsed()) return run();
  } catch (const lowbit::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "lowbit: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
