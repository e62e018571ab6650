// Generation and perplexity on the CUDA backend (models::CudaLlamaModel), with the same
// protocol and statistics as engine/generate.h's CPU versions. Compiled in every build;
// without the CUDA backend each function throws lowbit::Error saying so.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/model_loader.h"

namespace lowbit::engine {

struct CudaRunOptions {
  std::string kv_cache_dtype = "auto";  // auto | bf16 | fp8 | fp8_e4m3 | fp8_e5m2
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

}  // namespace lowbit::engine
