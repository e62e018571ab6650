// `lowbit eval` through the real CLI: the quant card's table, JSON and markdown on stories260K
// Q8_0 vs F32 (perplexities equal to `lowbit perplexity`'s), online int4 against the same file,
// and clean one-line errors for models that do not share a vocabulary and for missing files.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace lowbit::testing {
namespace {
namespace fs = std::filesystem;

struct EvalRun {
  int exit_code = -1;
  bool signaled = false;
  std::string output;  // stdout, then stderr when merged
};

EvalRun run_lowbit(const std::string& args, bool with_stderr = true) {
  // Generous limit: the machine running the suite may be busy; a hang still fails.
  std::string cmd = "timeout 300 " + std::string(LOWBIT_BINARY_DIR) + "/bin/lowbit " + args +
                    (with_stderr ? " 2>&1" : " 2>/dev/null");
  EvalRun r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string f32() { return shared_path("models/stories260K/gguf/stories260K-F32.gguf"); }
std::string q8() { return source_path("tests/fixtures/llama_cpp/stories260K-Q8_0.gguf"); }
std::string text() { return shared_path("data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"); }

class EvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!shared_available()) GTEST_SKIP();
    dir_ = fs::temp_directory_path() /
           ("lowbit_eval_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void expect_error(const std::string& args, std::initializer_list<std::string> fragments) {
    EvalRun r = run_lowbit(args);
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("lowbit: error: "), std::string::npos) << r.output;
    for (const auto& f : fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << f << " in: " << r.output;
  }
  fs::path dir_;
};

// "PPL = <value>" of `lowbit perplexity`.
double perplexity_of(const std::string& model, const std::string& args) {
  EvalRun r = run_lowbit("perplexity --model " + model + " -f " + text() + " " + args, false);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto at = r.output.rfind("PPL = ");
  EXPECT_NE(at, std::string::npos) << r.output;
  return at == std::string::npos ? 0 : std::stod(r.output.substr(at + 6));
}

TEST_F(EvalCli, QuantCardOfQ8AgainstF32) {
  const std::string json_path = (dir_ / "card.json").string(),
                    md_path = (dir_ / "card.md").string();
  const std::string protocol = "--ctx 128 --chunks 3";
  EvalRun r = run_lowbit("eval --model " + q8() + " --reference " + f32() + " --file " + text() +
                             " " + protocol + " --bench-prompt 16 --bench-gen 4 --json " +
                             json_path + " --markdown " + md_path,
                         false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* row :
       {"perplexity", "KL divergence (mean)", "KL divergence (p99)", "top-1 agreement", "weights",
        "peak RSS", "pp16 tok/s", "tg4 tok/s", "stories260K-Q8_0.gguf", "stories260K-F32.gguf"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << " in:\n" << r.output;

  std::ifstream in(json_path);
  ASSERT_TRUE(in.good()) << json_path;
  auto j = nlohmann::json::parse(in);
  for (const char* key : {"ppl",
                          "ppl_reference",
                          "kld",
                          "kld_p99",
                          "top1",
                          "weight_bytes",
                          "weight_bytes_reference",
                          "peak_rss_bytes",
                          "peak_rss_bytes_reference",
                          "pp_tok_s",
                          "tg_tok_s",
                          "pp_tok_s_reference",
                          "tg_tok_s_reference",
                          "model",
                          "reference",
                          "method",
                          "method_reference",
                          "ctx",
                          "chunks",
                          "tokens"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["method"], "gguf");
  EXPECT_EQ(j["ctx"], 128);
  EXPECT_EQ(j["chunks"], 3);
  EXPECT_GT(j["tokens"].get<int64_t>(), 3 * 128);
  EXPECT_GT(j["kld"].get<double>(), 0.0);
  EXPECT_LT(j["kld"].get<double>(), 0.05);
  EXPECT_GE(j["kld_p99"].get<double>(), j["kld"].get<double>());
  EXPECT_GT(j["top1"].get<double>(), 0.8);
  EXPECT_LE(j["top1"].get<double>(), 1.0);
  // Q8_0 stores 34 bytes per 32 weights (F32: 128), the F32 norms aside.
  EXPECT_LT(j["weight_bytes"].get<uint64_t>(), j["weight_bytes_reference"].get<uint64_t>() / 2);
  // Each model's own process holds at least its weights.
  EXPECT_GT(j["peak_rss_bytes"].get<uint64_t>(), j["weight_bytes"].get<uint64_t>());
  EXPECT_GT(j["peak_rss_bytes_reference"].get<uint64_t>(),
            j["weight_bytes_reference"].get<uint64_t>());
  EXPECT_GT(j["pp_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["tg_tok_s_reference"].get<double>(), 0.0);
  // The same numbers `lowbit perplexity` prints (to its 4 decimals).
  EXPECT_NEAR(j["ppl"].get<double>(), perplexity_of(q8(), protocol), 5e-5);
  EXPECT_NEAR(j["ppl_reference"].get<double>(), perplexity_of(f32(), protocol), 5e-5);

  std::ifstream md(md_path);
  std::string table((std::istreambuf_iterator<char>(md)), {});
  EXPECT_EQ(table.rfind("|  | quantized | reference | ratio |\n|---|", 0), 0u) << table;
  EXPECT_NE(table.find("| top-1 agreement |"), std::string::npos) << table;
  EXPECT_NE(table.find("peak RSS: peak resident set of a separate process"), std::string::npos);
}

// --quantization applies to the quantized side only: the F32 file quantized online to int4
// against itself as stored.
TEST_F(EvalCli, OnlineQuantizationOfTheReference) {
  const std::string json_path = (dir_ / "int4.json").string();
  EvalRun r = run_lowbit(
      "eval --model " + f32() + " --reference " + f32() + " --quantization int4 --file " + text() +
          " --ctx 128 --chunks 2 --bench-prompt 8 --bench-gen 2 --json " + json_path,
      false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(json_path);
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["method"], "int4");
  EXPECT_EQ(j["method_reference"], "gguf");
  EXPECT_GT(j["kld"].get<double>(), 0.0);
  EXPECT_LT(j["top1"].get<double>(), 1.0);
  EXPECT_LT(j["weight_bytes"].get<uint64_t>(), j["weight_bytes_reference"].get<uint64_t>() / 2);
}

TEST_F(EvalCli, DifferentVocabulariesAreRefused) {
  const std::string tiny = source_path("tests/fixtures/tiny/llama3_rope_f32.gguf");
  expect_error("eval --model " + tiny + " --reference " + f32() + " --file " + text() +
                   " --bench-prompt 4 --bench-gen 2",
               {"llama3_rope_f32.gguf", "stories260K-F32.gguf", "300", "512", "tokenizer"});
}

TEST_F(EvalCli, MissingFilesAreNamed) {
  expect_error("eval --model " + q8() + " --reference " + f32() + " --file /nonexistent/text.txt",
               {"/nonexistent/text.txt", "cannot open"});
  expect_error("eval --model /nonexistent/q.gguf --reference " + f32() + " --file " + text() +
                   " --bench-prompt 4 --bench-gen 2",
               {"/nonexistent/q.gguf", "no such"});
  expect_error("eval --model " + q8() + " --reference /nonexistent/ref --file " + text(),
               {"/nonexistent/ref", "no such"});
}

TEST_F(EvalCli, TextShorterThanTwoChunksIsRefused) {
  const std::string short_text = (dir_ / "short.txt").string();
  std::ofstream(short_text) << "Once upon a time there was a cat.";
  expect_error("eval --model " + q8() + " --reference " + f32() + " --file " + short_text +
                   " --ctx 64 --bench-prompt 4 --bench-gen 2",
               {"tokens", "2 × ctx = 128"});
}

}  // namespace
}  // namespace lowbit::testing
