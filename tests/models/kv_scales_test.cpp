// FP8 KV scales stored in a checkpoint (models/kv_scales.h) on the CPU: every accepted naming
// scheme and shape is read, used instead of scales computed from the first prompt, and bad
// scale tensors fail naming the tensor.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "core/half.h"
#include "engine/kv_cache.h"
#include "kv_scale_checkpoint_util.h"
#include "model_test_util.h"

namespace lowbit::testing {
namespace {

constexpr const char* kTiny = "llama_linear_f32";  // 2 layers, 4 heads, 2 kv heads, head_dim 12
constexpr int64_t kLayers = 2, kKvHeads = 2;

std::vector<int32_t> prompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, 299);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = tok(rng);
  return ids;
}

// Scales of layer l, head h, in a pattern that differs per layer, head and k / v.
float k_value(int64_t l, int64_t h) { return 0.002f * float(1 + l + 3 * h); }
float v_value(int64_t l, int64_t h) { return 0.003f * float(2 + 2 * l + h); }

std::string layer(int64_t l, const std::string& rest) {
  return "model.layers." + std::to_string(l) + "." + rest;
}

// Logits of a prompt with an FP8 e4m3 cache (computed scales: per head).
std::vector<float> fp8_logits(engine::LoadedModel& m, const std::vector<int32_t>& ids) {
  m.model->set_kv_cache_dtype(engine::KvCacheDtype::kFp8E4M3, engine::KvScaleGranularity::kHead);
  auto cache = m.model->make_cache(int64_t(ids.size()));
  std::vector<float> logits;
  m.model->forward(ids, cache, true, logits);
  return logits;
}

TEST(CheckpointKvScales, EveryNamingSchemeAndShapeIsRead) {
  struct Scheme {
    const char* tag;
    std::string k, v;            // name patterns with {} for the layer (v = k: one scale)
    std::vector<int64_t> shape;  // of each tensor
    bool per_head;
  };
  const Scheme schemes[] = {
      {"ct_tensor", "self_attn.k_scale", "self_attn.v_scale", {1}, false},
      {"ct_head", "self_attn.k_scale", "self_attn.v_scale", {kKvHeads, 1, 1}, true},
      {"modelopt", "self_attn.k_proj.k_scale", "self_attn.v_proj.v_scale", {}, false},
      {"modelopt_head", "self_attn.k_proj.k_scale", "self_attn.v_proj.v_scale", {kKvHeads}, true},
      {"legacy_ct", "self_attn.k_proj.output_scale", "self_attn.v_proj.output_scale", {1}, false},
      {"kv_scale", "self_attn.kv_scale", "self_attn.kv_scale", {1}, false},
      {"trtllm",
       "self_attn.kv_cache_scaling_factor",
       "self_attn.kv_cache_scaling_factor",
       {1},
       false},
  };
  const auto ids = prompt(9, 1);
  for (const auto& s : schemes) {
    const bool shared = s.k == s.v;
    std::map<std::string, ExtraTensor> extra;
    for (int64_t l = 0; l < kLayers; ++l) {
      auto values = [&](bool is_k) {
        std::vector<float> out;
        for (int64_t h = 0; h < (s.per_head ? kKvHeads : 1); ++h)
          out.push_back(is_k ? k_value(l, h) : v_value(l, h));
        return out;
      };
      extra[layer(l, s.k)] = {s.shape, values(true)};
      if (!shared) extra[layer(l, s.v)] = {s.shape, values(false)};
    }
    auto m = load(checkpoint_with_tensors(kTiny, s.tag, extra));
    ASSERT_TRUE(m.model->has_checkpoint_kv_scales()) << s.tag;
    fp8_logits(m, ids);
    const engine::KvScales& sc = m.model->kv_scales();
    EXPECT_EQ(sc.granularity,
              s.per_head ? engine::KvScaleGranularity::kHead : engine::KvScaleGranularity::kTensor)
        << s.tag;
    for (int64_t l = 0; l < kLayers; ++l)
      for (int64_t h = 0; h < kKvHeads; ++h) {
        const int64_t hh = s.per_head ? h : 0;
        const size_t i = size_t(l * kKvHeads + h);
        EXPECT_EQ(sc.k[i], k_value(l, hh)) << s.tag << " layer " << l << " head " << h;
        EXPECT_EQ(sc.v[i], shared ? k_value(l, hh) : v_value(l, hh)) << s.tag;
      }
  }
}

// TensorRT-LLM names its layers differently; the scale alone is enough to be found.
TEST(CheckpointKvScales, TensorRtLlmLayerNames) {
  std::map<std::string, ExtraTensor> extra;
  for (int64_t l = 0; l < kLayers; ++l)
    extra["transformer.layers." + std::to_string(l) + ".attention.kv_cache_scaling_factor"] = {
        {1}, {k_value(l, 0)}};
  auto m = load(checkpoint_with_tensors(kTiny, "trt_names", extra));
  ASSERT_TRUE(m.model->has_checkpoint_kv_scales());
  EXPECT_EQ(m.model->kv_scales().v[2], k_value(1, 0));
}

// Checkpoint scales replace the first prompt's: the cache holds values rounded with them, and
// a second prompt with a different range does not change them. Per-head checkpoint scales
// near the computed ones give logits close to the f32 cache's.
TEST(CheckpointKvScales, UsedInsteadOfComputedScales) {
  auto plain = load(source_path("tests/fixtures/tiny/") + kTiny);
  EXPECT_FALSE(plain.model->has_checkpoint_kv_scales());
  const auto ids = prompt(24, 2);
  std::vector<float> f32_logits;
  {
    auto cache = plain.model->make_cache(int64_t(ids.size()));
    plain.model->forward(ids, cache, true, f32_logits);
  }
  const auto computed_logits = fp8_logits(plain, ids);
  const engine::KvScales computed = plain.model->kv_scales();
  ASSERT_FALSE(computed.from_checkpoint);
  ASSERT_GT(computed.k[0], 0.0f);

  // The checkpoint: the computed per-head scales × 1.25 (headroom, as a calibration tool's).
  std::map<std::string, ExtraTensor> extra;
  for (int64_t l = 0; l < kLayers; ++l) {
    std::vector<float> k, v;
    for (int64_t h = 0; h < kKvHeads; ++h) {
      k.push_back(1.25f * computed.k[size_t(l * kKvHeads + h)]);
      v.push_back(1.25f * computed.v[size_t(l * kKvHeads + h)]);
    }
    extra[layer(l, "self_attn.k_scale")] = {{kKvHeads}, k};
    extra[layer(l, "self_attn.v_scale")] = {{kKvHeads}, v};
  }
  auto m = load(checkpoint_with_tensors(kTiny, "used", extra));
  const auto logits = fp8_logits(m, ids);
  m.model->set_kv_cache_dtype(engine::KvCacheDtype::kFp8E4M3);
  auto cache = m.model->make_cache(64);
  std::vector<float> unused;
  m.model->forward(prompt(5, 3), cache, false, unused);
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t h = 0; h < kKvHeads; ++h) {
      const size_t i = size_t(l * kKvHeads + h);
      EXPECT_EQ(cache.scales(l, h).first, 1.25f * computed.k[i]);
      EXPECT_EQ(cache.scales(l, h).second, 1.25f * computed.v[i]);
    }
  // The cached keys are the rounding of the computed keys with the checkpoint scale: the
  // first cached key of layer 0, head 1 is a multiple of its scale on the e4m3 grid.
  const float ks = cache.scales(0, 1).first, key = cache.keys(0, 1)[0];
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8(key / ks, true)) * ks, key);
  // FP8 e4m3 keeps 3 mantissa bits (relative steps of 1/16): close to the f32 cache, and
  // not the computed scales' result.
  EXPECT_LT(relative_error(logits, f32_logits), 0.15);
  EXPECT_LT(relative_error(computed_logits, f32_logits), 0.15);
  EXPECT_GT(relative_error(logits, computed_logits), 0.0);
}

// A bad scale tensor fails at load time, naming the tensor and what is wrong.
TEST(CheckpointKvScales, BadTensorsFailNamingThem) {
  struct Bad {
    const char* tag;
    std::map<std::string, ExtraTensor> extra;
    std::string message;  // must appear in the error
  };
  // Good scales everywhere except layer 1's key scale: `shape` with values k1.
  auto both = [](std::vector<int64_t> shape, std::vector<float> k1) {
    std::map<std::string, ExtraTensor> e;
    for (int64_t l = 0; l < kLayers; ++l) {
      e[layer(l, "self_attn.k_scale")] =
          l == 1 ? ExtraTensor{shape, k1} : ExtraTensor{{1}, {0.01f}};
      e[layer(l, "self_attn.v_scale")] = {{1}, {0.01f}};
    }
    return e;
  };
  std::vector<Bad> bad = {
      {"shape", both({3}, {0.1f, 0.1f, 0.1f}), "model.layers.1.self_attn.k_scale' has shape [3]"},
      {"zero", both({1}, {0.0f}), "model.layers.1.self_attn.k_scale' holds 0"},
      {"negative", both({2}, {0.1f, -0.5f}),
       "model.layers.1.self_attn.k_scale' holds -0.5 at index 1"},
      {"nan", both({1}, {NAN}), "model.layers.1.self_attn.k_scale' holds nan"},
  };
  {
    auto e = both({1}, {0.01f});
    e.erase(layer(1, "self_attn.v_scale"));
    bad.push_back({"unpaired", e, "not 'model.layers.1.self_attn.v_scale'"});
  }
  {
    std::map<std::string, ExtraTensor> e;
    e[layer(0, "self_attn.k_proj.k_scale")] = {{1}, {0.01f}};
    e[layer(0, "self_attn.v_proj.v_scale")] = {{1}, {0.01f}};
    bad.push_back(
        {"one_layer", e, "layer 1 has none (no 'model.layers.1.self_attn.k_proj.k_scale')"});
  }
  for (const auto& b : bad) {
    const std::string dir = checkpoint_with_tensors(kTiny, std::string("bad_") + b.tag, b.extra);
    try {
      load(dir);
      ADD_FAILURE() << b.tag << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(b.message), std::string::npos)
          << b.tag << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace lowbit::testing
