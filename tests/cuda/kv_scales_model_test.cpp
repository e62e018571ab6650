// FP8 KV scales on the CUDA backend end to end: scales stored in a checkpoint (per head or per
// layer) are uploaded and used as they are, scales computed from the first prompt follow the
// CPU cache's rule (per head / per layer), and both devices then compute close logits.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "cuda_test_util.h"
#include "engine/kv_cache.h"
#include "models/kv_scale_checkpoint_util.h"
#include "models/llama_cuda.h"
#include "models/model_test_util.h"

namespace lowbit::test {
namespace {

using testing::ExtraTensor;

// bf16 weights (both devices compute with the same), 2 layers, 4 heads, 2 kv heads, head_dim 24
// (the CUDA attention needs a multiple of 8), attention bias.
constexpr const char* kTiny = "llama_hd24_bias_bf16";
constexpr int64_t kLayers = 2, kKvHeads = 2;

std::vector<int32_t> prompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, 299);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = tok(rng);
  return ids;
}

std::vector<float> cpu_logits(engine::LoadedModel& m, const std::vector<int32_t>& ids,
                              engine::KvCacheDtype dtype, engine::KvScaleGranularity g) {
  m.model->set_kv_cache_dtype(dtype, g);
  auto cache = m.model->make_cache(int64_t(ids.size()));
  std::vector<float> logits;
  m.model->forward(ids, cache, true, logits);
  return logits;
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Computed scales: the GPU's per-head (or per-layer) scales of the first prompt agree with the
// CPU's within bf16 rounding of keys and values, and so do the logits.
TEST(CudaKvScales, ComputedScalesFollowTheCpuRule) {
  LOWBIT_REQUIRE_GPU();
  auto m = testing::load(testing::source_path("tests/fixtures/tiny/") + kTiny);
  const auto ids = prompt(40, 5);
  for (const char* gran : {"head", "tensor"}) {
    const auto g = engine::kv_scale_granularity(gran);
    const auto cpu = cpu_logits(m, ids, engine::KvCacheDtype::kFp8E4M3, g);
    const engine::KvScales& want = m.model->kv_scales();
    models::CudaOptions opt;
    opt.max_context = 64;
    opt.kv_cache_dtype = "fp8_e4m3";
    opt.kv_cache_scales = gran;
    models::CudaLlamaModel gpu(m.config, *m.source, m.quant->name(), opt);
    std::vector<float> logits;
    gpu.forward(0, ids, true, logits);
    for (int64_t l = 0; l < kLayers; ++l) {
      auto [ks, vs] = gpu.kv_scales(l);
      ASSERT_EQ(int64_t(ks.size()), kKvHeads);
      for (int64_t h = 0; h < kKvHeads; ++h) {
        const size_t i = size_t(l * kKvHeads + h);
        EXPECT_NEAR(ks[size_t(h)], want.k[i], 0.02 * want.k[i]) << gran << " layer " << l;
        EXPECT_NEAR(vs[size_t(h)], want.v[i], 0.02 * want.v[i]) << gran << " layer " << l;
        if (std::string(gran) == "tensor") EXPECT_EQ(ks[size_t(h)], ks[0]);
      }
    }
    EXPECT_LT(rel_error(logits, as_double(cpu)), 3e-2) << gran;
  }
}

// Checkpoint scales per head: uploaded unchanged (not recalibrated by the first prompt) and
// the GPU's logits stay close to the CPU's with the same scales; bad ones fail at load.
TEST(CudaKvScales, CheckpointScalesAreUsed) {
  LOWBIT_REQUIRE_GPU();
  std::map<std::string, ExtraTensor> extra;
  auto scale = [](int64_t l, int64_t h, bool k) {
    return (k ? 0.004f : 0.0015f) * float(1 + l + 2 * h);
  };
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    extra[p + "k_proj.k_scale"] = {{kKvHeads}, {scale(l, 0, true), scale(l, 1, true)}};
    extra[p + "v_proj.v_scale"] = {{kKvHeads}, {scale(l, 0, false), scale(l, 1, false)}};
  }
  auto m = testing::load(testing::checkpoint_with_tensors(kTiny, "cuda_head", extra));
  const auto ids = prompt(33, 6);
  const auto cpu =
      cpu_logits(m, ids, engine::KvCacheDtype::kFp8E4M3, engine::KvScaleGranularity::kHead);
  models::CudaOptions opt;
  opt.max_context = 64;  // kv_cache_dtype auto: fp8_e4m3, as the checkpoint has scales
  models::CudaLlamaModel gpu(m.config, *m.source, m.quant->name(), opt);
  EXPECT_EQ(gpu.kv_cache_dtype(), "fp8_e4m3");
  std::vector<float> logits;
  gpu.forward(0, ids, true, logits);
  for (int64_t l = 0; l < kLayers; ++l) {
    auto [ks, vs] = gpu.kv_scales(l);
    for (int64_t h = 0; h < kKvHeads; ++h) {
      EXPECT_EQ(ks[size_t(h)], scale(l, h, true));
      EXPECT_EQ(vs[size_t(h)], scale(l, h, false));
    }
  }
  EXPECT_LT(rel_error(logits, as_double(cpu)), 3e-2);

  // A NaN scale: the GPU load fails naming the tensor.
  extra["model.layers.1.self_attn.v_proj.v_scale"] = {{kKvHeads}, {0.01f, NAN}};
  const std::string dir = testing::checkpoint_with_tensors(kTiny, "cuda_nan", extra);
  static const auto registry = quant::MethodRegistry::builtin();
  auto src_only = engine::load_model(dir, {"", false, false}, registry);
  try {
    models::CudaLlamaModel g2(src_only.config, *src_only.source, src_only.quant->name(), opt);
    ADD_FAILURE() << "no error for a NaN KV scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.v_proj.v_scale' holds nan"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lowbit::test
