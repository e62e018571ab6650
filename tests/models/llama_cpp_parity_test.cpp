// Parity with llama.cpp on the same GGUF files: llama-perplexity's value (running estimate per
// chunk included) and greedy tokens. Fixture: tests/fixtures/llama_cpp/reference.json, made by
// tools/llama_cpp_reference.py (see its header; llama.cpp built by tools/build-llama-cpp.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {
namespace fs = std::filesystem;

nlohmann::json llama_cpp_reference() {
  std::ifstream in(source_path("tests/fixtures/llama_cpp/reference.json"));
  return nlohmann::json::parse(in);
}

// Reference paths are relative to the repository root, or absolute for the default model.
std::string model_path(const std::string& ref_path) {
  if (ref_path.find("SmolLM2-135M-Instruct") != std::string::npos) return smollm_gguf();
  if (ref_path.rfind("../shared/", 0) == 0)
    return shared_available() ? shared_path(ref_path.substr(10)) : "";
  return source_path(ref_path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Tolerance on the final perplexity. Both engines quantize activations to Q8 blocks for
// quantized weights; llama.cpp also keeps its KV cache in F16 and rounds activations to F16 for
// F16 weights, which this path does not (measured: stories260K Q4_0..Q8_0 within 0.004, SmolLM2
// Q4_1 on WikiText-2 within 0.009).
// SmolLM2-135M's Q4_1 file is chaotic at the 0.01 level: last-bit changes that are equally
// faithful to ggml (its x86 Q8_1 activation rounding, the attention variant) move its wikitext
// perplexity by 0.02-0.04. Measured 27.9374 with lowbit's f32 KV cache and 27.9542 with
// --kv-cache-dtype f16 (llama.cpp's default cache) against llama-perplexity's 27.9819; the
// stories260K files hold 0.005 here and 0.01 per type in llama_cpp_gguf_types_test.cpp.
double tolerance_for(const std::string& model) {
  if (model.find("SmolLM2") != std::string::npos) return 0.05;
  return 0.005;
}

// Runs the same protocol as the reference entry (its --chunks, if any) and compares.
void check_perplexity(const nlohmann::json& entry) {
  int64_t max_chunks = -1;
  std::string path = model_path(entry["model"]);
  std::string text_path = model_path(entry["text"]);
  if (path.empty() || !fs::exists(path) || text_path.empty()) GTEST_SKIP() << entry["model"];
  SCOPED_TRACE(entry["command"].get<std::string>());
  engine::LoadedModel m = load(path);
  const auto& tok = *m.tokenizer;
  std::vector<int32_t> tokens = tok.encode(read_file(text_path), true, /*parse_special=*/false);
  int32_t bos = tok.adds_bos() && tok.bos_id() ? *tok.bos_id() : -1;
  const int64_t ctx = entry["n_ctx"];
  if (entry["chunks_arg"].is_number_integer()) max_chunks = entry["chunks_arg"].get<int64_t>();
  auto r = engine::perplexity(*m.model, tokens, ctx, max_chunks, bos);
  const auto& per_chunk = entry["per_chunk"];
  EXPECT_EQ(r.chunks, entry["n_chunks"].get<int64_t>());
  ASSERT_LE(size_t(r.chunks), per_chunk.size());
  const double tol = tolerance_for(path);
  // F32 weights compute alike in both engines, so every running estimate after each chunk
  // agrees too (relative: early ones rest on few tokens).
  const bool same_compute = path.find("F32") != std::string::npos;
  for (int64_t c = 0; same_compute && c < r.chunks; ++c) {
    double expected = per_chunk[size_t(c)].get<double>();
    EXPECT_NEAR(r.ppl_after_chunk[size_t(c)], expected, expected * tol / 5)
        << "after chunk " << c + 1;
  }
  EXPECT_NEAR(r.ppl, entry["ppl"].get<double>(), tol);
}

TEST(LlamaCppParity, Stories260KF32PerplexityCtx256) {
  check_perplexity(llama_cpp_reference()["perplexity"][0]);
}

TEST(LlamaCppParity, Stories260KF32PerplexityCtx128) {
  check_perplexity(llama_cpp_reference()["perplexity"][1]);
}

TEST(LlamaCppParity, QuantizedStories260KPerplexity) {
  const auto ref = llama_cpp_reference();
  for (const auto& q : ref["quantized"]) {
    SCOPED_TRACE(q["type"].get<std::string>());
    check_perplexity(q["perplexity"]);
  }
}

TEST(LlamaCppParity, SmolLM2Perplexity) {
  if (smollm_gguf().empty()) GTEST_SKIP() << "set LOWBIT_SMOLLM_GGUF";
  auto ref = llama_cpp_reference()["perplexity"];
  for (const auto& e : ref)
    // The WikiText-2 entry (20 chunks of 512); the full TinyStories run takes too long for CI.
    if (e["model"].get<std::string>().find("SmolLM2") != std::string::npos &&
        e["chunks_arg"].is_number_integer())
      check_perplexity(e);
}

TEST(LlamaCppParity, GreedyTokensFromBos) {
  const auto ref = llama_cpp_reference();
  for (const auto& g : ref["greedy"]) {
    std::string path = model_path(g["model"]);
    if (path.empty() || !fs::exists(path)) continue;
    SCOPED_TRACE(path);
    engine::LoadedModel m = load(path);
    std::vector<int32_t> expected = g["tokens"].get<std::vector<int32_t>>();
    std::vector<int32_t> produced;
    engine::generate(*m.model, {g["bos"].get<int32_t>()}, int64_t(expected.size()),
                     m.config.max_position, {}, {}, [&](int32_t t) {
                       produced.push_back(t);
                       return true;
                     });
    // F32: every token. Quantized files: up to the first step whose reference top-2 margin
    // is within what llama.cpp's activation quantization moves logits by on this tiny model
    // (a near-tie either engine may break its own way).
    size_t comparable = expected.size();
    const auto& steps = g["steps"];
    bool quantized = path.find("F32") == std::string::npos;
    for (size_t i = 0; quantized && i < steps.size(); ++i)
      if (steps[i]["margin"].get<double>() < 0.05) {
        comparable = i;
        break;
      }
    ASSERT_GE(produced.size(), comparable);
    for (size_t i = 0; i < comparable; ++i) ASSERT_EQ(produced[i], expected[i]) << "step " << i;
  }
}

}  // namespace
}  // namespace lowbit::testing
