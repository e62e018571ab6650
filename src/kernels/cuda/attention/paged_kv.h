// Views of the paged KV cache as GPU kernels see them: plain structs passed by value.
// One layer's cache: k and v each [num_blocks, num_kv_heads, block_size, head_dim] of `dtype`
// (bf16, or FP8 bytes with a scale per layer or per KV head: stored = sat(value / scale), read
// back as stored · scale). A sequence's position p lives in block
// block_tables[seq · max_blocks_per_seq + p / block_size] at offset p % block_size.
#pragma once

#include <cstdint>

namespace lowbit::kernels::cuda {

enum class KvDtype : uint8_t { kBf16, kFp8E4M3, kFp8E5M2 };

inline const char* kv_dtype_name(KvDtype d) {
  return d == KvDtype::kBf16 ? "bf16" : d == KvDtype::kFp8E4M3 ? "fp8_e4m3" : "fp8_e5m2";
}
inline int kv_dtype_bytes(KvDtype d) { return d == KvDtype::kBf16 ? 2 : 1; }
// Largest finite value of the FP8 format (the scale maps max|x| onto it).
inline float kv_fp8_max(KvDtype d) { return d == KvDtype::kFp8E4M3 ? 448.0f : 57344.0f; }

struct PagedKvLayer {
  void* k = nullptr;
  void* v = nullptr;
  // FP8 scales on the device: head h uses k_scale[h · scale_stride] (stride 0: one scale for
  // the layer; 1: [num_kv_heads] scales). Not read for bf16.
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  int32_t scale_stride = 0;
  KvDtype dtype = KvDtype::kBf16;
  int32_t num_blocks = 0, num_kv_heads = 0, block_size = 0, head_dim = 0;
};

}  // namespace lowbit::kernels::cuda
