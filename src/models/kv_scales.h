// FP8 KV cache scales stored in a checkpoint (../shared/docs/FORMATS.md §3.8, §5.4, §9), read
// for the CPU and the CUDA backend alike. Per layer L, the first of these that exists:
//   model.layers.L.self_attn.k_scale / v_scale                  compressed-tensors, generic
//   model.layers.L.self_attn.k_proj.k_scale / v_proj.v_scale    ModelOpt
//   model.layers.L.self_attn.k_proj.output_scale / v_proj.…      older compressed-tensors, AutoFP8
//   model.layers.L.self_attn.kv_scale                            legacy single scale (k = v)
//   model.layers.L.self_attn.kv_cache_scaling_factor,
//   transformer.layers.L.attention.kv_cache_scaling_factor       TensorRT-LLM (k = v)
// Semantics as vLLM's: the cache stores fp8 = sat(x / scale) and reads x = fp8 · scale. Shape
// [1] (or any single value) per tensor, or [num_kv_heads] / [num_kv_heads, 1, 1] per head
// (compressed-tensors' attn_head strategy); F32, F16 or BF16.
#pragma once

#include <cstdint>
#include <optional>

#include "engine/kv_cache.h"

namespace lowbit::models {

class WeightSource;

// The checkpoint's scales as [num_layers, num_kv_heads] (per-tensor values repeated over the
// heads; granularity kHead when any tensor is per head), or nullopt when it has none. Fails,
// naming the tensor, on a wrong shape or dtype, a value that is not positive and finite, a
// key scale without its value scale, or layers of which only some have scales.
std::optional<engine::KvScales> read_checkpoint_kv_scales(const WeightSource& src,
                                                          int64_t num_layers, int64_t num_kv_heads);

}  // namespace lowbit::models
