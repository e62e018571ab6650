// Per-sequence key/value cache on the CPU.
// Layout per layer: [num_kv_heads, capacity, head_dim], so one head's keys are contiguous
// and attention streams them in order.
//
// Storage dtype (`--kv-cache-dtype`, as on the CUDA backend): f32 (the CPU's default, exact),
// bf16, or FP8 e4m3 / e5m2 with one scale per layer for keys and one for values, calibrated
// from the first tokens written to that layer (scale = max|x| / fp8 max, like the GPU's
// calibration) and fixed afterwards. Values are kept in fp32 arrays but rounded through the
// storage type when written (x -> bf16(x), or fp8(x / scale) · scale), so the attention reads
// exactly what a cache of that type would return and CPU and GPU agree; memory stays fp32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace lowbit::engine {

enum class KvCacheDtype : uint8_t { kF32, kBf16, kFp8E4M3, kFp8E5M2 };

// "auto" (f32 on the CPU), "f32", "bf16", "fp8" (= fp8_e4m3), "fp8_e4m3", "fp8_e5m2".
KvCacheDtype cpu_kv_cache_dtype(const std::string& name);
const char* kv_cache_dtype_name(KvCacheDtype d);

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity,
          KvCacheDtype dtype = KvCacheDtype::kF32)
      : num_kv_heads_(num_kv_heads),
        head_dim_(head_dim),
        capacity_(capacity),
        dtype_(dtype),
        keys_(size_t(num_layers * num_kv_heads * capacity * head_dim)),
        values_(keys_.size()),
        k_scale_(size_t(num_layers), 0.0f),
        v_scale_(size_t(num_layers), 0.0f) {
    layer_stride_ = num_kv_heads * capacity * head_dim;
  }

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
  // FP8 layer sets its scales from these rows.
  void write(int64_t layer, int64_t first, int64_t n, const float* k, const float* v);

  // Per-layer scales (1, 1 for f32/bf16; 0, 0 before an FP8 layer is written).
  std::pair<float, float> scales(int64_t layer) const;

 private:
  int64_t num_kv_heads_, head_dim_, capacity_, layer_stride_ = 0;
  int64_t length_ = 0;
  KvCacheDtype dtype_;
  std::vector<float> keys_, values_;
  std::vector<float> k_scale_, v_scale_;
};

}  // namespace lowbit::engine
