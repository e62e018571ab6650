// Whole-model parity with Hugging Face transformers (fp32 CPU): logits within 1e-4 relative
// and identical greedy tokens. Fixtures: tests/fixtures/reference/*.json + *.logits.f32, made
// by tools/gen_hf_reference.py (see its header for the command).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

struct Reference {
  nlohmann::json meta;
  std::vector<float> logits;  // all cases' rows, concatenated
};

Reference read_reference(const std::string& name) {
  Reference r;
  std::string base = source_path("tests/fixtures/reference/" + name);
  std::ifstream meta(base + ".json");
  EXPECT_TRUE(meta.good()) << base << ".json";
  r.meta = nlohmann::json::parse(meta);
  std::ifstream bin(base + ".logits.f32", std::ios::binary | std::ios::ate);
  EXPECT_TRUE(bin.good()) << base << ".logits.f32";
  r.logits.resize(size_t(bin.tellg()) / sizeof(float));
  bin.seekg(0);
  bin.read(reinterpret_cast<char*>(r.logits.data()), std::streamsize(r.logits.size() * 4));
  return r;
}

// Teacher-forced comparison: feed the prompt, then the reference greedy tokens one at a time,
// comparing every reference logits row and the argmax at each step.
void check_against_reference(const std::string& model_path, const std::string& fixture) {
  Reference ref = read_reference(fixture);
  engine::LoadedModel m = load(model_path);
  const int64_t vocab = ref.meta["vocab_size"].get<int64_t>();
  ASSERT_EQ(vocab, m.config.vocab_size);
  size_t offset = 0;
  for (const auto& c : ref.meta["cases"]) {
    std::vector<int32_t> ids = c["input_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    const int64_t rows = c["logit_rows"].get<int64_t>();
    SCOPED_TRACE(fixture + " prompt: " + c["prompt"].get<std::string>());
    auto cache = m.model->make_cache(int64_t(ids.size() + greedy.size()));
    std::vector<float> logits;
    m.model->forward(ids, cache, false, logits);
    for (size_t step = 0; step < greedy.size(); ++step) {
      EXPECT_EQ(engine::argmax(logits), greedy[step]) << "greedy step " << step;
      if (int64_t(step) < rows) {
        std::span<const float> expected(ref.logits.data() + offset + step * vocab, size_t(vocab));
        EXPECT_LE(relative_error(logits, expected), 1e-4) << "logits row " << step;
      }
      int32_t one[1] = {greedy[step]};
      m.model->forward(one, cache, false, logits);
    }
    // The engine's own greedy loop gives the same tokens.
    std::vector<int32_t> produced;
    engine::generate(*m.model, ids, int64_t(greedy.size()), m.config.max_position, {}, {},
                     [&](int32_t t) {
                       produced.push_back(t);
                       return true;
                     });
    EXPECT_EQ(produced, greedy);
    offset += size_t(rows * vocab);
  }
  EXPECT_EQ(offset, ref.logits.size()) << "fixture rows do not match its .json";
}

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
