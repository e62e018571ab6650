// `lowbit eval --device cuda`'s pieces on stories260K: the GPU's chunk logits give the same
// perplexity as the CPU's within bf16 rounding, and the GPU speed test runs and reports the
// weights it holds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "cuda_test_util.h"
#include "engine/eval.h"
#include "engine/gpu_generate.h"
#include "engine/model_loader.h"
#include "quant/registry.h"

namespace lowbit::test {
namespace {

TEST(CudaEval, ChunkLogitsMatchTheCpuComparison) {
  LOWBIT_REQUIRE_GPU();
  if (!std::filesystem::exists(stories_dir() + "/config.json"))
    GTEST_SKIP() << "stories260K not found at " << stories_dir();
  auto registry = quant::MethodRegistry::builtin();
  engine::LoadedModel m = engine::load_model(stories_dir(), {}, registry);
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(600);
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(m.config.vocab_size));
  const int64_t ctx = 128;
  auto cpu = engine::compare_models(*m.model, *m.model, tokens, ctx, -1, 1);
  auto gpu_logits = engine::cuda_chunk_logits(m, ctx, {});
  auto gpu =
      engine::compare_chunk_logits(gpu_logits, gpu_logits, m.config.vocab_size, tokens, ctx, -1, 1);
  EXPECT_EQ(gpu.chunks, cpu.chunks);
  EXPECT_NEAR(gpu.ppl, cpu.ppl, 2e-2 * cpu.ppl);
  EXPECT_DOUBLE_EQ(gpu.kld, 0.0);  // the same model on both sides
  EXPECT_DOUBLE_EQ(gpu.top1, 1.0);
  // GPU (quantized side) against the CPU (reference side): bf16 activations cost little.
  auto cpu_logits = [&](const std::vector<int32_t>& chunk, std::vector<float>& logits) {
    auto cache = m.model->make_cache(int64_t(chunk.size()));
    m.model->forward(chunk, cache, true, logits);
  };
  auto mixed =
      engine::compare_chunk_logits(gpu_logits, cpu_logits, m.config.vocab_size, tokens, ctx, -1, 1);
  EXPECT_LT(mixed.kld, 1e-3);
  EXPECT_GT(mixed.top1, 0.95);

  engine::CudaSpeed s = engine::measure_speed_cuda(m, 64, 16, 1, {});
  EXPECT_GT(s.pp_tok_s, 0);
  EXPECT_GT(s.tg_tok_s, 0);
  EXPECT_GT(s.weight_bytes, 0u);
}

}  // namespace
}  // namespace lowbit::test
