// `lowbit eval`'s comparison on whole models: a model against itself gives KLD 0 and full top-1
// agreement; stories260K Q8_0 / Q4_0 (llama.cpp-quantized fixtures) against its F32 GGUF give
// perplexities identical to engine::perplexity() on each and small, ordered divergences.
#include "engine/eval.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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

struct QuantizedRun {
  engine::ComparisonResult eval;
  double ppl_alone = 0, ppl_reference_alone = 0;
};

QuantizedRun run_quantized(const std::string& type, int64_t ctx, int64_t chunks) {
  engine::LoadedModel ref = load(f32_path());
  engine::LoadedModel q = load(quantized_path(type));
  engine::check_same_vocabulary(q, ref);
  Text text = tinystories(ref);
  QuantizedRun r;
  r.eval = engine::compare_models(*q.model, *ref.model, text.tokens, ctx, chunks, text.bos);
  r.ppl_alone = engine::perplexity(*q.model, text.tokens, ctx, chunks, text.bos).ppl;
  r.ppl_reference_alone = engine::perplexity(*ref.model, text.tokens, ctx, chunks, text.bos).ppl;
  return r;
}

TEST(Eval, QuantizedStories260KAgainstF32) {
  if (!shared_available()) GTEST_SKIP();
  const int64_t ctx = 256, chunks = 6;
  QuantizedRun q8 = run_quantized("Q8_0", ctx, chunks);
  QuantizedRun q4 = run_quantized("Q4_0", ctx, chunks);
  for (const auto* r : {&q8, &q4}) {
    // Bit for bit what `lowbit perplexity` reports on each model alone.
    EXPECT_EQ(r->eval.ppl, r->ppl_alone);
    EXPECT_EQ(r->eval.ppl_reference, r->ppl_reference_alone);
    EXPECT_EQ(r->eval.chunks, chunks);
    EXPECT_EQ(r->eval.scored_tokens, chunks * (ctx - 1 - ctx / 2));
    EXPECT_GT(r->eval.kld, 0.0);
    EXPECT_GE(r->eval.kld_p99, r->eval.kld);  // a heavy upper tail, not a single outlier
    EXPECT_GT(r->eval.top1, 0.7);             // full file: Q8_0 0.98, Q4_0 0.80
    EXPECT_LT(r->eval.top1, 1.0);
  }
  EXPECT_EQ(q8.eval.ppl_reference, q4.eval.ppl_reference);
  // Plausible sizes (full file, ctx 256: Q8_0 ~0.0012, Q4_0 ~0.04) and the expected order.
  EXPECT_LT(q8.eval.kld, 0.01);
  EXPECT_LT(q4.eval.kld, 0.2);
  EXPECT_LT(q8.eval.kld, q4.eval.kld);
  EXPECT_GT(q8.eval.top1, q4.eval.top1);
  EXPECT_LT(std::abs(q8.eval.ppl / q8.eval.ppl_reference - 1), 0.02);
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
