// Sampled decode steps on the GPU (CudaLlamaModel::decode_sample) on stories260K: top-k 1 is
// greedy, a seed gives the same tokens twice, and every token is one the CPU definition keeps.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "cuda_test_util.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "models/llama_cuda.h"
#include "quant/registry.h"

namespace lowbit::test {
namespace {

using Sampling = models::CudaLlamaModel::GpuSampling;

// Tokens of `steps` decode steps after BOS; each step also checks that the drawn token is in
// the top-k set of the logits a plain forward of the same history gives (`check`).
std::vector<int32_t> sample_run(models::CudaLlamaModel& m, models::CudaLlamaModel& check,
                                const Sampling& s, uint64_t seed, int steps) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(0.0f, 0.999f);
  m.reset_sequence(0);
  check.reset_sequence(0);
  std::vector<float> logits;
  const int32_t bos[1] = {1};
  m.forward(0, bos, false, logits);
  std::vector<int32_t> out = {engine::argmax(logits)};
  check.forward(0, bos, false, logits);
  for (int i = 1; i < steps; ++i) {
    int seq[1] = {0};
    int32_t in[1] = {out.back()}, next[1] = {-1};
    float u[1] = {uni(rng)};
    m.decode_sample(seq, in, s, u, next);
    check.forward(0, in, false, logits);
    EXPECT_GE(next[0], 0);
    EXPECT_LT(next[0], int32_t(logits.size()));
    if (s.top_k > 0) {  // at most top_k tokens have a logit above the drawn one
      int above = 0;
      for (float l : logits) above += l > logits[size_t(next[0])];
      EXPECT_LT(above, s.top_k) << "step " << i;
    }
    out.push_back(next[0]);
  }
  return out;
}

TEST(CudaSamplingModel, Stories260K) {
  LOWBIT_REQUIRE_GPU();
  if (!std::filesystem::exists(stories_dir() + "/config.json"))
    GTEST_SKIP() << "stories260K not found at " << stories_dir();
  auto registry = quant::MethodRegistry::builtin();
  engine::LoadedModel lm = engine::load_model(stories_dir(), {}, registry);
  models::CudaOptions opt;
  opt.max_context = 128;
  models::CudaLlamaModel gpu(lm.config, *lm.source, lm.quant->name(), opt);
  models::CudaLlamaModel check(lm.config, *lm.source, lm.quant->name(), opt);
  const int steps = 40;

  // top-k 1 keeps only the argmax: the greedy tokens whatever the uniforms.
  std::vector<int32_t> greedy = {};
  {
    std::vector<float> logits;
    gpu.reset_sequence(0);
    const int32_t bos[1] = {1};
    gpu.forward(0, bos, false, logits);
    greedy.push_back(engine::argmax(logits));
    for (int i = 1; i < steps; ++i) {
      int seq[1] = {0};
      int32_t in[1] = {greedy.back()}, next[1];
      gpu.decode_greedy(seq, in, next);
      greedy.push_back(next[0]);
    }
  }
  EXPECT_EQ(sample_run(gpu, check, {1.0f, 1, 1.0f}, 7, steps), greedy);

  // A seed fixes the draw; top-k / top-p respected at every step.
  const Sampling s{0.9f, 20, 0.9f};
  auto a = sample_run(gpu, check, s, 11, steps);
  auto b = sample_run(gpu, check, s, 11, steps);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, greedy);  // 40 draws at temperature 0.9 are not all the argmax
}

}  // namespace
}  // namespace lowbit::test
