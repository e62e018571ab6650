// Per-sequence key/value cache on the CPU.
// Layout per layer: [num_kv_heads, capacity, head_dim], so one head's keys are contiguous
// and attention streams them in order.
//
// Storage dtype (`--kv-cache-dtype`, as on the CUDA backend): f32 (the CPU's default, exact),
// bf16, or FP8 e4m3 / e5m2. Values are kept in fp32 arrays but rounded through the storage type
// when written (x -> bf16(x), or fp8(x / scale) · scale), so the attention reads exactly what a
// cache of that type would return and CPU and GPU agree; memory stays fp32.
//
// FP8 scales (KvScales): one key and one value scale per layer and KV head. They come from the
// checkpoint when it has them (models/kv_scales.h), else from the first tokens written to each
// layer (`--kv-cache-scales`): per head, scale = max|x| over the rows of that head / fp8 max;
// per tensor, the max over all heads of the layer, the same for every head. Once set they stay
// fixed; caches made by one model share its KvScales, so the scales of the first prompt are
// kept for every later sequence (as the GPU keeps them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace lowbit::engine {

// kF16: llama.cpp's default cache; the CPU attention then computes as ggml's flash attention
// with F16 K/V (kernels/cpu/flash_attn_f16.h), so GGUF perplexity matches llama-perplexity's.
enum class KvCacheDtype : uint8_t { kF32, kBf16, kFp8E4M3, kFp8E5M2, kF16 };

// "auto" (f32 on the CPU), "f32", "f16", "bf16", "fp8" (= fp8_e4m3), "fp8_e4m3", "fp8_e5m2".
KvCacheDtype cpu_kv_cache_dtype(const std::string& name);
const char* kv_cache_dtype_name(KvCacheDtype d);
bool is_fp8(KvCacheDtype d);
float fp8_max(KvCacheDtype d);  // 448 (e4m3) or 57344 (e5m2)

// How computed FP8 scales are grouped: one per layer (kTensor) or one per layer and KV head.
enum class KvScaleGranularity : uint8_t { kTensor, kHead };
// "auto" (= tensor: per-head scales measured no better, docs/cuda.md), "tensor", "head".
KvScaleGranularity kv_scale_granularity(const std::string& name);
const char* kv_scale_granularity_name(KvScaleGranularity g);

// FP8 scales of every layer: k and v, [num_layers, num_kv_heads] each (per tensor: the same
// value in every head of a layer). 0 = the layer is not calibrated yet.
struct KvScales {
  KvScales(int64_t num_layers, int64_t num_kv_heads, KvScaleGranularity g)
      : granularity(g),
        num_kv_heads(num_kv_heads),
        k(size_t(num_layers * num_kv_heads), 0.0f),
        v(k.size(), 0.0f) {}
  KvScaleGranularity granularity;
  int64_t num_kv_heads;
  std::vector<float> k, v;
  bool from_checkpoint = false;

  bool ready(int64_t layer) const { return k[size_t(layer * num_kv_heads)] > 0.0f; }
  // Sets a layer's scales from its first n rows of keys / values ([n, num_kv_heads, head_dim]).
  void calibrate(int64_t layer, int64_t n, int64_t head_dim, const float* keys, const float* values,
                 float fp8_max);
};

class KvCache {
 public:
  // `scales`: shared FP8 scales (a model's); null makes the cache its own, computed per layer.
  KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity,
          KvCacheDtype dtype = KvCacheDtype::kF32, std::shared_ptr<KvScales> scales = nullptr);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void set_length(int64_t n) {
    LOWBIT_CHECK(n >= 0 && n <= capacity_, "length {} outside 0..{}", n, capacity_);
    length_ = n;
  }
  KvCacheDtype dtype() const { return dtype_; }
  // [capacity, head_dim] block of one layer and kv head.
  float* keys(int64_t layer, int64_t head) {
    return keys_.data() + layer * layer_stride_ + head * capacity_ * head_dim_;
  }
  float* values(int64_t layer, int64_t head) {
    return values_.data() + layer * layer_stride_ + head * capacity_ * head_dim_;
  }
  // Bytes a cache of this dtype holds (what the GPU would allocate for it).
  uint64_t bytes() const;

  // Writes n rows of new keys and values ([n, num_kv_heads, head_dim] each, row t going to
  // position first + t) of `layer`, rounded through the storage dtype; the first write to an
  // uncalibrated FP8 layer sets its scales from these rows.
  void write(int64_t layer, int64_t first, int64_t n, const float* k, const float* v);

  // Scales of a layer's kv head (1, 1 for f32/bf16; 0, 0 before an FP8 layer is calibrated).
  std::pair<float, float> scales(int64_t layer, int64_t head = 0) const;

 private:
  int64_t num_kv_heads_, head_dim_, capacity_, layer_stride_ = 0;
  int64_t length_ = 0;
  KvCacheDtype dtype_;
  std::vector<float> keys_, values_;
  std::shared_ptr<KvScales> scales_;
};

}  // namespace lowbit::engine
