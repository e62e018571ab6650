// Parity with llama.cpp on the same GGUF files: llama-perplexity's value (running estimate per
// chunk included) and greedy tokens. Fixture: tests/fixtures/llama_cpp/reference.json, made by
// tools/llama_cpp_reference.py (see its header; llama.cpp built by tools/build-llama-cpp.sh).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "io/gguf.h"
#include "io/gguf_export.h"
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
// quantized weights and round them to F16 for F16 weights; llama.cpp also keeps its KV cache in
// F16, which this path (f32 cache) does not. stories260K holds 0.005 here and 0.01 per type in
// llama_cpp_gguf_types_test.cpp.
// SmolLM2-135M's Q4_1 file is chaotic at the 0.01 level, and 0.05 is about one standard
// deviation of arithmetic noise, not a bound on a systematic error. Every operation agrees with
// llama.cpp's up to fp32 rounding (layer 0 on WikiText chunk 1: RMSNorm within 1 ulp, the Q4_1
// product on the same input within 1e-7 of a float64 Q8_1 reference in both engines; the F16
// file of the same weights agrees within 0.001, below), but a 1-ulp difference that crosses a
// Q8 rounding boundary changes that activation by a quantization step, the change spreads, and
// after a few layers the two engines' per-token NLLs differ by ~0.08 nats rms, uncorrelated.
// Over 20 chunks the per-chunk mean NLL differences have sd ~0.007-0.009, so the final values
// land ~0.045 apart at one sigma (tools/perplexity_chunk_stats.py): llama.cpp itself gives
// 27.9819 (default: F16 cache, flash attention), 27.9593 (-fa off), 27.9864 (f32 cache, -fa
// off); lowbit 27.9374 (f32 cache), 27.9542 (--kv-cache-dtype f16), 27.9778 (LOWBIT_CPU_ISA=
// avx2), 27.9221 (LOWBIT_PROMPT_GEMM=all); llama.cpp with --rope-freq-base 100001 instead of
// 100000: 27.9298 (its F16 file: 27.8412 for 27.8433). Only bit-identical arithmetic (ggml's
// fp32 sum orders, RoPE angles, expf / SiLU approximations) would hold 0.01 on this file.
double tolerance_for(const nlohmann::json& entry) {
  const std::string model = entry["model"];
  if (entry.contains("derived_type")) return 0.01;  // SmolLM2 F16: measured 0.0006
  if (model.find("SmolLM2") != std::string::npos) return 0.05;
  return 0.005;
}

// Runs the same protocol as the reference entry (its --chunks, if any) and compares; `path`
// overrides the entry's model file.
void check_perplexity(const nlohmann::json& entry, std::string path = "") {
  int64_t max_chunks = -1;
  if (path.empty()) path = model_path(entry["model"]);
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
  const double tol = tolerance_for(entry);
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
        e["chunks_arg"].is_number_integer() && !e.contains("derived_type"))
      check_perplexity(e);
}

// The default model's weights in F16 (llama-quantize --allow-requantize to F16; lowbit's F16
// export of the Q4_1 file writes the same tensor bytes): no Q8 activation rounding, hence none
// of the Q4_1 file's chaos, and lowbit matches llama-perplexity within 0.001 (27.8427 vs
// 27.8433) — SmolLM2 held to 0.01.
TEST(LlamaCppParity, SmolLM2F16Perplexity) {
  if (smollm_gguf().empty()) GTEST_SKIP() << "set LOWBIT_SMOLLM_GGUF";
  bool ran = false;
  const auto ref = llama_cpp_reference();
  for (const auto& e : ref["perplexity"]) {
    if (!e.contains("derived_type")) continue;
    const std::string type = e["derived_type"];
    SCOPED_TRACE(type + " of " + smollm_gguf());
    // Removed however the check ends.
    struct TempFile {
      fs::path path;
      ~TempFile() {
        std::error_code ec;
        fs::remove(path, ec);
      }
    } file{fs::temp_directory_path() /
           ("lowbit-parity-SmolLM2-" + type + "-" + std::to_string(::getpid()) + ".gguf")};
    io::GgufExportOptions options;
    options.file_type = type;
    io::export_gguf(*io::GgufFile::open(smollm_gguf()), file.path.string(), options);
    check_perplexity(e, file.path.string());
    ran = true;
  }
  EXPECT_TRUE(ran) << "reference.json has no derived SmolLM2 entry";
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
