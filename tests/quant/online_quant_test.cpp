// Online methods (`int8`, `int4`, `bitsandbytes` on float checkpoints): the RTN quantizers
// against independent float64 scalar implementations written from their definitions here;
// every method through nn::load_linear against its dequantized weight in float64 (odd shapes,
// F32/F16/BF16 weights, bias); model selection (detect_method) on HF and GGUF checkpoints,
// including the refusals; whole tiny models against their float logits.
#include <filesystem>
#include <fstream>

#include "engine/model_loader.h"
#include "quant/rtn.h"
#include "quant/weight_only_method.h"
#include "quant_test_util.h"
#include "test_paths.h"

namespace lowbit::quant::testing {
namespace {
namespace kc = kernels::cpu;
using lowbit::testing::source_path;

// Random weights of varied magnitude per row, stored exactly in `dtype`.
std::vector<float> random_weight(int64_t n, int64_t k, DType dtype, Rng& rng) {
  std::vector<float> w = random_floats(size_t(n * k), rng);
  std::uniform_int_distribution<int> e(-6, 2);
  for (int64_t j = 0; j < n; ++j) {
    const float row_scale = std::ldexp(1.0f, e(rng));
    for (int64_t c = 0; c < k; ++c) {
      float& v = w[size_t(j * k + c)];
      v = stored_float(v * row_scale, dtype);
    }
  }
  return w;
}

// True when v / step lies within `slack` of a rounding tie (x.5): the two implementations may
// then legitimately round differently.
bool near_tie(double v, double step, double slack = 1e-4) {
  double f = v / step - std::floor(v / step);
  return std::abs(f - 0.5) < slack;
}

// ---- the quantizers against scalar float64 definitions ----------------------------------------

TEST(Rtn, Int8CodesMatchTheDefinition) {
  Rng rng(11);
  const int64_t n = 37, k = 131;
  std::vector<float> w = random_weight(n, k, DType::F32, rng);
  QuantizedWeight q = rtn_int8_per_channel(w.data(), n, k);
  ASSERT_EQ(q.group_size, k);
  EXPECT_TRUE(q.zeros.empty());
  int ties = 0;
  for (int64_t j = 0; j < n; ++j) {
    double amax = 0;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::abs(double(w[size_t(j * k + c)])));
    const double scale = amax / 127.0;
    EXPECT_NEAR(q.scales[size_t(j)], scale, scale * 1e-6) << "row " << j;
    for (int64_t c = 0; c < k; ++c) {
      const double v = w[size_t(j * k + c)];
      const long expected = std::lround(v / scale);  // any tie rule; ties are checked below
      const int got = int(q.codes[size_t(j * k + c)]) - 128;
      if (got != expected) {
        ++ties;
        EXPECT_TRUE(near_tie(v, scale))
            << "row " << j << " col " << c << " got " << got << " expected " << expected;
      }
      EXPECT_LE(std::abs(got), 127);
    }
  }
  EXPECT_LE(ties, 2);
}

TEST(Rtn, Int4GroupsRoundToNearestAndBeatMinMax) {
  Rng rng(12);
  for (auto [n, k, g] :
       {std::tuple<int64_t, int64_t, int64_t>{9, 256, 128}, {5, 96, 32}, {7, 172, 86}, {3, 7, 7}}) {
    std::vector<float> w = random_weight(n, k, DType::F32, rng);
    // Constant groups (one positive, one negative) must come back exactly.
    for (int64_t c = 0; c < g; ++c) w[size_t(c)] = 0.25f;
    if (n > 1)
      for (int64_t c = 0; c < g; ++c) w[size_t(k + c)] = -0.5f;
    QuantizedWeight q = rtn_int4_grouped(w.data(), n, k, g);
    ASSERT_EQ(q.group_size, g);
    const int64_t groups = k / g;
    double err = 0, err_minmax = 0;  // unweighted squared error over the whole weight
    for (int64_t j = 0; j < n; ++j)
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float* x = w.data() + j * k + gi * g;
        const size_t si = size_t(j * groups + gi);
        const double scale = q.scales[si], zero = q.zeros[si];
        ASSERT_GT(scale, 0);
        ASSERT_TRUE(std::isfinite(zero));
        double lo = x[0], hi = x[0], sum2 = 0;
        for (int64_t c = 0; c < g; ++c) {
          lo = std::min(lo, double(x[c])), hi = std::max(hi, double(x[c]));
          sum2 += double(x[c]) * x[c];
        }
        // The plain min/max candidate (AWQ's pseudo-quantizer) under the same weighting.
        const double mm_scale = std::max(hi - lo, 1e-5) / 15.0;
        const double mm_zero = std::clamp(double(std::lround(-lo / mm_scale)), 0.0, 15.0);
        const double rms = std::sqrt(sum2 / double(g));
        double werr = 0, werr_minmax = 0;
        for (int64_t c = 0; c < g; ++c) {
          const int got = q.codes[size_t(j * k + gi * g + c)];
          ASSERT_LE(got, 15);
          // Nearest code for the chosen (scale, zero), unless clamped at the ends.
          const double ideal = x[c] / scale + zero;
          if (ideal > 0.5 && ideal < 14.5) EXPECT_LE(std::abs(got - ideal), 0.5 + 1e-4);
          const double d = (got - zero) * scale - x[c];
          const double mm_code =
              std::clamp(double(std::lround(x[c] / mm_scale)) + mm_zero, 0.0, 15.0);
          const double dm = (mm_code - mm_zero) * mm_scale - x[c];
          werr += (rms + std::abs(x[c])) * d * d;
          werr_minmax += (rms + std::abs(x[c])) * dm * dm;
          err += d * d;
          err_minmax += dm * dm;
        }
        EXPECT_LE(werr, werr_minmax * (1 + 1e-5) + 1e-12) << "row " << j << " group " << gi;
        if (hi - lo <= 1e-5)
          for (int64_t c = 0; c < g; ++c)
            EXPECT_NEAR((q.codes[size_t(j * k + gi * g + c)] - zero) * scale, x[c], 1e-6);
      }
    // The least-squares refit pays on Gaussian-like weights.
    EXPECT_LT(err, 0.9 * err_minmax) << n << "x" << k << " group " << g;
  }
}

TEST(Rtn, Int4GroupSize) {
  EXPECT_EQ(int4_group_size(4096), 128);
  EXPECT_EQ(int4_group_size(576), 96);  // 576 = 4.5 · 128 = 6 · 96
  EXPECT_EQ(int4_group_size(96), 96);
  EXPECT_EQ(int4_group_size(64), 64);
  EXPECT_EQ(int4_group_size(160), 32);
  EXPECT_EQ(int4_group_size(172), 0);  // no multiple of 32 divides 172 = 4 · 43: left unquantized
  EXPECT_EQ(int4_group_size(7), 0);
  EXPECT_EQ(int4_group_size(1), 0);
}

TEST(Rtn, Nf4BlocksMatchNearestTableEntry) {
  Rng rng(13);
  const int64_t numel = 64 * 5 + 17;  // a short last block
  std::vector<float> w = random_weight(1, numel, DType::F32, rng);
  for (int i = 70; i < 80; ++i) w[size_t(i)] = 0;  // exact zeros map to code 7 (value 0)
  for (kc::WqKind kind : {kc::WqKind::kNf4, kc::WqKind::kFp4}) {
    Bnb4bitBlocks b = bnb_quantize_4bit(kind, w.data(), numel, 64);
    ASSERT_EQ(b.absmax.size(), 6u);
    const float* lut = kc::wq_lut(kind);
    for (int64_t e = 0; e < numel; ++e) {
      const int64_t blk = e / 64;
      double amax = 0;
      for (int64_t i = blk * 64; i < std::min(numel, blk * 64 + 64); ++i)
        amax = std::max(amax, std::abs(double(w[size_t(i)])));
      ASSERT_EQ(b.absmax[size_t(blk)], float(amax));
      const double x = w[size_t(e)] / amax;
      double best = 1e30;
      for (int c = 0; c < 16; ++c) best = std::min(best, std::abs(x - lut[c]));
      const int code = b.codes[size_t(e)];
      ASSERT_LT(code, 16);
      EXPECT_LE(std::abs(x - lut[code]), best + 1e-6) << kc::wq_kind_name(kind) << " element " << e;
    }
  }
}

TEST(Rtn, BnbBlocksBecomeRowGroups) {
  // k = 172 and blocksize 64: blocks straddle rows; groups of gcd(172, 64) = 4 columns.
  Rng rng(14);
  const int64_t n = 5, k = 172;
  std::vector<float> w = random_weight(n, k, DType::F32, rng);
  Bnb4bitBlocks b = bnb_quantize_4bit(kc::WqKind::kNf4, w.data(), n * k, 64);
  std::vector<uint8_t> flat = b.codes;
  QuantizedWeight q = bnb_blocks_to_groups(kc::WqKind::kNf4, std::move(flat), b.absmax, n, k, 64);
  ASSERT_EQ(q.group_size, 4);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < k; ++c)
      EXPECT_EQ(q.scales[size_t(j * (k / 4) + c / 4)], b.absmax[size_t((j * k + c) / 64)]);
}

// ---- methods through the loader ---------------------------------------------------------------

// The float64 weight a method should compute with, from the test's own definitions.
std::vector<double> int8_reference(const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<double> out(w.size());
  for (int64_t j = 0; j < n; ++j) {
    float amax = 0;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::abs(w[size_t(j * k + c)]));
    const float scale = amax / 127.0f;  // the scale as stored (fp32)
    for (int64_t c = 0; c < k; ++c)
      out[size_t(j * k + c)] =
          scale > 0 ? double(std::nearbyint(w[size_t(j * k + c)] / scale)) * double(scale) : 0.0;
  }
  return out;
}

// The layer must compute with exactly the weight rtn_int4_grouped chose (its choice is tested
// in Rtn.Int4GroupsRoundToNearestAndBeatMinMax), dequantized in double.
std::vector<double> int4_reference(const std::vector<float>& w, int64_t n, int64_t k, int64_t g) {
  QuantizedWeight q = rtn_int4_grouped(w.data(), n, k, g);
  std::vector<double> out(w.size());
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < k; ++c) {
      const size_t si = size_t(j * (k / g) + c / g);
      out[size_t(j * k + c)] =
          (double(q.codes[size_t(j * k + c)]) - double(q.zeros[si])) * double(q.scales[si]);
    }
  return out;
}

std::vector<double> nf4_reference(const std::vector<float>& w, int64_t blocksize) {
  const float* lut = kc::wq_lut(kc::WqKind::kNf4);
  std::vector<double> out(w.size());
  for (size_t b0 = 0; b0 < w.size(); b0 += size_t(blocksize)) {
    const size_t end = std::min(w.size(), b0 + size_t(blocksize));
    float amax = 0;
    for (size_t e = b0; e < end; ++e) amax = std::max(amax, std::abs(w[e]));
    for (size_t e = b0; e < end; ++e) {
      const double x = amax > 0 ? double(w[e]) / amax : 0.0;
      int best = 0;
      for (int c = 1; c < 16; ++c)
        if (std::abs(x - lut[c]) < std::abs(x - lut[best])) best = c;
      out[e] = double(lut[best]) * double(amax);
    }
  }
  return out;
}

struct OnlineCase {
  int64_t n, k;
  DType dtype;
  bool bias;
};

TEST(OnlineMethods, LayerMatchesDequantizedWeight) {
  Rng rng(21);
  const std::vector<OnlineCase> cases = {{33, 256, DType::F32, true},
                                         {17, 172, DType::F16, false},
                                         {8, 96, DType::BF16, true},
                                         {5, 7, DType::F32, false},
                                         {64, 64, DType::BF16, false}};
  for (const std::string method : {"int8", "int4", "bitsandbytes"}) {
    auto config = registry().make(method, json::object());
    EXPECT_EQ(config->name(), method);
    for (const OnlineCase& c : cases) {
      SCOPED_TRACE(method + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) + " " +
                   std::string(name(c.dtype)));
      FakeSource src;
      const std::string prefix = "model.layers.0.mlp.up_proj";
      std::vector<float> w = random_weight(c.n, c.k, c.dtype, rng);
      src.add_float(prefix + ".weight", c.dtype, {c.n, c.k}, w);
      std::vector<float> bias;
      if (c.bias) {
        bias = random_floats(size_t(c.n), rng);
        src.add_float(prefix + ".bias", DType::F32, {c.n}, bias);
      }
      // int4 leaves a layer no multiple of 32 divides (k = 172, 7) in its float dtype.
      const bool int4_skips = method == "int4" && int4_group_size(c.k) == 0;
      std::vector<double> ref = method == "int8" ? int8_reference(w, c.n, c.k)
                                : int4_skips     ? std::vector<double>(w.begin(), w.end())
                                : method == "int4"
                                    ? int4_reference(w, c.n, c.k, int4_group_size(c.k))
                                    : nf4_reference(w, 64);
      expect_layer_matches(prefix, *config, src, ref, c.n, c.k, bias, rng, method);
    }
  }
}

TEST(OnlineMethods, LmHeadPolicyAndInfoIsFlagged) {
  for (const std::string method : {"int8", "int4", "bitsandbytes"}) {
    const MethodInfo* info = registry().find(method);
    ASSERT_NE(info, nullptr);
    EXPECT_TRUE(info->quantizes_online);
    EXPECT_EQ(info->origin, "built-in");
    auto config = registry().make(method, json::object());
    LinearLayer layer;
    layer.prefix = "lm_head";
    layer.in_features = 576;
    layer.out_features = 1000;
    // int4 and int8 keep lm_head at int8 per channel (as llama-quantize keeps output at 8
    // bits); bitsandbytes leaves it unquantized, as transformers does.
    auto lm_head = config->get_quant_method(layer, "lm_head");
    if (method == "bitsandbytes") {
      EXPECT_EQ(lm_head, nullptr);
    } else {
      auto* wq = dynamic_cast<const WeightOnlyIntMethod*>(lm_head.get());
      ASSERT_NE(wq, nullptr);
      EXPECT_EQ(wq->method_name(), "int8");
    }
    EXPECT_NE(config->get_quant_method(layer, "model.layers.0.self_attn.q_proj"), nullptr);
    EXPECT_EQ(config->get_moe_method(MoELayer{}, "model.layers.0.mlp"), nullptr);
  }
  LinearLayer odd;
  odd.in_features = 172;
  odd.out_features = 64;
  EXPECT_EQ(registry().make("int4", json::object())->get_quant_method(odd, "down_proj"), nullptr);
  EXPECT_NE(registry().make("int8", json::object())->get_quant_method(odd, "down_proj"), nullptr);
  EXPECT_FALSE(registry().find("gguf")->quantizes_online);
  EXPECT_FALSE(registry().find("unquantized")->quantizes_online);
}

TEST(OnlineMethods, Errors) {
  auto config = registry().make("int4", json::object());
  FakeSource src;
  const std::string prefix = "model.layers.0.mlp.down_proj";
  std::vector<float> w(6 * 32, 0.5f);
  w[32 + 5] = std::numeric_limits<float>::quiet_NaN();
  src.add_float(prefix + ".weight", DType::F32, {6, 32}, w);
  expect_error([&] { nn::load_linear(prefix, prefix, 32, 6, false, *config, src); },
               {prefix, "[1, 5]", "nan", "int4"});
  FakeSource q8;
  q8.add(prefix + ".weight", DType::I8, {6, 32}, std::vector<int8_t>(6 * 32, 1));
  expect_error([&] { nn::load_linear(prefix, prefix, 32, 6, false, *config, q8); },
               {"fake.safetensors", prefix + ".weight", "I8", "F32/F16/BF16"});
  expect_error(
      [&] {
        registry().make("int8", json{{"bits", 8}});
      },
      {"int8", "no quantization_config"});
}

// ---- model selection ---------------------------------------------------------------------------

TEST(OnlineMethods, DetectMethodAcceptsFloatCheckpoints) {
  const auto& r = registry();
  const std::string hf = source_path("tests/fixtures/tiny/llama3_rope_f32");
  const std::string gguf_f32 = source_path("tests/fixtures/tiny/llama3_rope_f32.gguf");
  const std::string gguf_f16 = source_path("tests/fixtures/tiny/qwen2_f16.gguf");
  const std::string gguf_bf16 = source_path("tests/fixtures/tiny/qwen3_bf16.gguf");
  for (const std::string method : {"int8", "int4", "bitsandbytes"}) {
    EXPECT_EQ(engine::detect_method(hf, method, r), method);
    EXPECT_EQ(engine::detect_method(gguf_f32, method, r), method);
    EXPECT_EQ(engine::detect_method(gguf_f16, method, r), method);
    EXPECT_EQ(engine::detect_method(gguf_bf16, method, r), method);
  }
  EXPECT_EQ(engine::detect_method(hf, "", r), "unquantized");
  EXPECT_EQ(engine::detect_method(gguf_f32, "", r), "gguf");
}

TEST(OnlineMethods, DetectMethodRefusals) {
  const auto& r = registry();
  const std::string q4 = source_path("tests/fixtures/llama_cpp/stories260K-Q4_0.gguf");
  expect_error([&] { engine::detect_method(q4, "int4", r); },
               {q4, "--quantization int4", "'token_embd.weight'", "already quantized (Q4_0)"});
  // A forced method that is not online still has to agree with the checkpoint.
  const std::string hf = source_path("tests/fixtures/tiny/llama3_rope_f32");
  expect_error([&] { engine::detect_method(hf, "gguf", r); },
               {"--quantization gguf contradicts", "'unquantized'"});
  expect_error([&] { engine::detect_method(hf, "no_such_method", r); },
               {"unknown quantization method 'no_such_method'", "int4", "bitsandbytes"});
  // An online method on an already-quantized HF checkpoint.
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("lowbit_online_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"quantization_config": {"quant_method": "awq", "bits": 4}})";
  expect_error([&] { engine::detect_method(dir.string(), "int8", r); },
               {"--quantization int8 contradicts", "'awq'", "unquantized checkpoints only"});
  fs::remove_all(dir);
}

// Whole tiny models quantized online: logits stay close to the float model's.
TEST(OnlineMethods, TinyModelsRunCloseToFloat) {
  const std::vector<int32_t> ids = {1, 17, 42, 99, 7, 250, 3};
  for (const std::string path :
       {"tests/fixtures/tiny/llama_hd24_bias_bf16", "tests/fixtures/tiny/qwen2_f16.gguf",
        "tests/fixtures/tiny/llama3_rope_f32.gguf"}) {
    const std::string full = source_path(path);
    engine::LoadedModel base = engine::load_model(full, {"", false}, registry());
    auto cache = base.model->make_cache(int64_t(ids.size()));
    std::vector<float> ref;
    base.model->forward(ids, cache, false, ref);
    // Random tiny models have no redundancy to absorb 4-bit noise: loose bounds there (the
    // perplexity test on stories260K measures real quality).
    for (auto [method, tol] :
         {std::pair<std::string, double>{"int8", 0.03}, {"int4", 0.8}, {"bitsandbytes", 0.8}}) {
      SCOPED_TRACE(path + " " + method);
      engine::LoadedModel m = engine::load_model(full, {method, false}, registry());
      EXPECT_EQ(m.quant->name(), method);
      // Per token: a tied model keeps its float embedding for lookups beside the int8 lm_head,
      // so the total can grow on tiny models, but every step reads fewer bytes.
      EXPECT_LT(m.model->weight_bytes_per_token(), base.model->weight_bytes_per_token());
      auto c = m.model->make_cache(int64_t(ids.size()));
      std::vector<float> logits;
      m.model->forward(ids, c, false, logits);
      ASSERT_EQ(logits.size(), ref.size());
      double diff = 0, mag = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_TRUE(std::isfinite(logits[i]));
        diff = std::max(diff, double(std::abs(logits[i] - ref[i])));
        mag = std::max(mag, double(std::abs(ref[i])));
      }
      EXPECT_LT(diff / mag, tol);
      EXPECT_GT(diff, 0.0);  // it did quantize
    }
  }
}

}  // namespace
}  // namespace lowbit::quant::testing
