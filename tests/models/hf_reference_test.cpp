// Whole-model parity with Hugging Face transformers (fp32 CPU): logits within 1e-4 relative
// and identical greedy tokens. Fixtures: tests/fixtures/reference/*.json + *.logits.f32, made
// by tools/gen_hf_reference.py (see its header for the command).
#include <gtest/gtest.h>

#include <filesystem>

#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

TEST(HfReference, Stories260KSafetensors) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  check_against_reference(shared_path("models/stories260K/hf"), "stories260K_hf");
}

// The same weights as a GGUF (Q/K rows permuted, interleaved RoPE) give the same outputs.
TEST(HfReference, Stories260KGguf) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  check_against_reference(shared_path("models/stories260K/gguf/stories260K-F32.gguf"),
                          "stories260K_hf");
}

TEST(HfReference, SmolLM2Q4_1Gguf) {
  std::string path = smollm_gguf();
  if (path.empty() || !std::filesystem::exists(path))
    GTEST_SKIP() << "set LOWBIT_SMOLLM_GGUF (scripts/fetch-default-model.sh)";
  check_against_reference(path, "smollm2_135m_q4_1");
}

}  // namespace
}  // namespace lowbit::testing
