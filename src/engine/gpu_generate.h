// Generation and perplexity on the CUDA backend (models::CudaLlamaModel), with the same
// protocol and statistics as engine/generate.h's CPU versions. Compiled in every build;
// without the CUDA backend each function throws lowbit::Error saying so.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/model_loader.h"

namespace lowbit::engine {

struct CudaRunOptions {
  std::string kv_cache_dtype = "auto";   // auto | bf16 | fp8 | fp8_e4m3 | fp8_e5m2
  std::string kv_cache_scales = "auto";  // computed FP8 scales: auto (= tensor) | tensor | head
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;
};

// As engine::generate, on the GPU: the checkpoint of `m` is uploaded first (bf16, or the
// GPU format of its quantization method; see models/llama_cuda.h). m.model may be null.
GenerationStats generate_cuda(const LoadedModel& m, const std::vector<int32_t>& prompt,
                              int64_t max_tokens, int64_t context, const SamplingParams& sampling,
                              const std::vector<int32_t>& eos_ids,
                              const std::function<bool(int32_t)>& on_token,
                              const CudaRunOptions& options);

// As engine::perplexity, on the GPU.
PerplexityResult perplexity_cuda(const LoadedModel& m, const std::vector<int32_t>& tokens,
                                 int64_t ctx, int64_t max_chunks, int32_t bos,
                                 const std::function<void(int64_t chunk, double ppl)>& on_chunk,
                                 const CudaRunOptions& options);

// For `lowbit eval --device cuda`: uploads `m` once (room for ctx tokens) and returns a function
// giving the logits of every position of a chunk, each chunk from an empty sequence.
std::function<void(const std::vector<int32_t>& chunk, std::vector<float>& logits)>
cuda_chunk_logits(const LoadedModel& m, int64_t ctx, const CudaRunOptions& options);

// engine::measure_speed's protocol on the GPU (prompt: one forward; generation: greedy decode
// steps as CUDA graphs), plus the bytes of weights the GPU holds.
struct CudaSpeed {
  double pp_tok_s = 0, tg_tok_s = 0;
  uint64_t weight_bytes = 0;
};
CudaSpeed measure_speed_cuda(const LoadedModel& m, int64_t prompt_tokens, int64_t gen_tokens,
                             int repetitions, const CudaRunOptions& options);

}  // namespace lowbit::engine
