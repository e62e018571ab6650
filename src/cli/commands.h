// Sub-commands of the `lowbit` CLI; each registers its options on the app and returns the
// function to run once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "quant/registry.h"

namespace lowbit::cli {

using Runner = std::function<int()>;

Runner add_generate(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_imatrix(CLI::App& app);

// Options shared by commands that load a model.
struct ModelOptions {
  std::string model;
  std::string quantization;
  int threads = 0;                   // 0 = all cores
  std::vector<std::string> plugins;  // --plugin, in order
};
void add_model_options(CLI::App& cmd, ModelOptions& opts);
// `--plugin path.so` (repeatable): quantization-method plugins to load (quant/plugin_api.h).
void add_plugin_option(CLI::App& cmd, std::vector<std::string>& plugins);
// The built-in methods plus the plugins of LOWBIT_PLUGINS and then `plugins`.
quant::MethodRegistry method_registry(const std::vector<std::string>& plugins);
void apply_threads(int threads);

}  // namespace lowbit::cli
