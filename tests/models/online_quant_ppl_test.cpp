// Quality of the online methods on a real model: stories260K F32 GGUF quantized while loading
// (`--quantization int8|int4|bitsandbytes`), perplexity with llama-perplexity's protocol at
// ctx 256 on the first 100 TinyStories validation stories (F32: 6.6788, as llama.cpp).
//
// int8 must stay within 0.05 of F32 (measured 6.6845 with its int8 lm_head).
// int4 must be no worse than llama.cpp's Q4_0 of the same model (7.4043). Both follow
// llama-quantize's layer rules: ffn_down (in_features 172, no multiple of 32 divides it) stays in
// its float dtype, and the tied output matrix is kept at 8 bits. Measured: int4 7.3767 (with
// ffn_down quantized in groups of 86, as before: 7.6900); NF4 (bitsandbytes, blocksize 64,
// quantizes ffn_down, keeps lm_head in F32) 7.8228. The bounds below guard those numbers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/generate.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {
namespace fs = std::filesystem;

constexpr double kLlamaCppQ4_0Ppl = 7.4043;  // llama-perplexity, stories260K-Q4_0, ctx 256
constexpr double kInt4Bound = 7.40;          // measured 7.3767
constexpr double kNf4Bound = 7.86;           // measured 7.8228

double stories_perplexity(const std::string& quantization,
                          engine::KvCacheDtype kv = engine::KvCacheDtype::kF32) {
  const std::string model = shared_path("models/stories260K/gguf/stories260K-F32.gguf");
  const std::string text_path =
      shared_path("data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt");
  engine::LoadedModel m = load(model, quantization);
  EXPECT_EQ(m.quant->name(), quantization.empty() ? "gguf" : quantization);
  m.model->set_kv_cache_dtype(kv);
  std::ifstream in(text_path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto& tok = *m.tokenizer;
  std::vector<int32_t> tokens = tok.encode(text, true, /*parse_special=*/false);
  int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  auto r = engine::perplexity(*m.model, tokens, 256, -1, bos);
  std::printf("stories260K %s: ppl %.4f over %lld chunks\n",
              quantization.empty() ? "F32" : quantization.c_str(), r.ppl, (long long)r.chunks);
  return r.ppl;
}

class OnlineQuantPerplexity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!shared_available() ||
        !fs::exists(shared_path("models/stories260K/gguf/stories260K-F32.gguf")))
      GTEST_SKIP() << "../shared/models/stories260K not available";
    static const double f32 = stories_perplexity("");
    f32_ = f32;
  }
  double f32_ = 0;
};

TEST_F(OnlineQuantPerplexity, Int8WithinFiveHundredthsOfF32) {
  double ppl = stories_perplexity("int8");
  EXPECT_NEAR(ppl, f32_, 0.05);
}

TEST_F(OnlineQuantPerplexity, Int4) {
  double ppl = stories_perplexity("int4");
  EXPECT_GT(ppl, f32_);  // it did quantize
  EXPECT_LE(ppl, kInt4Bound);
  EXPECT_LE(ppl, kLlamaCppQ4_0Ppl);
}

TEST_F(OnlineQuantPerplexity, BitsandbytesNf4) {
  double ppl = stories_perplexity("bitsandbytes");
  EXPECT_GT(ppl, f32_);
  EXPECT_LE(ppl, kNf4Bound);
}

// --kv-cache-dtype on the CPU (engine/kv_cache.h): measured f32 6.6788, bf16 6.6781,
// fp8_e4m3 6.9524, fp8_e5m2 8.1146 (per-layer scales from the first chunk, kept for the rest;
// this tiny model is sensitive: SmolLM2-135M moves 26.2780 -> 26.3687 with e4m3, docs/cuda.md).
TEST_F(OnlineQuantPerplexity, KvCacheDtypes) {
  EXPECT_NEAR(stories_perplexity("", engine::KvCacheDtype::kBf16), f32_, 0.005);
  const double e4m3 = stories_perplexity("", engine::KvCacheDtype::kFp8E4M3);
  EXPECT_GT(e4m3, f32_);
  EXPECT_LT(e4m3, 6.98);
  EXPECT_LT(stories_perplexity("", engine::KvCacheDtype::kFp8E5M2), 8.2);
}

}  // namespace
}  // namespace lowbit::testing
