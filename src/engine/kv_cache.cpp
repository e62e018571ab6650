#include "engine/kv_cache.h"

#include <algorithm>
#include <cmath>

#include "core/half.h"

namespace lowbit::engine {
namespace {

// max |x| over rows [n] of one head: x[t · stride + d] for d < head_dim.
float head_amax(const float* x, int64_t n, int64_t stride, int64_t head_dim) {
  float m = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t d = 0; d < head_dim; ++d) m = std::max(m, std::fabs(x[t * stride + d]));
  return m;
}

// x as a cache of dtype d returns it (scale: the layer's FP8 scale).
float round_through(KvCacheDtype d, float x, float scale) {
  switch (d) {
    case KvCacheDtype::kF32:
      return x;
    case KvCacheDtype::kBf16:
      return bf16_to_f32(f32_to_bf16(x));
    case KvCacheDtype::kF16:
      return f16_to_f32(f32_to_f16(x));
    case KvCacheDtype::kFp8E4M3:
      return fp8_e4m3_to_f32(f32_to_fp8(x / scale, true)) * scale;
    case KvCacheDtype::kFp8E5M2:
      return fp8_e5m2_to_f32(f32_to_fp8(x / scale, false)) * scale;
  }
  return x;
}

}  // namespace

bool is_fp8(KvCacheDtype d) { return d == KvCacheDtype::kFp8E4M3 || d == KvCacheDtype::kFp8E5M2; }

float fp8_max(KvCacheDtype d) { return d == KvCacheDtype::kFp8E4M3 ? 448.0f : 57344.0f; }

KvScaleGranularity kv_scale_granularity(const std::string& name) {
  if (name == "auto" || name == "tensor") return KvScaleGranularity::kTensor;
  if (name == "head") return KvScaleGranularity::kHead;
  fail("--kv-cache-scales '{}' is not known; expected auto, tensor or head", name);
}

const char* kv_scale_granularity_name(KvScaleGranularity g) {
  return g == KvScaleGranularity::kHead ? "head" : "tensor";
}

void KvScales::calibrate(int64_t layer, int64_t n, int64_t head_dim, const float* keys,
                         const float* values, float fmax) {
  const int64_t H = num_kv_heads, row = H * head_dim;
  float* ks = k.data() + layer * H;
  float* vs = v.data() + layer * H;
  for (int64_t g = 0; g < H; ++g) {
    ks[g] = head_amax(keys + g * head_dim, n, row, head_dim);
    vs[g] = head_amax(values + g * head_dim, n, row, head_dim);
  }
  if (granularity == KvScaleGranularity::kTensor) {
    std::fill(ks, ks + H, *std::max_element(ks, ks + H));
    std::fill(vs, vs + H, *std::max_element(vs, vs + H));
  }
  // An all-zero head would give scale 0 (and 0/0 later): keep a tiny positive scale, as the GPU.
  for (int64_t g = 0; g < H; ++g) {
    ks[g] = std::max(ks[g], 1e-12f) / fmax;
    vs[g] = std::max(vs[g], 1e-12f) / fmax;
  }
}

KvCache::KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity,
                 KvCacheDtype dtype, std::shared_ptr<KvScales> scales)
    : num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      capacity_(capacity),
      layer_stride_(num_kv_heads * capacity * head_dim),
      dtype_(dtype),
      keys_(size_t(num_layers * num_kv_heads * capacity * head_dim)),
      values_(keys_.size()),
      scales_(std::move(scales)) {
  if (!scales_)
    scales_ = std::make_shared<KvScales>(num_layers, num_kv_heads, KvScaleGranularity::kTensor);
  LOWBIT_CHECK(scales_->num_kv_heads == num_kv_heads &&
                   int64_t(scales_->k.size()) == num_layers * num_kv_heads,
               "KV scales for {} values of {} heads, cache of {} layers × {} heads",
               scales_->k.size(), scales_->num_kv_heads, num_layers, num_kv_heads);
}

KvCacheDtype cpu_kv_cache_dtype(const std::string& name) {
  if (name == "auto" || name == "f32") return KvCacheDtype::kF32;
  if (name == "bf16") return KvCacheDtype::kBf16;
  if (name == "f16") return KvCacheDtype::kF16;
  if (name == "fp8" || name == "fp8_e4m3") return KvCacheDtype::kFp8E4M3;
  if (name == "fp8_e5m2") return KvCacheDtype::kFp8E5M2;
  fail(
      "--kv-cache-dtype '{}' is not known; expected auto, f32, f16, bf16, fp8, fp8_e4m3 or "
      "fp8_e5m2",
      name);
}

const char* kv_cache_dtype_name(KvCacheDtype d) {
  switch (d) {
    case KvCacheDtype::kF32:
      return "f32";
    case KvCacheDtype::kBf16:
      return "bf16";
    case KvCacheDtype::kF16:
      return "f16";
    case KvCacheDtype::kFp8E4M3:
      return "fp8_e4m3";
    case KvCacheDtype::kFp8E5M2:
      return "fp8_e5m2";
  }
  return "?";
}

uint64_t KvCache::bytes() const {
  const uint64_t per = dtype_ == KvCacheDtype::kF32                                    ? 4
                       : dtype_ == KvCacheDtype::kBf16 || dtype_ == KvCacheDtype::kF16 ? 2
                                                                                       : 1;
  return 2 * keys_.size() * per;
}

std::pair<float, float> KvCache::scales(int64_t layer, int64_t head) const {
  if (!is_fp8(dtype_)) return {1.0f, 1.0f};
  const size_t i = size_t(layer * num_kv_heads_ + head);
  return {scales_->k[i], scales_->v[i]};
}

void KvCache::write(int64_t layer, int64_t first, int64_t n, const float* k, const float* v) {
  LOWBIT_CHECK(first >= 0 && first + n <= capacity_, "rows {}..{} outside the capacity {}", first,
               first + n, capacity_);
  // First tokens of an uncalibrated layer: calibrate, as the GPU does.
  if (is_fp8(dtype_) && !scales_->ready(layer))
    scales_->calibrate(layer, n, head_dim_, k, v, fp8_max(dtype_));
  const float* k_scales = scales_->k.data() + layer * num_kv_heads_;
  const float* v_scales = scales_->v.data() + layer * num_kv_heads_;
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
        kdst[d] = round_through(dtype_, ksrc[d], k_scales[g]);
        vdst[d] = round_through(dtype_, vsrc[d], v_scales[g]);
      }
    }
}

}  // namespace lowbit::engine
