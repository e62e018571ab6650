// Helpers for whole-model tests: load a model by path, compare logits with a tolerance, and
// check a model against a reference fixture (<dir>/<name>.json + <name>.logits.f32, written by
// tools/gen_hf_reference.py and tools/gen_tiny_models.py).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/model_loader.h"
#include "test_paths.h"

namespace lowbit::testing {

inline engine::LoadedModel load(const std::string& path, const std::string& quantization = "") {
  static const auto registry = quant::MethodRegistry::builtin();
  return engine::load_model(path, {quantization, false}, registry);
}

// max |a - b| / max |b|: the relative error measure used against reference logits.
inline double relative_error(std::span<const float> a, std::span<const float> b) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(a[i]) - double(b[i])));
    max_ref = std::max(max_ref, std::abs(double(b[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// Path of the default model GGUF (scripts/fetch-default-model.sh), or "" when absent.
inline std::string smollm_gguf() {
  const char* p = std::getenv("LOWBIT_SMOLLM_GGUF");
  return p ? p : "";
}

struct Reference {
  nlohmann::json meta;
  std::vector<float> logits;  // all cases' rows, concatenated
};

// `dir` is relative to the repository root.
inline Reference read_reference(const std::string& name,
                                const std::string& dir = "tests/fixtures/reference") {
  Reference r;
  std::string base = source_path(dir + "/" + name);
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
// comparing every reference logits row (relative error <= 1e-4) and the argmax at each step;
// then the engine's own greedy loop must give the same tokens. Returns the largest relative
// error seen over all rows.
inline double check_against_reference(const std::string& model_path, const std::string& fixture,
                                      const std::string& dir = "tests/fixtures/reference") {
  Reference ref = read_reference(fixture, dir);
  engine::LoadedModel m = load(model_path);
  const int64_t vocab = ref.meta["vocab_size"].get<int64_t>();
  EXPECT_EQ(vocab, m.config.vocab_size);
  if (vocab != m.config.vocab_size) return INFINITY;
  size_t offset = 0;
  double worst = 0;
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
        double err = relative_error(logits, expected);
        worst = std::max(worst, err);
        EXPECT_LE(err, 1e-4) << "logits row " << step;
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
  return worst;
}

}  // namespace lowbit::testing
