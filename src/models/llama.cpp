#include "models/llama.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/flash_attn_f16.h"
#include "kernels/cpu/vec.h"
#include "models/kv_scales.h"
#include "models/weight_source.h"

namespace lowbit::models {
namespace {

std::string layer_name(int64_t i, const char* rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

// out[n, width] = rmsnorm(x[n, width]) * weight
void rms_norm_rows(const float* x, const float* weight, float eps, int64_t n, int64_t width,
                   float* out) {
  for (int64_t r = 0; r < n; ++r)
    kernels::cpu::rms_norm_f32(x + r * width, weight, eps, out + r * width, width);
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& c, const WeightSource& src,
                       const quant::QuantConfig& quant, const Progress& progress)
    : config_(c) {
  const int64_t H = c.hidden_size, hd = c.head_dim;
  const int64_t q_width = c.num_heads * hd, kv_width = c.num_kv_heads * hd;
  const int64_t total = c.num_layers + 2;
  if (progress) progress(0, total);

  const std::string emb_name = "model.embed_tokens.weight";
  const TensorView* emb = src.find(emb_name);
  if (!emb) fail("{}: tensor '{}' is missing", src.path(), src.stored_name(emb_name));
  if (emb->shape != std::vector<int64_t>{c.vocab_size, H})
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", src.path(), src.stored_name(emb_name),
         shape_string(emb->shape), c.vocab_size, H);
  std::string reason = kernels::cpu::cannot_implement(emb->dtype);
  if (!reason.empty())
    fail("{}: tensor '{}' ({}): {}", src.path(), src.stored_name(emb_name), name(emb->dtype),
         reason);
  embedding_ = {emb->dtype, emb->data, c.vocab_size, H};
  embedding_bytes_ = emb->nbytes;
  if (progress) progress(1, total);

  layers_.resize(size_t(c.num_layers));
  const bool fuse = nn::fuse_projections_from_env();
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& L = layers_[size_t(i)];
    auto linear = [&](const char* rest, int64_t in, int64_t out, bool bias) {
      std::string prefix = layer_name(i, rest);
      return nn::load_linear(prefix, prefix, in, out, bias, quant, src);
    };
    L.qkv =
        nn::load_linear_group({layer_name(i, "self_attn.q_proj"), layer_name(i, "self_attn.k_proj"),
                               layer_name(i, "self_attn.v_proj")},
                              {q_width, kv_width, kv_width}, H, c.attention_bias, quant, src, fuse);
    L.o = linear("self_attn.o_proj", q_width, H, c.attention_out_bias);
    L.gate_up = nn::load_linear_group(
        {layer_name(i, "mlp.gate_proj"), layer_name(i, "mlp.up_proj")},
        {c.intermediate_size, c.intermediate_size}, H, c.mlp_bias, quant, src, fuse);
    L.down = linear("mlp.down_proj", c.intermediate_size, H, c.mlp_bias);
    L.attn_norm = nn::load_vector(layer_name(i, "input_layernorm.weight"), H, src);
    L.ffn_norm = nn::load_vector(layer_name(i, "post_attention_layernorm.weight"), H, src);
    if (c.qk_norm) {
      L.q_norm = nn::load_vector(layer_name(i, "self_attn.q_norm.weight"), hd, src);
      L.k_norm = nn::load_vector(layer_name(i, "self_attn.k_norm.weight"), hd, src);
    }
    if (progress) progress(i + 2, total);
  }
  final_norm_ = nn::load_vector("model.norm.weight", H, src);
  bool tied = c.tie_word_embeddings || !src.find("lm_head.weight");
  lm_head_ = nn::load_linear("lm_head", tied ? "model.embed_tokens" : "lm_head", H, c.vocab_size,
                             false, quant, src);

  std::vector<float> freq_factors;
  if (const TensorView* f = src.find("rope_freqs.weight")) {
    if (f->dtype != DType::F32 || f->shape != std::vector<int64_t>{c.rope_dim / 2})
      fail("{}: rope_freqs.weight is {} {}, expected F32 [{}]", src.path(), name(f->dtype),
           shape_string(f->shape), c.rope_dim / 2);
    const float* p = reinterpret_cast<const float*>(f->data);
    freq_factors.assign(p, p + c.rope_dim / 2);
  }
  inv_freq_ = rope_inv_freq(c, freq_factors);
  checkpoint_kv_scales_ = read_checkpoint_kv_scales(src, c.num_layers, c.num_kv_heads);
  set_kv_cache_dtype(engine::KvCacheDtype::kF32);
  if (progress) progress(total, total);
}

void LlamaModel::set_kv_cache_dtype(engine::KvCacheDtype dtype,
                                    engine::KvScaleGranularity granularity) {
  kv_dtype_ = dtype;
  kv_scales_ = checkpoint_kv_scales_ ? std::make_shared<engine::KvScales>(*checkpoint_kv_scales_)
                                     : std::make_shared<engine::KvScales>(
                                           config_.num_layers, config_.num_kv_heads, granularity);
}

engine::KvCache LlamaModel::make_cache(int64_t capacity) const {
  return engine::KvCache(config_.num_layers, config_.num_kv_heads, config_.head_dim, capacity,
                         kv_dtype_, kv_scales_);
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& L : layers_)
    total += L.qkv.weight_bytes() + L.o.weight_bytes() + L.gate_up.weight_bytes() +
             L.down.weight_bytes();
  // lm_head computes from the embedding's own storage only when it is tied and left as stored
  // (same bytes); a quantized lm_head (online int4/int8) is a copy beside the embedding.
  const bool shares_embedding = lm_head_.layer().tensors.at("weight").data == embedding_.data &&
                                lm_head_.weight_bytes() == embedding_bytes_;
  total += lm_head_.weight_bytes() + (shares_embedding ? 0 : embedding_bytes_);
  return total;
}

uint64_t LlamaModel::weight_bytes_per_token() const {
  uint64_t total = 0;
  for (const auto& L : layers_)
    total += L.qkv.weight_bytes() + L.o.weight_bytes() + L.gate_up.weight_bytes() +
             L.down.weight_bytes();
  return total + lm_head_.weight_bytes() + embedding_bytes_ / uint64_t(config_.vocab_size);
}

void LlamaModel::apply_rope(float* x, int64_t n, int64_t heads, int64_t pos0) {
  const int64_t hd = config_.head_dim, half = config_.rope_dim / 2;
  const int64_t need = pos0 + n;
  if (int64_t(rope_cos_.size()) < need * half) {
    int64_t have = int64_t(rope_cos_.size()) / half;
    rope_cos_.resize(size_t(need * half));
    rope_sin_.resize(size_t(need * half));
    for (int64_t p = have; p < need; ++p)
      for (int64_t i = 0; i < half; ++i) {
        // fp32 angle like HF (position · inv_freq in fp32), then cos/sin.
        float angle = float(p) * float(inv_freq_[i]);
        rope_cos_[p * half + i] = std::cos(angle);
        rope_sin_[p * half + i] = std::sin(angle);
      }
  }
  const bool neox = config_.rope_style == RopeStyle::kNeox;
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = rope_cos_.data() + (pos0 + t) * half;
    const float* sn = rope_sin_.data() + (pos0 + t) * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x1 * cs[i] + x0 * sn[i];
      }
    }
  }
}

// Causal GQA attention of n new tokens (queries q [n, num_heads * head_dim], keys/values already in
// the cache at pos0..pos0+n-1) over all cached positions; output in attn_ [n, num_heads *
// head_dim].
void LlamaModel::attention(const float* q_all, int64_t layer, int64_t n, int64_t pos0,
                           engine::KvCache& cache) {
  const int64_t nh = config_.num_heads, hd = config_.head_dim;
  const int64_t group = nh / config_.num_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t max_len = pos0 + n;
  const kernels::cpu::DotF32Fn dot = kernels::cpu::dot_f32_kernel();
  const kernels::cpu::AxpyF32Fn axpy = kernels::cpu::axpy_f32_kernel();
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(max_len));
    // Round-robin (token, head) pairs: with causal attention token t costs pos0 + t + 1, so
    // contiguous halves left the thread with the later tokens ~3/4 of a prompt's work (pp512
    // on SmolLM2 Q4_0, 2 threads: 551 -> 676 tok/s). The arithmetic per pair is unchanged.
#pragma omp for collapse(2) schedule(static, 1)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t len = pos0 + t + 1;  // causal: positions 0..pos0+t
        const float* q = q_all + (t * nh + h) * hd;
        const float* keys = cache.keys(layer, h / group);
        const float* vals = cache.values(layer, h / group);
        float* out = attn_.data() + (t * nh + h) * hd;
        // f16 cache, as llama.cpp's CPU flash attention: batches of fewer than 64 queries take
        // its per-query path (F16 query and accumulator, attend_f16_online); larger batches its
        // tiled path, fp32 arithmetic on the F16 keys / values, as below.
        if (cache.dtype() == engine::KvCacheDtype::kF16 && n < 64) {
          kernels::cpu::attend_f16_online(q, keys, vals, len, hd, scale, out);
          continue;
        }
        for (int64_t p = 0; p < len; ++p) scores[p] = dot(q, keys + p * hd, hd) * scale;
        kernels::cpu::softmax_f32(scores.data(), len);
        std::fill(out, out + hd, 0.0f);
        for (int64_t p = 0; p < len; ++p) axpy(scores[p], vals + p * hd, out, hd);
      }
  }
}

void LlamaModel::forward(std::span<const int32_t> tokens, engine::KvCache& cache, bool all_logits,
                         std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const int64_t n = int64_t(tokens.size());
  const int64_t pos0 = cache.length();
  if (n == 0) fail("forward: no tokens");
  if (pos0 + n > cache.capacity())
    fail("context of {} tokens exceeds the KV cache capacity of {} tokens", pos0 + n,
         cache.capacity());
  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads;
  const int64_t I = c.intermediate_size;
  x_.resize(size_t(n * H));
  h_.resize(size_t(n * H));
  const int64_t q_width = nh * hd, kv_width = nkv * hd, qkv_width = q_width + 2 * kv_width;
  qkv_.resize(size_t(n * qkv_width));
  if (n > 1) {
    q_.resize(size_t(n * q_width));
    k_.resize(size_t(n * kv_width));
    v_.resize(size_t(n * kv_width));
  }
  attn_.resize(size_t(n * nh * hd));
  gate_up_.resize(size_t(n * 2 * I));
  act_.resize(size_t(n * I));

  for (int64_t t = 0; t < n; ++t) {
    int32_t id = tokens[t];
    if (id < 0 || id >= c.vocab_size)
      fail("token id {} at position {} is outside the vocabulary 0..{}", id, pos0 + t,
           c.vocab_size - 1);
    kernels::cpu::dequantize_row(embedding_, id, x_.data() + t * H);
  }

  const float eps = float(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[size_t(l)];
    rms_norm_rows(x_.data(), L.attn_norm.data(), eps, n, H, h_.data());
    L.qkv.forward(h_.data(), n, qkv_.data());
    // q, k, v: [n, q_width], [n, kv_width] x 2. One token: slices of qkv_; more: split out of
    // its rows (RoPE, the cache and attention read packed rows).
    float *q = qkv_.data(), *k = q + q_width, *v = k + kv_width;
    if (n > 1) {
      q = q_.data();
      k = k_.data();
      v = v_.data();
      for (int64_t t = 0; t < n; ++t) {
        const float* row = qkv_.data() + t * qkv_width;
        std::copy_n(row, q_width, q + t * q_width);
        std::copy_n(row + q_width, kv_width, k + t * kv_width);
        std::copy_n(row + q_width + kv_width, kv_width, v + t * kv_width);
      }
    }
    if (c.qk_norm) {
      rms_norm_rows(q, L.q_norm.data(), eps, n * nh, hd, q);
      rms_norm_rows(k, L.k_norm.data(), eps, n * nkv, hd, k);
    }
    apply_rope(q, n, nh, pos0);
    apply_rope(k, n, nkv, pos0);
    cache.write(l, pos0, n, k, v);
    attention(q, l, n, pos0, cache);
    L.o.forward(attn_.data(), n, h_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += h_[i];

    rms_norm_rows(x_.data(), L.ffn_norm.data(), eps, n, H, h_.data());
    L.gate_up.forward(h_.data(), n, gate_up_.data());
    for (int64_t t = 0; t < n; ++t) {
      const float* gate = gate_up_.data() + t * 2 * I;
      const float* up = gate + I;
      float* act = act_.data() + t * I;
      for (int64_t i = 0; i < I; ++i) {
        float g = gate[i];
        act[i] = g / (1.0f + std::exp(-g)) * up[i];  // SiLU(gate) * up
      }
    }
    L.down.forward(act_.data(), n, h_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += h_[i];
  }
  cache.set_length(pos0 + n);

  const int64_t rows = all_logits ? n : 1;
  const float* last = x_.data() + (n - rows) * H;
  rms_norm_rows(last, final_norm_.data(), eps, rows, H, h_.data());
  logits.resize(size_t(rows * c.vocab_size));
  lm_head_.forward(h_.data(), rows, logits.data());
}

}  // namespace lowbit::models
