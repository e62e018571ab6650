// Parity with llama.cpp for every GGUF type llama-quantize produces: stories260K quantized to
// each type (tests/fixtures/llama_cpp/types/, made with tools/llama_cpp_gguf_types.py, which
// also recorded llama-perplexity's value and llama.cpp's greedy tokens in gguf_types.json).
// lowbit must give the same perplexity (within 0.01, TinyStories at -c 256) and the same
// greedy tokens from BOS.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

nlohmann::json types_reference() {
  std::ifstream in(source_path("tests/fixtures/llama_cpp/gguf_types.json"));
  return nlohmann::json::parse(in);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class GgufTypesParity : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufTypesParity, PerplexityAndGreedyTokens) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available (TinyStories text)";
  const auto ref = types_reference();
  const nlohmann::json* entry = nullptr;
  for (const auto& e : ref["models"])
    if (e["name"] == GetParam()) entry = &e;
  ASSERT_NE(entry, nullptr) << GetParam();
  SCOPED_TRACE((*entry)["command"].get<std::string>());
  engine::LoadedModel m = load(source_path((*entry)["file"].get<std::string>()));
  // llama-perplexity's defaults: an F16 KV cache and CPU flash attention (F16 accumulation).
  m.model->set_kv_cache_dtype(engine::KvCacheDtype::kF16);

  const auto& p = (*entry)["perplexity"];
  const auto& tok = *m.tokenizer;
  std::vector<int32_t> tokens =
      tok.encode(read_text(shared_path(p["text"].get<std::string>().substr(10))), true, false);
  const int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  const int64_t max_chunks =
      p["chunks_arg"].is_number_integer() ? p["chunks_arg"].get<int64_t>() : -1;
  auto r = engine::perplexity(*m.model, tokens, p["n_ctx"].get<int64_t>(), max_chunks, bos);
  EXPECT_EQ(r.chunks, p["n_chunks"].get<int64_t>());
  // Measured with the f16 cache (the rest of the arithmetic as ggml: F16 weights see F16
  // activations, Q8_0 activations rounded as ggml's x86 quantizer): Q4_K_M +0.0007, IQ2_XXS
  // -0.0010, IQ4_NL_pure -0.0028 (f32 cache: 6.5185 / 6.8228 / 6.9475, i.e. up to 0.016 off).
  EXPECT_NEAR(r.ppl, p["ppl"].get<double>(), 0.01) << "llama.cpp PPL " << p["ppl"];

  const auto& g = (*entry)["greedy"];
  const auto expected = g["tokens"].get<std::vector<int32_t>>();
  std::vector<int32_t> produced;
  engine::generate(*m.model, {g["bos"].get<int32_t>()}, int64_t(expected.size()),
                   m.config.max_position, {}, {}, [&](int32_t t) {
                     produced.push_back(t);
                     return true;
                   });
  // Up to the first near-tie (llama.cpp top-2 margin < 0.05, as llama_cpp_parity_test): there
  // either engine's activation rounding may pick the other token (IQ4_NL: step 61, 0.0009).
  size_t comparable = expected.size();
  for (size_t i = 0; i < expected.size(); ++i)
    if (g["steps"][i]["margin"].get<double>() < 0.05) {
      comparable = i;
      break;
    }
  ASSERT_EQ(produced.size(), expected.size());
  for (size_t i = 0; i < comparable; ++i)
    ASSERT_EQ(produced[i], expected[i])
        << "step " << i << " (llama.cpp top-2 margin " << g["steps"][i]["margin"] << ")";
}

// Read at test registration: a missing or broken fixture registers no variants (and fails
// FixtureListsEveryVariant) instead of aborting test discovery.
std::vector<std::string> variant_names() {
  std::vector<std::string> out;
  std::ifstream in(source_path("tests/fixtures/llama_cpp/gguf_types.json"));
  const auto ref = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (ref.is_discarded() || !ref.contains("models")) return out;
  for (const auto& e : ref["models"]) out.push_back(e["name"]);
  return out;
}

TEST(GgufTypesParityFixture, FixtureListsEveryVariant) { EXPECT_FALSE(variant_names().empty()); }

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GgufTypesParity);
INSTANTIATE_TEST_SUITE_P(Stories260K, GgufTypesParity, ::testing::ValuesIn(variant_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace lowbit::testing
