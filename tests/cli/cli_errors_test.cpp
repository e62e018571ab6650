// Bad input through the real CLI: each case exits non-zero with one line naming the file or
// field and what was expected; never a crash (a signal) or a hang.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/kv_scale_checkpoint_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {
namespace fs = std::filesystem;

struct CliRun {
  int exit_code = -1;
  bool signaled = false;
  std::string output;  // stdout + stderr
};

CliRun run_cli(const std::string& args) {
  std::string cmd =
      "timeout 60 " + std::string(LOWBIT_BINARY_DIR) + "/bin/lowbit " + args + " 2>&1";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lowbit_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
  // Expect a clean failure whose single error line contains every fragment.
  void expect_error(const std::string& args, std::initializer_list<std::string> fragments) {
    CliRun r = run_cli(args);
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.exit_code, 124) << "timed out: " << r.output;
    EXPECT_NE(r.output.find("lowbit: error: "), std::string::npos) << r.output;
    for (const auto& f : fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << f << " in: " << r.output;
  }
  fs::path dir_;
};

std::string safetensors_bytes(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  uint64_t len = h.size();
  std::string out(reinterpret_cast<const char*>(&len), 8);
  return out + h + data;
}

const char* kStoriesConfig = R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
  "intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,
  "vocab_size":512,"max_position_embeddings":512,"rms_norm_eps":1e-5,"tie_word_embeddings":true})";

TEST_F(CliErrors, MissingPath) {
  expect_error("generate --model /nonexistent/model --prompt hi",
               {"/nonexistent/model", "no such"});
}

TEST_F(CliErrors, DirectoryWithoutConfig) {
  write("empty/readme.txt", "x");
  expect_error("generate --model " + (dir_ / "empty").string() + " --prompt hi", {"config.json"});
}

TEST_F(CliErrors, UnknownArchitecture) {
  write("gpt2/config.json", R"({"architectures":["GPT2LMHeadModel"],"model_type":"gpt2"})");
  expect_error("generate --model " + (dir_ / "gpt2").string() + " --prompt hi",
               {"GPT2LMHeadModel", "supported"});
}

TEST_F(CliErrors, TruncatedSafetensors) {
  write("trunc/config.json", kStoriesConfig);
  std::string bytes = safetensors_bytes(
      {{"model.norm.weight", {{"dtype", "F32"}, {"shape", {64}}, {"data_offsets", {0, 256}}}}},
      std::string(256, '\1'));
  write("trunc/model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error("generate --model " + (dir_ / "trunc").string() + " --prompt hi",
               {"model.safetensors"});
}

TEST_F(CliErrors, WrongTensorShape) {
  if (!shared_available()) GTEST_SKIP();
  // The real stories260K weights with a config that claims a larger hidden size.
  std::string cfg = kStoriesConfig;
  cfg.replace(cfg.find("\"hidden_size\":64"), 16, "\"hidden_size\":96");
  write("shape/config.json", cfg);
  fs::copy_file(shared_path("models/stories260K/hf/model.safetensors"),
                dir_ / "shape/model.safetensors");
  expect_error("perplexity --model " + (dir_ / "shape").string() + " -f /dev/null",
               {"model.embed_tokens.weight", "[512, 64]", "expected [512, 96]"});
}

TEST_F(CliErrors, TruncatedGguf) {
  if (!shared_available()) GTEST_SKIP();
  std::ifstream in(shared_path("models/stories260K/gguf/stories260K-F32.gguf"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::string path = write("t.gguf", bytes.substr(0, bytes.size() / 2));
  expect_error("generate --model " + path + " --prompt hi", {path});
}

TEST_F(CliErrors, GarbageGguf) {
  std::string path = write("g.gguf", std::string("GGUF\3\0\0\0", 8) + std::string(16, '\xff'));
  expect_error("generate --model " + path + " --prompt hi", {path});
}

TEST_F(CliErrors, PromptLongerThanContext) {
  if (!shared_available()) GTEST_SKIP();
  std::string model = shared_path("models/stories260K/gguf/stories260K-F32.gguf");
  expect_error("generate --model " + model +
                   " --ctx-size 16 --max-tokens 4 --prompt 'Once upon a time there was a very "
                   "long story about a girl named Lily who liked to play in the park'",
               {"exceeds the context of 16 tokens"});
}

// An FP8 KV scale tensor of the wrong shape (models/kv_scales.h): the load names it.
TEST_F(CliErrors, BadKvScaleTensor) {
  std::map<std::string, ExtraTensor> extra;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    extra[p + "k_scale"] = {{3}, {0.01f, 0.02f, 0.03f}};  // 2 kv heads: [1] or [2] expected
    extra[p + "v_scale"] = {{1}, {0.01f}};
  }
  const std::string dir = checkpoint_with_tensors("llama_linear_f32", "cli_bad_shape", extra);
  expect_error("perplexity --model " + dir + " -f /dev/null --kv-cache-dtype fp8",
               {"model.layers.0.self_attn.k_scale", "has shape [3]"});
}

TEST_F(CliErrors, BadSamplingValues) {
  if (!shared_available()) GTEST_SKIP();
  std::string model = shared_path("models/stories260K/gguf/stories260K-F32.gguf");
  expect_error("generate --model " + model + " --prompt hi --top-p 1.5", {"top-p"});
}

TEST_F(CliErrors, PickleCheckpointRefused) {
  write("pt/config.json", kStoriesConfig);
  write("pt/pytorch_model.bin", "not a pickle");
  expect_error("generate --model " + (dir_ / "pt").string() + " --prompt hi", {"safetensors"});
}

TEST(Cli, GenerateGreedyFromBosReproducesStories260K) {
  if (!shared_available()) GTEST_SKIP();
  CliRun r =
      run_cli("generate --model " + shared_path("models/stories260K/gguf/stories260K-F32.gguf") +
              " --prompt '' --temperature 0 --max-tokens 40");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Once upon a time, there was a little girl named Lily. She loved to "
                          "play outside in the park."),
            std::string::npos)
      << r.output;
}

TEST(Cli, InfoListsMethods) {
  CliRun r = run_cli("info");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("unquantized"), std::string::npos);
  EXPECT_NE(r.output.find("gguf"), std::string::npos);
}

// `info --kernels`: the kernel choice per format for the 8B gate/up and down shapes (sm_90
// assumed without a GPU): W4A16 decodes with wq_gemv, runs wq_gemm for mid-size m and
// dequantizes into cuBLASLt for large m.
TEST(Cli, InfoKernelsShowsTheChoicePerShape) {
  CliRun r = run_cli("info --kernels");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const size_t gate = r.output.find("gate/up [28672, 4096]"),
               down = r.output.find("down [4096, 14336]");
  ASSERT_NE(gate, std::string::npos) << r.output;
  ASSERT_NE(down, std::string::npos) << r.output;
  auto w4_row = [&](size_t from) {
    const size_t b = r.output.find("w4a16", from);
    return r.output.substr(b, r.output.find('\n', b) - b);
  };
  EXPECT_EQ(w4_row(gate).find("wq_gemv"), w4_row(gate).find("wq_")) << w4_row(gate);
  EXPECT_NE(w4_row(gate).find("wq_gemm"), std::string::npos) << w4_row(gate);
  EXPECT_NE(w4_row(down).find("wq_gemv"), std::string::npos) << w4_row(down);
  EXPECT_NE(w4_row(gate).find("wq_dequant_cublaslt"), std::string::npos) << w4_row(gate);
}

}  // namespace
}  // namespace lowbit::testing
