// Whole tiny models stored as AWQ, GPTQ and compressed-tensors checkpoints (detected from
// config.json's quantization_config or quantize_config.json, loaded through the registry)
// against transformers run on the dequantized weights: logits within 1e-4 relative on the exact
// activation path and identical greedy tokens. Fixtures: tests/fixtures/tiny_quant/, made by
// tools/gen_quant_tiny_models.py (see its header for what each variant covers).
// FP8 and W8A8 checkpoints (HF "fp8" per-tensor static and block-wise, compressed-tensors
// FP8_DYNAMIC and INT8 W8A8, ModelOpt FP8 from hf_quant_config.json) run on the CPU with weights
// dequantized and activations rounded as the scheme says, against transformers with the same
// activation rounding in pre-hooks; fixtures made by tools/gen_fp8_tiny_models.py.
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
  // transformers computes with the dequantized weights in fp32: compare the exact path.
  kernels::cpu::set_exact_activations(true);
  double err = check_against_reference(path, name, kDir);
  kernels::cpu::set_exact_activations(false);
  std::printf("  %s (%s): max relative logits error %.3g\n", name.c_str(), method.c_str(), err);
}

TEST(QuantizedCheckpoints, AwqLlama) { check("awq_llama", "awq"); }
TEST(QuantizedCheckpoints, GptqQwen2ActOrder) { check("gptq_qwen2_act_order", "gptq"); }
TEST(QuantizedCheckpoints, GptqLlama3BitV2SideFile) { check("gptq_llama_3bit_v2", "gptq"); }
TEST(QuantizedCheckpoints, GptqLlama8BitSym) { check("gptq_llama_8bit_sym", "gptq"); }
TEST(QuantizedCheckpoints, CompressedTensorsW4A16Asym) {
  check("ct_llama_w4a16_asym", "compressed-tensors");
}
TEST(QuantizedCheckpoints, CompressedTensorsW8A16Qwen2) {
  check("ct_qwen2_w8a16", "compressed-tensors");
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

// The default activation path (int8 blocks where the kernels use them) stays close and keeps
// the greedy tokens of a model with comfortable margins.
TEST(QuantizedCheckpoints, DefaultActivationsStayClose) {
  const std::string name = "awq_llama";
  Reference ref = read_reference(name, kDir);
  engine::LoadedModel m = load(source_path(std::string(kDir) + "/" + name));
  const auto& c = ref.meta["cases"][0];
  std::vector<int32_t> ids = c["input_ids"].get<std::vector<int32_t>>();
  auto cache = m.model->make_cache(int64_t(ids.size()) + 1);
  std::vector<float> logits;
  m.model->forward(ids, cache, false, logits);
  const int64_t vocab = ref.meta["vocab_size"].get<int64_t>();
  std::span<const float> expected(ref.logits.data(), size_t(vocab));
  EXPECT_LT(relative_error(logits, expected), 3e-2);
  EXPECT_EQ(engine::argmax(logits), c["greedy_ids"][0].get<int32_t>());
}

}  // namespace
}  // namespace lowbit::testing
