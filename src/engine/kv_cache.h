// Per-sequence key/value cache on the CPU, fp32.
// Layout per layer: [num_kv_heads, capacity, head_dim], so one head's keys are contiguous
// and attention streams them in order.
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace lowbit::engine {

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity)
      : num_kv_heads_(num_kv_heads),
        head_dim_(head_dim),
        capacity_(capacity),
        keys_(size_t(num_layers * num_kv_heads * capacity * head_dim)),
        values_(keys_.size()) {
    layer_stride_ = num_kv_heads * capacity * head_dim;
  }

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void set_length(int64_t n) {
    LOWBIT_CHECK(n >= 0 && n <= capacity_, "length {} outside 0..{}", n, capacity_);
    length_ = n;
  }
  // [capacity, head_dim] block of one layer and kv head.
  float* keys(int64_t layer, int64_t head) {
    return keys_.data() + layer * layer_stride_ + head * capacity_ * head_dim_;
  }
  float* values(int64_t layer, int64_t head) {
    return values_.data() + layer * layer_stride_ + head * capacity_ * head_dim_;
  }
  uint64_t bytes() const { return 2 * keys_.size() * sizeof(float); }

 private:
  int64_t num_kv_heads_, head_dim_, capacity_, layer_stride_ = 0;
  int64_t length_ = 0;
  std::vector<float> keys_, values_;
};

}  // namespace lowbit::engine
