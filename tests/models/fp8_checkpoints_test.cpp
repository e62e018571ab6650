// Whole tiny models stored as FP8 and W8A8 checkpoints (HF "fp8" per-tensor static and
// block-wise, compressed-tensors FP8_DYNAMIC and INT8 W8A8, ModelOpt FP8), detected from
// config.json or hf_quant_config.json and run
// on the CPU (weights dequantized, activations rounded as the scheme says) against transformers
// on the dequantized weights with the same activation rounding in pre-hooks: logits within 1e-4
// relative and identical greedy tokens. Fixtures: tests/fixtures/tiny_quant/, made by
// tools/gen_fp8_tiny_models.py.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cpu/linear.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

constexpr const char* kDir = "tests/fixtures/tiny_quant";

void check(const std::string& name, const std::string& method) {
  const std::string path = source_path(std::string(kDir) + "/" + name);
  EXPECT_EQ(engine::detect_method(path, "", quant::MethodRegistry::builtin()), method);
  kernels::cpu::set_exact_activations(true);
  double err = check_against_reference(path, name, kDir);
  kernels::cpu::set_exact_activations(false);
  std::printf("  %s (%s): max relative logits error %.3g\n", name.c_str(), method.c_str(), err);
}

TEST(Fp8Checkpoints, HfPerTensorStaticLlama) { check("fp8_llama_static", "fp8"); }
TEST(Fp8Checkpoints, HfBlockWiseLlama) { check("fp8_llama_block", "fp8"); }
TEST(Fp8Checkpoints, CompressedTensorsFp8DynamicLlama) {
  check("ct_llama_fp8_dynamic", "compressed-tensors");
}
TEST(Fp8Checkpoints, CompressedTensorsInt8W8A8Qwen2) {
  check("ct_qwen2_int8_w8a8", "compressed-tensors");
}
// hf_quant_config.json only (no quantization_config); a wildcard excludes layer 1's MLP.
TEST(Fp8Checkpoints, ModelOptFp8Llama) { check("modelopt_llama_fp8", "modelopt"); }

}  // namespace
}  // namespace lowbit::testing
