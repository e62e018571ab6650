// `lowbit eval`'s comparison on whole models: a model against itself gives KLD 0 and full top-1
// agreement; the llama.cpp-quantized stories260K files against the F32 GGUF give llama.cpp's
// KL divergence and top-1 agreement, and perplexities identical to engine::perplexity().

#include "engine/eval.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

struct Text {
  std::vector<int32_t> tokens;
  int32_t bos = -1;
};

// The TinyStories sample tokenized as `lowbit perplexity` does.
Text tinystories(const engine::LoadedModel& m) {
  std::ifstream in(shared_path("data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"),
                   std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_FALSE(text.empty());
  const auto& tok = m.require_tokenizer();
  Text t;
  t.tokens = tok.encode(text, true, /*parse_special=*/false);
  t.bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  return t;
}

std::string f32_path() { return shared_path("models/stories260K/gguf/stories260K-F32.gguf"); }
std::string quantized_path(const std::string& type) {
  return source_path("tests/fixtures/llama_cpp/stories260K-" + type + ".gguf");
}

TEST(Eval, ModelAgainstItselfHasZeroDivergence) {
  if (!shared_available()) GTEST_SKIP();
  engine::LoadedModel a = load(f32_path());
  engine::LoadedModel b = load(f32_path());
  Text text = tinystories(a);
  // The same object on both sides, and two loads of the same file.
  for (auto* other : {a.model.get(), b.model.get()}) {
    auto r = engine::compare_models(*a.model, *other, text.tokens, 128, 4, text.bos);
    EXPECT_EQ(r.chunks, 4);
    EXPECT_EQ(r.scored_tokens, 4 * (128 - 1 - 64));
    EXPECT_EQ(r.kld, 0.0);
    EXPECT_EQ(r.kld_p99, 0.0);
    EXPECT_EQ(r.top1, 1.0);
    EXPECT_EQ(r.ppl, r.ppl_reference);
    EXPECT_GT(r.ppl, 1.0);
  }
}

// llama-perplexity --kl-divergence on the same files (tests/fixtures/llama_cpp/
// kld_reference.json, from tools/llama_cpp_kld_reference.py). llama.cpp keeps the reference's
// log-probabilities as 16-bit values and runs its own forward pass (F16 KV cache), so the two
// agree closely but not exactly (measured: see the printed lines).
TEST(Eval, MatchesLlamaCppKlDivergence) {
  if (!shared_available()) GTEST_SKIP();
  std::ifstream in(source_path("tests/fixtures/llama_cpp/kld_reference.json"));
  const auto fixture = nlohmann::json::parse(in);
  const int64_t ctx = fixture["n_ctx"], chunks = fixture["chunks"];
  engine::LoadedModel ref = load(f32_path());
  Text text = tinystories(ref);
  double previous_kld = 0;
  for (const auto& e : fixture["entries"]) {
    const std::string model = e["model"];
    SCOPED_TRACE(model);
    engine::LoadedModel q = load(source_path(model));
    auto r = engine::compare_models(*q.model, *ref.model, text.tokens, ctx, chunks, text.bos);
    EXPECT_EQ(r.chunks, chunks);
    EXPECT_EQ(r.scored_tokens, chunks * (ctx - 1 - ctx / 2));
    const double kld = e["kld"], kld_p99 = e["kld_p99"], top1 = e["top1_percent"];
    std::printf("%s: kld %.6f (llama.cpp %.6f), p99 %.6f (%.6f), top1 %.3f %% (%.3f %%)\n",
                model.c_str(), r.kld, kld, r.kld_p99, kld_p99, 100 * r.top1, top1);
    // 5%: Q8_0's KLD (0.0011) is small enough that the fp32 summation order of the matrix
    // products moves it by several percent (measured against llama.cpp's 0.001120: 0.001143 with
    // the row-wise AVX-512 kernels, 0.001163 with the repacked GEMM, 0.001168 at
    // LOWBIT_CPU_ISA=avx2, 0.001171 at scalar); the other files stay within 0.7%.
    EXPECT_NEAR(r.kld, kld, 0.05 * kld);
    // The 99th percentile of ~2,000 positions rests on ~20 values: looser.
    EXPECT_NEAR(r.kld_p99, kld_p99, 0.2 * kld_p99);
    EXPECT_NEAR(100 * r.top1, top1, 1.0);
    EXPECT_NEAR(r.ppl, e["ppl"].get<double>(), 0.02);
    EXPECT_GT(r.kld_p99, r.kld);  // a heavy upper tail, as expected of quantization error
    EXPECT_LT(r.top1, 1.0);
    if (model.find("Q8_0") != std::string::npos) previous_kld = r.kld;
    if (model.find("Q4_0") != std::string::npos) EXPECT_GT(r.kld, 10 * previous_kld);
  }
}

// The perplexities are bit for bit those of engine::perplexity (`lowbit perplexity`) on each
// model alone.
TEST(Eval, PerplexitiesEqualThoseOfEachModelAlone) {
  if (!shared_available()) GTEST_SKIP();
  const int64_t ctx = 256, chunks = 4;
  engine::LoadedModel ref = load(f32_path());
  Text text = tinystories(ref);
  const double ref_alone = engine::perplexity(*ref.model, text.tokens, ctx, chunks, text.bos).ppl;
  for (const char* type : {"Q8_0", "Q4_0"}) {
    SCOPED_TRACE(type);
    engine::LoadedModel q = load(quantized_path(type));
    engine::check_same_vocabulary(q, ref);
    auto r = engine::compare_models(*q.model, *ref.model, text.tokens, ctx, chunks, text.bos);
    EXPECT_EQ(r.ppl, engine::perplexity(*q.model, text.tokens, ctx, chunks, text.bos).ppl);
    EXPECT_EQ(r.ppl_reference, ref_alone);
    EXPECT_GT(r.ppl, 1.0);
  }
}

TEST(Eval, RejectsModelsWithDifferentVocabularies) {
  if (!shared_available()) GTEST_SKIP();
  engine::LoadedModel ref = load(f32_path());
  engine::LoadedModel other = load(source_path("tests/fixtures/tiny/llama3_rope_f32.gguf"));
  try {
    engine::check_same_vocabulary(other, ref);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("llama3_rope_f32.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("stories260K-F32.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("300"), std::string::npos) << msg;
    EXPECT_NE(msg.find("512"), std::string::npos) << msg;
  }
  std::vector<int32_t> tokens(600, 1);
  EXPECT_THROW(engine::compare_models(*other.model, *ref.model, tokens, 64, 2, 1), Error);
}

}  // namespace
}  // namespace lowbit::testing
