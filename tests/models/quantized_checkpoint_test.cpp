// Real AWQ / GPTQ / compressed-tensors checkpoints written by the ecosystem's own tools
// (AutoAWQ, GPTQModel, llm-compressor) for stories260K, against each tool's own dequantized
// fp32 torch forward: every reference logits row within 1e-3 relative (max |diff| / max |ref|),
// the same argmax wherever the reference's top-2 margin is clear, and detect_method picking
// the method the tool wrote. Fixtures: tests/fixtures/quantized/<name>/ (config.json +
// model.safetensors) and <name>.{json,logits.f32}, made by tools/gen_quantized_checkpoints.py
// (see its header for the commands and tool versions). The same script writes SmolLM2-135M
// checkpoints (too large to commit) that QuantizedCheckpointSmolLM2.FromEnv checks when
// LOWBIT_QUANT_CKPT_DIR is set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/linear.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

constexpr double kTolerance = 1e-3;

struct ExactActivations {  // the tools' references compute in fp32: compare the exact path
  ExactActivations() { kernels::cpu::set_exact_activations(true); }
  ~ExactActivations() { kernels::cpu::set_exact_activations(false); }
};

// top1 - top2 of a logits row.
double margin(std::span<const float> row) {
  float a = -INFINITY, b = -INFINITY;
  for (float v : row) {
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) {
      b = v;
    }
  }
  return double(a) - double(b);
}

double max_abs(std::span<const float> row) {
  double m = 0;
  for (float v : row) m = std::max(m, double(std::abs(v)));
  return m;
}

// <base>.json + <base>.logits.f32 (base = absolute path without extension).
Reference read_reference_at(const std::string& base) {
  Reference r;
  std::ifstream meta(base + ".json");
  EXPECT_TRUE(meta.good()) << base << ".json";
  if (!meta.good()) return r;
  r.meta = nlohmann::json::parse(meta);
  std::ifstream bin(base + ".logits.f32", std::ios::binary | std::ios::ate);
  EXPECT_TRUE(bin.good()) << base << ".logits.f32";
  r.logits.resize(size_t(bin.tellg()) / sizeof(float));
  bin.seekg(0);
  bin.read(reinterpret_cast<char*>(r.logits.data()), std::streamsize(r.logits.size() * 4));
  return r;
}

// Checks the checkpoint <dir>/<name>/ against <dir>/<name>.{json,logits.f32} (dir relative to
// the repository root, or absolute). Teacher-forced: the reference greedy tokens are fed back,
// so one near-tie cannot derail the rest. Returns the largest relative error over all rows.
double check_checkpoint(const std::string& dir, const std::string& name) {
  const std::string path = (dir.starts_with("/") ? dir : source_path(dir)) + "/" + name;
  Reference ref = read_reference_at(path);
  if (ref.meta.is_null()) return INFINITY;
  static const auto registry = quant::MethodRegistry::builtin();
  EXPECT_EQ(engine::detect_method(path, "", registry), ref.meta["method"].get<std::string>())
      << path;
  engine::LoadedModel m = load(path);
  const int64_t vocab = ref.meta["vocab_size"].get<int64_t>();
  EXPECT_EQ(vocab, m.config.vocab_size);
  if (vocab != m.config.vocab_size) return INFINITY;
  size_t offset = 0;
  double worst = 0;
  for (const auto& c : ref.meta["cases"]) {
    std::vector<int32_t> ids = c["input_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    const int64_t rows = c["logit_rows"].get<int64_t>();
    SCOPED_TRACE(name + " prompt: " + c["prompt"].get<std::string>());
    auto cache = m.model->make_cache(int64_t(ids.size() + greedy.size()));
    std::vector<float> logits;
    m.model->forward(ids, cache, false, logits);
    for (int64_t step = 0; step < rows; ++step) {
      std::span<const float> expected(ref.logits.data() + offset + size_t(step * vocab),
                                      size_t(vocab));
      double err = relative_error(logits, expected);
      worst = std::max(worst, err);
      EXPECT_LE(err, kTolerance) << "logits row " << step;
      // A different argmax is only an error when the reference is not a near-tie.
      if (margin(expected) > 4 * kTolerance * max_abs(expected))
        EXPECT_EQ(engine::argmax(logits), greedy[size_t(step)]) << "greedy step " << step;
      if (step + 1 < rows) {
        int32_t one[1] = {greedy[size_t(step)]};
        m.model->forward(one, cache, false, logits);
      }
    }
    offset += size_t(rows * vocab);
  }
  EXPECT_EQ(offset, ref.logits.size()) << "fixture rows do not match its .json";
  return worst;
}

class QuantizedCheckpoint : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantizedCheckpoint, MatchesToolReference) {
  ExactActivations exact;
  double worst = check_checkpoint("tests/fixtures/quantized", GetParam());
  RecordProperty("max_relative_error", std::to_string(worst));
  std::printf("%s: max relative error %.3g\n", GetParam(), worst);
}

INSTANTIATE_TEST_SUITE_P(Stories260K, QuantizedCheckpoint,
                         ::testing::Values(
                             // llm-compressor -> compressed-tensors
                             "ct_gptq_w4a16_g32_bf16", "ct_gptq_w4a16_asym_g32_fp16",
                             "ct_rtn_w8a16_channel", "ct_rtn_w8a16_asym_int_quantized",
                             "ct_awq_w4a16_asym_g32",
                             // GPTQModel -> gptq
                             "gptq_w4_g32_sym_descact", "gptq_w4_g32_asym",
                             "gptq_w8_g32_sym_descact",
                             // AutoAWQ -> awq (GEMM)
                             "awq_w4_g32_gemm"),
                         [](const auto& info) { return std::string(info.param); });

// AutoAWQ's older checkpoints carry no quantization_config in config.json but a side file,
// quant_config.json, in its own key names: the same AWQ fixture rewritten that way.
TEST(QuantizedCheckpoint, AwqSideFileQuantConfigJson) {
  namespace fs = std::filesystem;
  ExactActivations exact;
  const std::string name = "awq_w4_g32_gemm";
  const fs::path src = source_path("tests/fixtures/quantized");
  const fs::path tmp =
      fs::temp_directory_path() / ("lowbit_awq_side_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp / name);
  for (const char* f : {"model.safetensors"}) fs::copy_file(src / name / f, tmp / name / f);
  for (const char* ext : {".json", ".logits.f32"})
    fs::copy_file(src / (name + ext), tmp / (name + ext));
  nlohmann::json config = nlohmann::json::parse(std::ifstream(src / name / "config.json"));
  const nlohmann::json q = config["quantization_config"];
  config.erase("quantization_config");
  std::ofstream(tmp / name / "config.json") << config.dump(1);
  std::ofstream(tmp / name / "quant_config.json") << nlohmann::json{
      {"w_bit", q["bits"]},
      {"q_group_size", q["group_size"]},
      {"zero_point", true},
      {"version", "GEMM"},
      {"modules_to_not_convert",
       q["modules_to_not_convert"]}}.dump(1);
  double worst = check_checkpoint(tmp.string(), name);
  EXPECT_LE(worst, kTolerance);
  fs::remove_all(tmp);
}

// SmolLM2-135M checkpoints from `tools/gen_quantized_checkpoints.py --model smol`: every
// <name>.json in $LOWBIT_QUANT_CKPT_DIR with its <name>/ directory.
TEST(QuantizedCheckpointSmolLM2, FromEnv) {
  const char* dir = std::getenv("LOWBIT_QUANT_CKPT_DIR");
  if (!dir || !std::filesystem::is_directory(dir))
    GTEST_SKIP() << "set LOWBIT_QUANT_CKPT_DIR (tools/gen_quantized_checkpoints.py --model smol)";
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto p = e.path();
    if (p.extension() == ".json" && std::filesystem::is_directory(p.parent_path() / p.stem()))
      names.push_back(p.stem().string());
  }
  std::sort(names.begin(), names.end());
  ASSERT_FALSE(names.empty()) << "no <name>.json + <name>/ checkpoints in " << dir;
  ExactActivations exact;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    double worst = check_checkpoint(std::filesystem::absolute(dir).string(), name);
    std::printf("%s: max relative error %.3g\n", name.c_str(), worst);
  }
}

}  // namespace
}  // namespace lowbit::testing
