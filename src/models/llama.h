// The Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, Qwen3, SmolLM) on the CPU:
// RMSNorm, GQA attention with RoPE (neox or interleaved pairs, llama3/linear scaling), optional
// q/k RMSNorm (Qwen3), SwiGLU MLP. Activations are fp32; linear layers compute through their
// quantization method, so nothing here depends on how weights are stored.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "kernels/cpu/linear.h"
#include "models/model_config.h"
#include "nn/linear.h"
#include "nn/linear_group.h"

namespace lowbit::models {

class WeightSource;

class LlamaModel {
 public:
  using Progress = std::function<void(int64_t done, int64_t total)>;
  LlamaModel(const ModelConfig& config, const WeightSource& source, const quant::QuantConfig& quant,
             const Progress& progress = {});

  const ModelConfig& config() const { return config_; }
  // A cache for `capacity` tokens in this model's KV dtype (f32 unless set below).
  engine::KvCache make_cache(int64_t capacity) const;
  // `--kv-cache-dtype` / `--kv-cache-scales` on the CPU (engine/kv_cache.h): caches made from
  // now on store keys and values rounded through bf16 or FP8, as the CUDA backend's cache does.
  // FP8 scales: the checkpoint's when it has them (models/kv_scales.h; then `granularity` is
  // not used), else computed from the first prompt and shared by all later caches.
  void set_kv_cache_dtype(engine::KvCacheDtype dtype, engine::KvScaleGranularity granularity =
                                                          engine::KvScaleGranularity::kTensor);
  // The FP8 scales caches of this model use (calibrated ones are 0 until the first prompt).
  const engine::KvScales& kv_scales() const { return *kv_scales_; }
  bool has_checkpoint_kv_scales() const { return checkpoint_kv_scales_.has_value(); }

  // Runs `tokens` at positions cache.length() .. + n - 1, appending their keys/values.
  // logits: [n, vocab] when all_logits, else [1, vocab] for the last token only.
  void forward(std::span<const int32_t> tokens, engine::KvCache& cache, bool all_logits,
               std::vector<float>& logits);

  uint64_t weight_bytes() const;  // bytes of all weights as stored
  // Bytes read from weights to generate one token (all linears + one embedding row).
  uint64_t weight_bytes_per_token() const;

 private:
  struct Layer {
    // q/k/v and gate/up read the same input: one product each where their storage lines up
    // (nn/linear_group.h); outputs side by side, [n, q_width + 2 kv_width] and [n, 2 I].
    nn::LinearGroup qkv, gate_up;
    nn::Linear o, down;
    std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;
  };
  void attention(const float* q, int64_t layer, int64_t n, int64_t pos0, engine::KvCache& cache);
  void apply_rope(float* x, int64_t n, int64_t heads, int64_t pos0);

  ModelConfig config_;
  engine::KvCacheDtype kv_dtype_ = engine::KvCacheDtype::kF32;
  std::optional<engine::KvScales> checkpoint_kv_scales_;
  std::shared_ptr<engine::KvScales> kv_scales_;
  kernels::cpu::WeightMatrix embedding_{};
  uint64_t embedding_bytes_ = 0;
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  nn::Linear lm_head_;
  std::vector<double> inv_freq_;
  std::vector<float> rope_cos_, rope_sin_;  // [positions, rope_dim / 2], grown on demand

  // Scratch activations, sized for the largest batch seen: [n, width].
  // qkv_ / gate_up_ hold the grouped outputs; q_, k_, v_ their split for n > 1 (for n = 1 the
  // parts are slices of qkv_); act_ = SiLU(gate) * up.
  std::vector<float> x_, h_, qkv_, q_, k_, v_, attn_, gate_up_, act_;
};

}  // namespace lowbit::models
