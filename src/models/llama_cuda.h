// The Llama-family decoder on an NVIDIA GPU (the same architectures as models/llama.h):
// weights uploaded once as bf16, the residual stream in fp32, other activations in bf16,
// a paged KV cache in bf16 or FP8 (e4m3 / e5m2, per-tensor scales per layer), GQA attention
// over it for prefill and decode, and CUDA graphs for batched greedy decode steps.
// This header has no CUDA types; the implementation lives in llama_cuda.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace lowbit::models {

class WeightSource;

struct CudaOptions {
  std::string kv_cache_dtype = "auto";  // auto | bf16 | fp8 (= fp8_e4m3) | fp8_e4m3 | fp8_e5m2
  double gpu_memory_utilization = 0.9;  // share of the GPU's memory lowbit may hold in all
  int64_t max_context = 0;              // tokens per sequence; 0 = the model's max_position
  int64_t max_sequences = 1;            // sequences held in the cache at once
  int64_t max_step_tokens = 1024;       // prefill is run in chunks of at most this many tokens
  bool cuda_graphs = true;              // replay decode steps as CUDA graphs
  int device = 0;
};

class CudaLlamaModel {
 public:
  // Uploads a checkpoint's weights as bf16. Tensors may be F32/F16/BF16 or GGUF block formats
  // that have a CPU reference decoder; `quant_method` is the checkpoint's method name
  // ("unquantized" or "gguf"; others are refused with a message saying so).
  CudaLlamaModel(const ModelConfig& config, const WeightSource& source,
                 const std::string& quant_method, const CudaOptions& options);
  // Random bf16 weights generated on the GPU (uniform, never zero): benchmarks and tests.
  static std::unique_ptr<CudaLlamaModel> random(const ModelConfig& config, uint64_t seed,
                                                const CudaOptions& options);
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

  // Benchmarks: fill the whole KV pool with random finite values (scales set to 1/64 where
  // FP8), then let sequence `seq` claim `length` cached positions without computing them.
  void fill_kv_cache_random(uint64_t seed);
  void assume_cached_context(int seq, int64_t length);

  // Per-tensor KV scales of a layer (1, 1 for bf16; 0, 0 before FP8 calibration).
  std::pair<float, float> kv_scales(int64_t layer) const;

 private:
  struct Impl;
  explicit CudaLlamaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit::models
