// FP8 and W8A8 checkpoints (FORMATS.md §3.5, §4.1, §4.2): the `fp8` method on HF configs
// (per-tensor scale with static / dynamic activations, weight_block_size blocks with
// weight_scale_inv and edge blocks) and compressed-tensors FP8 (tensor / channel / block
// strategies) and INT8 W8A8 groups, each written with random codes and scales and compared
// with a float64 forward of the dequantized weight on activations rounded by an independent
// reimplementation of the scheme's rule; then the bad inputs (scale shapes, NaN / negative
// scales, NaN codes, bad block sizes, static int8 activations), each named in the error.
#include "quant/fp8_checkpoint.h"

#include <cmath>
#include <mutex>

#include "quant/act_quant.h"
#include "quant_test_util.h"

namespace lowbit::quant::testing {
namespace {

// e4m3fn decoded from its bit fields (FORMATS.md §4.0), independent of core/half.h.
double e4m3_value(uint8_t code) {
  const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return sign ? -v : v;
}

// The e4m3 value nearest v (saturating at ±448), by search over every finite code.
double nearest_e4m3(double v) {
  double best = 0, dist = INFINITY;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const double d = std::abs(e4m3_value(uint8_t(c)) - v);
    if (d < dist) dist = d, best = e4m3_value(uint8_t(c));
  }
  return best;
}

// Random finite e4m3 codes, no NaN.
std::vector<uint8_t> random_codes(size_t count, Rng& rng) {
  std::uniform_int_distribution<int> u(0, 255);
  std::vector<uint8_t> c(count);
  for (auto& v : c) {
    do v = uint8_t(u(rng));
    while ((v & 0x7f) == 0x7f);
  }
  return c;
}

// Activation rounding of a scheme, written from FORMATS.md: per token or per group of `group`
// columns, s = max(amax, floor) / qmax in fp32 (as the kernels compute it), or a static s.
struct ActRule {
  enum { kNone, kDynamic, kStatic } kind = kNone;
  bool fp8 = true;
  int64_t group = 0;
  float floor = 0, static_scale = 0;
};

std::vector<float> round_activations(const ActRule& a, std::vector<float> x, int64_t m, int64_t k) {
  if (a.kind == ActRule::kNone) return x;
  const int64_t span = a.group > 0 ? a.group : k;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c0 = 0; c0 < k; c0 += span) {
      const int64_t end = std::min(k, c0 + span);
      float s = a.static_scale;
      if (a.kind == ActRule::kDynamic) {
        float amax = a.floor;
        for (int64_t c = c0; c < end; ++c) amax = std::max(amax, std::abs(x[size_t(r * k + c)]));
        s = amax / (a.fp8 ? 448.0f : 127.0f);
      }
      for (int64_t c = c0; c < end; ++c) {
        float& v = x[size_t(r * k + c)];
        const double q = double(v / s);
        v = float((a.fp8 ? nearest_e4m3(q) : std::clamp(std::nearbyint(q), -128.0, 127.0)) *
                  double(s));
      }
    }
  return x;
}

enum class Scales { kTensor, kChannel, kBlock };

struct Fp8Case {
  Fp8Case(std::string l, json c, Scales s = Scales::kTensor)
      : label(std::move(l)), config(std::move(c)), scales(s) {}
  std::string label;
  json config;  // quantization_config (its quant_method picks the method)
  Scales scales = Scales::kTensor;
  int64_t bn = 128, bk = 128;
  std::string scale_suffix = "weight_scale";
  DType scale_dtype = DType::F32;
  bool scalar_scale = false;  // per-tensor scales stored as [] (else [1])
  ActRule act;
};

// Writes a random FP8 layer under `prefix`; returns the dequantized weight [n, k] and sets the
// static input scale of case `c` (when static).
std::vector<double> make_fp8_layer(FakeSource& src, const std::string& prefix, int64_t n, int64_t k,
                                   Fp8Case& c, Rng& rng) {
  const std::vector<uint8_t> codes = random_codes(size_t(n * k), rng);
  src.add(prefix + ".weight", DType::F8_E4M3, {n, k}, codes);
  std::vector<int64_t> shape = {1};
  if (c.scales == Scales::kChannel) shape = {n, 1};
  if (c.scales == Scales::kBlock) shape = {(n + c.bn - 1) / c.bn, (k + c.bk - 1) / c.bk};
  if (c.scales == Scales::kTensor && c.scalar_scale) shape = {};
  const size_t count = c.scales == Scales::kTensor ? 1 : size_t(shape[0] * shape[1]);
  std::vector<float> s = random_scales(count, c.scale_dtype, rng);
  src.add_float(prefix + "." + c.scale_suffix, c.scale_dtype, shape, s);
  std::vector<double> w(size_t(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t col = 0; col < k; ++col) {
      size_t si = 0;
      if (c.scales == Scales::kChannel) si = size_t(r);
      if (c.scales == Scales::kBlock) si = size_t((r / c.bn) * shape[1] + col / c.bk);
      w[size_t(r * k + col)] = e4m3_value(codes[size_t(r * k + col)]) * double(s[si]);
    }
  if (c.act.kind == ActRule::kStatic) {
    c.act.static_scale =
        stored_float(0.7f / 448.0f, c.scale_dtype);  // inputs span ±1: some saturate
    src.add_float(prefix + ".input_scale", c.scale_dtype,
                  c.scalar_scale ? std::vector<int64_t>{} : std::vector<int64_t>{1},
                  {c.act.static_scale});
  }
  return w;
}

// Loads the layer and compares with the float64 forward of W on activations rounded by the
// case's rule: within bf16 storage error of the exact weight, and (the same weight rounded to
// bf16) to fp32 accuracy; also checks the rule changed the result (it is applied).
void expect_fp8_layer(const Fp8Case& c0, int64_t n, int64_t k, bool bias) {
  Fp8Case c = c0;
  Rng rng(1234 + n + k);
  FakeSource src;
  const std::string prefix = "model.layers.0.mlp.down_proj";
  const std::vector<double> w = make_fp8_layer(src, prefix, n, k, c, rng);
  std::vector<float> b;
  if (bias) {
    b = random_floats(size_t(n), rng);
    src.add_float(prefix + ".bias", DType::F32, {n}, b);
  }
  auto config = registry().make(c.config["quant_method"].get<std::string>(), c.config);
  nn::Linear lin = nn::load_linear(prefix, prefix, k, n, bias, *config, src);
  EXPECT_EQ(lin.weight_bytes(), uint64_t(n * k * 2 + (bias ? n * 4 : 0))) << c.label;
  std::vector<double> w_bf16(w.size());
  for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = double(stored_float(float(w[i]), DType::BF16));
  kernels::cpu::set_exact_activations(true);
  for (int64_t m : {int64_t(1), int64_t(5)}) {
    std::vector<float> x = random_floats(size_t(m * k), rng);
    const std::vector<float> xq = round_activations(c.act, x, m, k);
    auto with_bias = [&](std::vector<double> y) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < n; ++j) y[size_t(r * n + j)] += b.empty() ? 0.0 : b[size_t(j)];
      return y;
    };
    const auto ref = with_bias(reference_forward(w, n, k, xq, m));
    const auto ref_bf16 = with_bias(reference_forward(w_bf16, n, k, xq, m));
    std::vector<float> y(size_t(m * n));
    lin.forward(x.data(), m, y.data());
    EXPECT_LT(relative_error(y, ref_bf16), 2e-6) << c.label << " m=" << m << " (bf16 W)";
    EXPECT_LT(relative_error(y, ref), 1e-2) << c.label << " m=" << m << " (exact W)";
    if (c.act.kind != ActRule::kNone) {
      const auto unrounded = with_bias(reference_forward(w_bf16, n, k, x, m));
      EXPECT_GT(relative_error(y, unrounded), 1e-5) << c.label << ": activations not rounded";
    }
  }
  kernels::cpu::set_exact_activations(false);
}

json hf_fp8(const std::string& acts) {
  return {{"quant_method", "fp8"}, {"activation_scheme", acts}};
}

json ct_group(json weights, json inputs, const std::string& format = "float-quantized") {
  return {{"quant_method", "compressed-tensors"},
          {"format", format},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}},
              {"weights", weights},
              {"input_activations", inputs},
              {"output_activations", nullptr},
              {"format", nullptr}}}}},
          {"ignore", {"lm_head"}},
          {"sparsity_config", json::object()},
          {"transform_config", json::object()}};
}

json fp8_args(const std::string& strategy) {
  json w = {{"num_bits", 8},    {"type", "float"},      {"symmetric", true},
            {"dynamic", false}, {"strategy", strategy}, {"group_size", nullptr}};
  if (strategy == "block") w["block_structure"] = {128, 128};
  return w;
}

json fp8_token() {
  return {{"num_bits", 8},
          {"type", "float"},
          {"symmetric", true},
          {"dynamic", true},
          {"strategy", "token"}};
}

TEST(Fp8Checkpoint, HfPerTensorDynamic) {
  Fp8Case c{"hf fp8 per-tensor dynamic", hf_fp8("dynamic")};
  c.scalar_scale = true;
  c.act = {ActRule::kDynamic, true};
  expect_fp8_layer(c, 40, 96, true);
}

TEST(Fp8Checkpoint, HfPerTensorStatic) {
  Fp8Case c{"hf fp8 per-tensor static", hf_fp8("static")};
  c.act = {ActRule::kStatic, true};
  expect_fp8_layer(c, 24, 64, false);
  c.scalar_scale = true;
  expect_fp8_layer(c, 24, 64, false);
}

// Block-wise with edge blocks in both dimensions (200 = 128 + 72 rows, 320 = 2·128 + 64 cols).
TEST(Fp8Checkpoint, HfBlockWiseWithEdgeBlocks) {
  json j = hf_fp8("dynamic");
  j["weight_block_size"] = {128, 128};
  j["fmt"] = "e4m3";
  Fp8Case c{"hf fp8 block", j, Scales::kBlock};
  c.scale_suffix = "weight_scale_inv";
  c.act = {ActRule::kDynamic, true, 128, 1e-4f};
  expect_fp8_layer(c, 200, 320, false);
  j["weight_block_size"] = {16, 32};  // small blocks: many of them
  c.config = j;
  c.bn = 16;
  c.bk = 32;
  c.act.group = 32;
  expect_fp8_layer(c, 40, 96, true);
}

TEST(Fp8Checkpoint, CompressedTensorsFp8Schemes) {
  Fp8Case fp8{"CT FP8 (tensor, static)", ct_group(fp8_args("tensor"), {{"num_bits", 8},
                                                                       {"type", "float"},
                                                                       {"symmetric", true},
                                                                       {"dynamic", false},
                                                                       {"strategy", "tensor"}})};
  fp8.scale_dtype = DType::BF16;
  fp8.act = {ActRule::kStatic, true};
  expect_fp8_layer(fp8, 48, 64, false);

  Fp8Case dyn{"CT FP8_DYNAMIC (channel, token)", ct_group(fp8_args("channel"), fp8_token()),
              Scales::kChannel};
  dyn.scale_dtype = DType::BF16;
  dyn.act = {ActRule::kDynamic, true};
  expect_fp8_layer(dyn, 56, 96, true);

  json group_acts = fp8_token();
  group_acts["strategy"] = "group";
  group_acts["group_size"] = 128;
  Fp8Case block{"CT FP8_BLOCK (block, group 128)", ct_group(fp8_args("block"), group_acts),
                Scales::kBlock};
  block.scale_dtype = DType::F16;
  block.act = {ActRule::kDynamic, true, 128};
  expect_fp8_layer(block, 136, 256, false);

  Fp8Case w8a16{"CT FP8 weight-only (channel)",
                ct_group(fp8_args("channel"), nullptr, "naive-quantized"), Scales::kChannel};
  expect_fp8_layer(w8a16, 32, 64, false);
}

// INT8 W8A8 (int-quantized, channel weights, dynamic per-token int8 activations).
TEST(Fp8Checkpoint, CompressedTensorsInt8W8A8) {
  const int64_t n = 48, k = 96;
  Rng rng(77);
  json w = {{"num_bits", 8},
            {"type", "int"},
            {"symmetric", true},
            {"dynamic", false},
            {"strategy", "channel"}};
  json in = {{"num_bits", 8},
             {"type", "int"},
             {"symmetric", true},
             {"dynamic", true},
             {"strategy", "token"}};
  auto config = registry().make("compressed-tensors", ct_group(w, in, "int-quantized"));
  FakeSource src;
  const std::string prefix = "model.layers.1.self_attn.o_proj";
  std::uniform_int_distribution<int> u(-128, 127);
  std::vector<int8_t> q(size_t(n * k));
  for (auto& v : q) v = int8_t(u(rng));
  std::vector<float> s = random_scales(size_t(n), DType::BF16, rng);
  src.add(prefix + ".weight", DType::I8, {n, k}, q);
  src.add_float(prefix + ".weight_scale", DType::BF16, {n, 1}, s);
  std::vector<double> wd(size_t(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) wd[size_t(r * k + c)] = double(q[size_t(r * k + c)]) * s[r];
  nn::Linear lin = nn::load_linear(prefix, prefix, k, n, false, *config, src);
  kernels::cpu::set_exact_activations(true);
  for (int64_t m : {int64_t(1), int64_t(4)}) {
    std::vector<float> x = random_floats(size_t(m * k), rng);
    const auto xq = round_activations({ActRule::kDynamic, false}, x, m, k);
    std::vector<float> y(size_t(m * n));
    lin.forward(x.data(), m, y.data());
    EXPECT_LT(relative_error(y, reference_forward(wd, n, k, xq, m)), 2e-6) << "m=" << m;
    EXPECT_GT(relative_error(y, reference_forward(wd, n, k, x, m)), 1e-5) << "not rounded";
  }
  kernels::cpu::set_exact_activations(false);
}

// Every error names the layer or tensor and what was expected.
TEST(Fp8Checkpoint, BadInputsAreNamed) {
  const std::string prefix = "model.layers.0.mlp.up_proj";
  auto load = [&](const json& j, FakeSource& src, int64_t n, int64_t k) {
    auto config = registry().make(j["quant_method"].get<std::string>(), j);
    nn::load_linear(prefix, prefix, k, n, false, *config, src);
  };
  Rng rng(5);
  auto layer = [&](Fp8Case c, int64_t n, int64_t k) {
    FakeSource src;
    make_fp8_layer(src, prefix, n, k, c, rng);
    return src;
  };
  const json dyn_channel = ct_group(fp8_args("channel"), fp8_token());
  {  // channel scale stored as [N] instead of [N, 1]
    FakeSource src = layer({"", dyn_channel, Scales::kChannel}, 32, 64);
    src.add_float(prefix + ".weight_scale", DType::F32, {32}, std::vector<float>(32, 0.01f));
    expect_error([&] { load(dyn_channel, src, 32, 64); },
                 {prefix + ".weight_scale", "shape [32]", "expected [32, 1]"});
  }
  {  // a NaN, a negative and a zero scale
    for (float bad : {NAN, -0.5f, 0.0f}) {
      FakeSource src = layer({"", dyn_channel, Scales::kChannel}, 32, 64);
      std::vector<float> s(32, 0.01f);
      s[7] = bad;
      src.add_float(prefix + ".weight_scale", DType::F32, {32, 1}, s);
      expect_error([&] { load(dyn_channel, src, 32, 64); },
                   {prefix, "weight_scale[7]", "positive finite"});
    }
  }
  {  // a NaN weight code
    FakeSource src = layer({"", hf_fp8("dynamic")}, 16, 32);
    std::vector<uint8_t> codes = random_codes(16 * 32, rng);
    codes[3 * 32 + 5] = 0xff;
    src.add(prefix + ".weight", DType::F8_E4M3, {16, 32}, codes);
    expect_error([&] { load(hf_fp8("dynamic"), src, 16, 32); }, {prefix, "weight[3, 5]", "NaN"});
  }
  {  // a BF16 weight where F8_E4M3 is expected
    FakeSource src = layer({"", hf_fp8("dynamic")}, 16, 32);
    src.add_float(prefix + ".weight", DType::BF16, {16, 32}, random_floats(16 * 32, rng));
    expect_error([&] { load(hf_fp8("dynamic"), src, 16, 32); },
                 {prefix + ".weight", "BF16", "F8_E4M3"});
  }
  {  // block scales sized by floor(N / 128) where the block size does not divide N = 200
    json j = hf_fp8("dynamic");
    j["weight_block_size"] = {128, 128};
    Fp8Case c{"", j, Scales::kBlock};
    c.scale_suffix = "weight_scale_inv";
    FakeSource src = layer(c, 200, 256);
    src.add_float(prefix + ".weight_scale_inv", DType::F32, {1, 2}, {0.01f, 0.02f});
    expect_error([&] { load(j, src, 200, 256); },
                 {prefix + ".weight_scale_inv", "shape [1, 2]", "expected [2, 2]"});
  }
  {  // a missing static input scale
    Fp8Case c{"", hf_fp8("static")};
    c.act = {ActRule::kStatic, true};
    FakeSource src = layer(c, 16, 32);
    src.remove(prefix + ".input_scale");
    expect_error([&] { load(hf_fp8("static"), src, 16, 32); },
                 {prefix + ".input_scale", "missing"});
  }
  // Config errors.
  json j = hf_fp8("dynamic");
  j["weight_block_size"] = {128, 0};
  expect_error([&] { registry().make("fp8", j); }, {"weight_block_size", "[128,0]", "positive"});
  j["weight_block_size"] = {128, 128};
  j["activation_scheme"] = "static";
  expect_error([&] { registry().make("fp8", j); }, {"weight_block_size", "dynamic"});
  expect_error([&] { registry().make("fp8", hf_fp8("per-token")); },
               {"activation_scheme 'per-token'", "'static' or 'dynamic'"});
  json fmt = hf_fp8("dynamic");
  fmt["fmt"] = "e5m2";
  expect_error([&] { registry().make("fp8", fmt); }, {"fmt 'e5m2'"});
  json static_int = {{"num_bits", 8},
                     {"type", "int"},
                     {"symmetric", true},
                     {"dynamic", false},
                     {"strategy", "tensor"}};
  json int_w = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "channel"}};
  expect_error(
      [&] { registry().make("compressed-tensors", ct_group(int_w, static_int, "int-quantized")); },
      {"group_0", "static int8 activations", "not supported yet"});
  json bad_block = fp8_args("block");
  bad_block["block_structure"] = {128};
  expect_error([&] { registry().make("compressed-tensors", ct_group(bad_block, fp8_token())); },
               {"block_structure", "[128]"});
}

// ModelOpt: FP8 (per-tensor, static) from hf_quant_config.json's nesting and
// FP8_PER_CHANNEL_PER_TOKEN (weight_scale [N]) from config.json's; wildcard exclusions.
TEST(Fp8Checkpoint, ModelOptSchemes) {
  json hf = {{"producer", {{"name", "modelopt"}}},
             {"quantization", {{"quant_algo", "FP8"}, {"exclude_modules", {"lm_head"}}}}};
  Fp8Case fp8{"modelopt FP8", hf};
  fp8.config["quant_method"] = "modelopt";  // make() is keyed by it; the config ignores it
  fp8.scalar_scale = true;
  fp8.act = {ActRule::kStatic, true};
  expect_fp8_layer(fp8, 40, 64, false);

  FakeSource src;
  Rng rng(9);
  const int64_t n = 24, k = 64;
  const std::string prefix = "model.layers.0.mlp.down_proj";
  const std::vector<uint8_t> codes = random_codes(size_t(n * k), rng);
  const std::vector<float> s = random_scales(size_t(n), DType::F32, rng);
  src.add(prefix + ".weight", DType::F8_E4M3, {n, k}, codes);
  src.add_float(prefix + ".weight_scale", DType::F32, {n}, s);
  std::vector<double> w(size_t(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      w[size_t(r * k + c)] = double(stored_float(
          float(e4m3_value(codes[size_t(r * k + c)]) * double(s[size_t(r)])), DType::BF16));
  json j = {{"quant_method", "modelopt"},
            {"quant_algo", "FP8_PER_CHANNEL_PER_TOKEN"},
            {"ignore", {"model.layers.1.*", "*.gate_proj"}}};
  auto config = registry().make("modelopt", j);
  nn::Linear lin = nn::load_linear(prefix, prefix, k, n, false, *config, src);
  kernels::cpu::set_exact_activations(true);
  std::vector<float> x = random_floats(size_t(3 * k), rng);
  std::vector<float> y(size_t(3 * n));
  lin.forward(x.data(), 3, y.data());
  kernels::cpu::set_exact_activations(false);
  const auto xq = round_activations({ActRule::kDynamic, true}, x, 3, k);
  EXPECT_LT(relative_error(y, reference_forward(w, n, k, xq, 3)), 2e-6);
  LinearLayer l;
  EXPECT_EQ(config->get_quant_method(l, "model.layers.1.self_attn.q_proj"), nullptr);
  EXPECT_EQ(config->get_quant_method(l, "model.layers.0.mlp.gate_proj"), nullptr);
  EXPECT_NE(config->get_quant_method(l, "model.layers.0.mlp.up_proj"), nullptr);
  EXPECT_NE(config->get_quant_method(l, "model.layers.10.mlp.up_proj"), nullptr);
  expect_error(
      [&] {
        registry().make("modelopt", json{{"quant_algo", "NVFP4"}});
      },
      {"quant_algo 'NVFP4'", "FP8_PER_CHANNEL_PER_TOKEN"});
}

// lm_head stays unquantized under `fp8`; ignored_layers are honoured.
TEST(Fp8Checkpoint, LmHeadAndIgnoredLayersStayUnquantized) {
  json j = hf_fp8("dynamic");
  j["ignored_layers"] = {"model.layers.0.mlp.down_proj"};
  auto config = registry().make("fp8", j);
  LinearLayer l;
  EXPECT_EQ(config->get_quant_method(l, "lm_head"), nullptr);
  EXPECT_EQ(config->get_quant_method(l, "model.layers.0.mlp.down_proj"), nullptr);
  EXPECT_NE(config->get_quant_method(l, "model.layers.0.mlp.up_proj"), nullptr);
  EXPECT_EQ(config->min_capability(), 89);
}

}  // namespace
}  // namespace lowbit::quant::testing
