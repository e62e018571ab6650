// One query row's attention as ggml's CPU flash attention computes it with an F16 KV cache
// for batches of fewer than 64 queries (generation; ggml's tiled path for larger batches is
// fp32 arithmetic on the F16 values, which the plain attention over an f16 cache already is)
// (ggml-cpu/ops.cpp ggml_compute_forward_flash_attn_ext_f16_one_chunk, llama.cpp's default:
// F16 K/V, flash attention on): the query is rounded to F16 (K's vec_dot_type), scores are
// F16·F16 dot products accumulated in fp32, the softmax is online (running max M and sum S)
// and the weighted sum of values is accumulated in an F16 vector, rounded after every
// rescale and every fused multiply-add; the result is VKQ / S (times 1/S).
//   q: [hd] fp32; keys, vals: [len, hd] fp32 holding F16 values (an f16 KV cache);
//   out: [hd] fp32. Positions are visited 0..len-1 (causal: all of them unmasked).
#pragma once

#include <cstdint>

namespace lowbit::kernels::cpu {

void attend_f16_online(const float* q, const float* keys, const float* vals, int64_t len,
                       int64_t hd, float scale, float* out);

}  // namespace lowbit::kernels::cpu
