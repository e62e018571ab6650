#include "quant/act_quant.h"

#include <algorithm>
#include <cmath>

#include "core/half.h"

namespace lowbit::quant {
namespace {

// Rounds x[0, len) to the grid of scale s (s > 0).
void round_span(bool fp8, float s, float* x, int64_t len) {
  for (int64_t i = 0; i < len; ++i) {
    const float v = x[i] / s;
    if (fp8) {
      x[i] = fp8_e4m3_to_f32(f32_to_fp8(v, true)) * s;  // f32_to_fp8 saturates to ±448
    } else {
      x[i] = std::clamp(std::nearbyint(v), -128.0f, 127.0f) * s;
    }
  }
}

}  // namespace

std::string ActQuant::label() const {
  if (kind == Kind::kNone) return "none";
  const std::string type = fp8 ? "fp8" : "int8";
  if (kind == Kind::kStatic) return "static per-tensor " + type;
  return group > 0 ? "dynamic per-token group-" + std::to_string(group) + " " + type
                   : "dynamic per-token " + type;
}

void fake_quantize_activations(const ActQuant& a, float static_scale, float* x, int64_t m,
                               int64_t k) {
  if (a.kind == ActQuant::Kind::kNone) return;
  if (a.kind == ActQuant::Kind::kStatic) {
    round_span(a.fp8, static_scale, x, m * k);
    return;
  }
  const float qmax = a.fp8 ? 448.0f : 127.0f;
  const int64_t span = a.group > 0 ? a.group : k;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c0 = 0; c0 < k; c0 += span) {
      float* p = x + r * k + c0;
      const int64_t len = std::min(span, k - c0);
      float amax = a.min_amax;
      for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::abs(p[i]));
      if (amax == 0.0f) continue;  // an all-zero span stays zero
      round_span(a.fp8, amax / qmax, p, len);
    }
}

}  // namespace lowbit::quant
