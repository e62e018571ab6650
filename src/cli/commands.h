// Sub-commands of the `lowbit` CLI; each registers its options on the app and returns the
// function to run once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace lowbit::cli {

using Runner = std::function<int()>;

Runner add_generate(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_quantize(CLI::App& app);

// Options shared by commands that load a model.
struct ModelOptions {
  std::string model;
  std::string quantization;
  int threads = 0;  // 0 = all cores
};
void add_model_options(CLI::App& cmd, ModelOptions& opts);
void apply_threads(int threads);

}  // namespace lowbit::cli
