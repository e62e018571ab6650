// Helpers for whole-model tests: load a model by path, compare logits with a tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <span>
#include <string>

#include "engine/model_loader.h"

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

}  // namespace lowbit::testing
