#include "engine/kv_cache.h"

#include <algorithm>
#include <cmath>

#include "core/half.h"

namespace lowbit::engine {
namespace {

bool is_fp8(KvCacheDtype d) { return d == KvCacheDtype::kFp8E4M3 || d == KvCacheDtype::kFp8E5M2; }

float fp8_max(KvCacheDtype d) { return d == KvCacheDtype::kFp8E4M3 ? 448.0f : 57344.0f; }

float amax(const float* x, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// x as a cache of dtype d returns it (scale: the layer's FP8 scale).
float round_through(KvCacheDtype d, float x, float scale) {
  switch (d) {
    case KvCacheDtype::kF32:
      return x;
    case KvCacheDtype::kBf16:
      return bf16_to_f32(f32_to_bf16(x));
    case KvCacheDtype::kFp8E4M3:
      return fp8_e4m3_to_f32(f32_to_fp8(x / scale, true)) * scale;
    case KvCacheDtype::kFp8E5M2:
      return fp8_e5m2_to_f32(f32_to_fp8(x / scale, false)) * scale;
  }
  return x;
}

}  // namespace

KvCacheDtype cpu_kv_cache_dtype(const std::string& name) {
  if (name == "auto" || name == "f32") return KvCacheDtype::kF32;
  if (name == "bf16") return KvCacheDtype::kBf16;
  if (name == "fp8" || name == "fp8_e4m3") return KvCacheDtype::kFp8E4M3;
  if (name == "fp8_e5m2") return KvCacheDtype::kFp8E5M2;
  fail("--kv-cache-dtype '{}' is not known; expected auto, f32, bf16, fp8, fp8_e4m3 or fp8_e5m2",
       name);
}

const char* kv_cache_dtype_name(KvCacheDtype d) {
  switch (d) {
    case KvCacheDtype::kF32:
      return "f32";
    case KvCacheDtype::kBf16:
      return "bf16";
    case KvCacheDtype::kFp8E4M3:
      return "fp8_e4m3";
    case KvCacheDtype::kFp8E5M2:
      return "fp8_e5m2";
  }
  return "?";
}

uint64_t KvCache::bytes() const {
  const uint64_t per = dtype_ == KvCacheDtype::kF32 ? 4 : dtype_ == KvCacheDtype::kBf16 ? 2 : 1;
  return 2 * keys_.size() * per;
}

std::pair<float, float> KvCache::scales(int64_t layer) const {
  if (!is_fp8(dtype_)) return {1.0f, 1.0f};
  return {k_scale_[size_t(layer)], v_scale_[size_t(layer)]};
}

void KvCache::write(int64_t layer, int64_t first, int64_t n, const float* k, const float* v) {
  LOWBIT_CHECK(first >= 0 && first + n <= capacity_, "rows {}..{} outside the capacity {}", first,
               first + n, capacity_);
  const int64_t row = num_kv_heads_ * head_dim_;
  float& ks = k_scale_[size_t(layer)];
  float& vs = v_scale_[size_t(layer)];
  if (is_fp8(dtype_) && ks == 0.0f) {  // first tokens of this layer: calibrate, as the GPU does
    ks = std::max(amax(k, n * row), 1e-12f) / fp8_max(dtype_);
    vs = std::max(amax(v, n * row), 1e-12f) / fp8_max(dtype_);
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t g = 0; g < num_kv_heads_; ++g) {
      const float* ksrc = k + (t * num_kv_heads_ + g) * head_dim_;
      const float* vsrc = v + (t * num_kv_heads_ + g) * head_dim_;
      float* kdst = keys(layer, g) + (first + t) * head_dim_;
      float* vdst = values(layer, g) + (first + t) * head_dim_;
      if (dtype_ == KvCacheDtype::kF32) {  // the default: a plain copy
        std::copy_n(ksrc, head_dim_, kdst);
        std::copy_n(vsrc, head_dim_, vdst);
        continue;
      }
      for (int64_t d = 0; d < head_dim_; ++d) {
        kdst[d] = round_through(dtype_, ksrc[d], ks);
        vdst[d] = round_through(dtype_, vsrc[d], vs);
      }
    }
}

}  // namespace lowbit::engine
