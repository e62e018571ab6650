// The Llama-family decoder on an NVIDIA GPU (the same architectures as models/llama.h):
// linear weights uploaded once as bf16 or in a quantized GPU format (W4A16 / W8A16 from
// awq, gptq, compressed-tensors, bitsandbytes int8 and online int4 / int8; FP8 W8A8 from online
// fp8), each run by the kernel kernels/gpu_kernel_registry.h chooses per call size; embedding
// and lm_head in bf16; the residual stream in fp32, other activations in bf16,
// a paged KV cache in bf16 or FP8 (e4m3 / e5m2, a key and a value scale per layer and KV head:
// from the checkpoint, else from the first prompt per head or per layer), GQA attention
// over it for prefill and decode, and CUDA graphs for batched greedy decode steps.
// This header has no CUDA types; the implementation lives in llama_cuda.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace lowbit::quant {
class QuantConfig;
}

namespace lowbit::models {

class WeightSource;

struct CudaOptions {
  std::string kv_cache_dtype = "auto";   // auto | bf16 | fp8 (= fp8_e4m3) | fp8_e4m3 | fp8_e5m2
  std::string kv_cache_scales = "auto";  // computed FP8 scales: auto (= tensor) | tensor | head
  double gpu_memory_utilization = 0.9;   // share of the GPU's memory lowbit may hold in all
  int64_t max_context = 0;               // tokens per sequence; 0 = the model's max_position
  int64_t max_sequences = 1;             // sequences held in the cache at once
  int64_t max_step_tokens = 1024;        // prefill is run in chunks of at most this many tokens
  bool cuda_graphs = true;               // replay decode steps as CUDA graphs
  int device = 0;
};

class CudaLlamaModel {
 public:
  // Uploads a checkpoint's weights. `quant` (the checkpoint's or --quantization's method) gives
  // each linear layer's method: unquantized / gguf weights (F32/F16/BF16 or GGUF block formats
  // with a CPU reference decoder) go up as bf16; weight-only integer methods (awq, gptq,
  // compressed-tensors int, bitsandbytes int8, online int4/int8) are decoded on the host and
  // packed for the W4A16/W8A16 kernels; online fp8 quantizes bf16 weights on the GPU (rowwise
  // scales, sm_89+). q/k/v and gate/up are fused into one weight each when their formats line
  // up (else run as separate GEMMs into the same output). Other methods are refused, naming it.
  CudaLlamaModel(const ModelConfig& config, const WeightSource& source,
                 const quant::QuantConfig& quant, const CudaOptions& options);
  // As above with the in-tree method of this name and no checkpoint quantization_config
  // ("unquantized", "gguf", or an online method: "int4", "int8", "fp8").
  CudaLlamaModel(const ModelConfig& config, const WeightSource& source,
                 const std::string& quant_method, const CudaOptions& options);
  // Random weights (uniform, never zero): benchmarks and tests. `weights`: "bf16" (generated
  // on the GPU), "int4" (random codes, groups of 128, bf16-range scales; W4A16), "int8"
  // (random codes, a scale per row; W8A16), "fp8" (random bf16 quantized on the GPU, rowwise).
  static std::unique_ptr<CudaLlamaModel> random(const ModelConfig& config, uint64_t seed,
                                                const CudaOptions& options,
                                                const std::string& weights = "bf16");
  ~CudaLlamaModel();
  CudaLlamaModel(const CudaLlamaModel&) = delete;
  CudaLlamaModel& operator=(const CudaLlamaModel&) = delete;

  const ModelConfig& config() const;
  std::string kv_cache_dtype() const;       // "bf16", "fp8_e4m3" or "fp8_e5m2"
  int64_t kv_cache_blocks() const;          // blocks in the cache pool
  int64_t kv_block_size() const;            // tokens per block
  uint64_t kv_bytes_per_token() const;      // all layers, k and v
  uint64_t weight_bytes() const;            // bytes of weights on the GPU
  uint64_t weight_bytes_per_token() const;  // bytes read per decode step (batch 1)
  std::string describe() const;             // one line for logs
  // "model.layers.0.self_attn.qkv_proj" etc. with the kernel each GEMM of the layers runs at
  // m rows, e.g. {"layers.*.qkv_proj", "wq_gemm"}; layer 0 stands for all (tests, logs).
  std::vector<std::pair<std::string, std::string>> linear_kernels(int64_t m) const;

  // Sequences are slots 0 .. max_sequences - 1; reset frees the slot's cache blocks.
  void reset_sequence(int seq);
  int64_t sequence_length(int seq) const;

  // Appends `tokens` to sequence `seq`. logits: [n, vocab] when all_logits, else [1, vocab].
  void forward(int seq, std::span<const int32_t> tokens, bool all_logits,
               std::vector<float>& logits);

  // One greedy decode step of several sequences (one token each, appended at their ends);
  // next[i] = argmax of the logits of seqs[i], computed on the GPU. Replayed as a CUDA graph
  // (one per batch size) when enabled.
  void decode_greedy(std::span<const int> seqs, std::span<const int32_t> tokens,
                     std::span<int32_t> next);

  // One sampled decode step (temperature > 0, top-k, top-p as engine::Sampler): like
  // decode_greedy, but next[i] is drawn on the GPU from seqs[i]'s logits with uniforms[i]
  // (in [0, 1), from the caller's seeded RNG); only the ids are copied back.
  struct GpuSampling {
    float temperature = 1.0f;
    int32_t top_k = 0;
    float top_p = 1.0f;
  };
  void decode_sample(std::span<const int> seqs, std::span<const int32_t> tokens,
                     const GpuSampling& sampling, std::span<const float> uniforms,
                     std::span<int32_t> next);

  // Benchmarks: fill the whole KV pool with random finite values (scales set to 1/64 where
  // FP8), then let sequence `seq` claim `length` cached positions without computing them.
  void fill_kv_cache_random(uint64_t seed);
  void assume_cached_context(int seq, int64_t length);

  // KV scales of a layer, [num_kv_heads] each for keys and values (all 1 for bf16, 0 before
  // FP8 calibration; equal across heads with per-tensor scales).
  std::pair<std::vector<float>, std::vector<float>> kv_scales(int64_t layer) const;

 private:
  struct Impl;
  explicit CudaLlamaModel(std::unique_ptr<Impl> impl);
  void decode_step(std::span<const int> seqs, std::span<const int32_t> tokens,
                   std::span<int32_t> next, const GpuSampling* sampling,
                   std::span<const float> uniforms);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit::models
