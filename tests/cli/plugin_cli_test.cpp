// Quantization-method plugins through the real CLI: `lowbit info` lists the example plugin's
// method with its origin; `lowbit generate --plugin ... --quantization ternary` runs a tiny
// model end to end; LOWBIT_PLUGINS does the same; online built-in methods run from the CLI;
// plugin load errors are one clean line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_paths.h"

namespace lowbit::testing {
namespace {

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

CliRun run_cli(const std::string& args, const std::string& env = "") {
  std::string cmd =
      env + " timeout 120 " + std::string(LOWBIT_BINARY_DIR) + "/bin/lowbit " + args + " 2>&1";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const std::string kPlugin = std::string(LOWBIT_BINARY_DIR) + "/lib/lowbit_ternary_plugin.so";
const std::string kTiny = source_path("tests/fixtures/tiny/llama3_rope_f32.gguf");

TEST(PluginCli, InfoListsPluginMethods) {
  CliRun r = run_cli("info --plugin " + kPlugin);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"ternary", "plugin ", "lowbit_ternary_plugin.so", "int4", "int8",
                        "bitsandbytes", "min capability: any", "quantizes float checkpoints"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " in:\n" << r.output;
  r = run_cli("info");
  EXPECT_EQ(r.output.find("ternary"), std::string::npos) << r.output;
}

TEST(PluginCli, GenerateWithPlugin) {
  CliRun r = run_cli("generate -m " + kTiny + " --plugin " + kPlugin +
                     " --quantization ternary -p hello -n 6 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("generation: 6 tokens"), std::string::npos) << r.output;
  // The same through LOWBIT_PLUGINS.
  r = run_cli("generate -m " + kTiny + " --quantization ternary -p hello -n 3 --temperature 0",
              "LOWBIT_PLUGINS=" + kPlugin);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Without the plugin the method is unknown, and the message lists what is registered.
  r = run_cli("generate -m " + kTiny + " --quantization ternary -p hello -n 3");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("lowbit: error: unknown quantization method 'ternary'"),
            std::string::npos)
      << r.output;
}

TEST(PluginCli, OnlineBuiltinMethods) {
  for (const char* method : {"int8", "int4", "bitsandbytes"}) {
    CliRun r = run_cli("generate -m " + kTiny + " --quantization " + method +
                       " -p hello -n 4 --temperature 0");
    EXPECT_EQ(r.exit_code, 0) << method << ": " << r.output;
  }
  const std::string q4 = source_path("tests/fixtures/llama_cpp/stories260K-Q4_0.gguf");
  CliRun r = run_cli("generate -m " + q4 + " --quantization int8 -p hello -n 4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("already quantized (Q4_0)"), std::string::npos) << r.output;
}

TEST(PluginCli, LoadErrorsAreOneLine) {
  CliRun r = run_cli("generate -m " + kTiny + " --plugin /nonexistent/p.so -p hi -n 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("lowbit: error: plugin /nonexistent/p.so: no such file"),
            std::string::npos)
      << r.output;
  r = run_cli("info --plugin " + std::string(LOWBIT_BINARY_DIR) +
              "/lib/lowbit_test_plugin_wrong_abi.so");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("ABI version 999"), std::string::npos) << r.output;
  r = run_cli("info", "LOWBIT_PLUGINS=/nonexistent/q.so");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("LOWBIT_PLUGINS: plugin /nonexistent/q.so: no such file"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace lowbit::testing
