// `gptq` (FORMATS.md §2): every bits (2, 3, 4, 8) × group (-1, 32, 64, 128) × sym/asym ×
// desc_act × checkpoint_format (gptq v1, gptq_v2) combination, packed by an independent
// bit-by-bit packer, loaded through nn::load_linear and compared with the dequantized weight in
// float64; layer selection (lm_head, dynamic, modules_in_block_to_quantize) and every error.
#include <numeric>

#include "quant_test_util.h"

namespace lowbit::quant::testing {
namespace {

struct GptqCase {
  int bits = 4;
  int64_t group = 128;  // -1 = k
  bool sym = true, desc_act = false, v2 = false;
};

std::string label(const GptqCase& c, int64_t k, int64_t n) {
  return fmt::format("gptq bits={} g={} sym={} desc_act={} {} k={} n={}", c.bits, c.group, c.sym,
                     c.desc_act, c.v2 ? "gptq_v2" : "gptq", k, n);
}

json gptq_json(const GptqCase& c) {
  return {{"quant_method", "gptq"}, {"bits", c.bits},
          {"group_size", c.group},  {"desc_act", c.desc_act},
          {"sym", c.sym},           {"checkpoint_format", c.v2 ? "gptq_v2" : "gptq"}};
}

struct GptqLayer {
  std::vector<double> w;  // [n, k]
  std::vector<float> bias;
  std::vector<int32_t> g_idx;
};

// Writes a random GPTQ layer under `prefix` following FORMATS.md §2.2-2.4.
GptqLayer make_gptq_layer(FakeSource& src, const std::string& prefix, int64_t k, int64_t n,
                          const GptqCase& c, bool bias, Rng& rng) {
  const int b = c.bits;
  const uint32_t levels = 1u << b, mask = levels - 1;
  const int64_t G = c.group < 0 ? k : c.group, groups = k / G;
  GptqLayer L;
  // g_idx: k / G, or under act-order the group of each column's position in a random order.
  L.g_idx.resize(size_t(k));
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  if (c.desc_act) std::shuffle(order.begin(), order.end(), rng);
  for (int64_t pos = 0; pos < k; ++pos) L.g_idx[size_t(order[size_t(pos)])] = int32_t(pos / G);

  std::vector<uint32_t> q(size_t(k * n)), zero(size_t(groups * n)), stored(size_t(groups * n));
  for (auto& v : q) v = uint32_t(rng() % levels);
  for (size_t i = 0; i < zero.size(); ++i) {
    zero[i] = c.sym ? levels / 2 : uint32_t(rng() % levels);
    if (i == 0 && !c.sym) zero[i] = 0;  // the v1 wrap-around case: stored as 2^b - 1
    stored[i] = c.v2 ? zero[i] : (zero[i] - 1) & mask;
  }
  std::vector<float> s = random_scales(size_t(groups * n), DType::F16, rng);
  L.w.resize(size_t(n * k));
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t j = 0; j < n; ++j) {
      const size_t gi = size_t(L.g_idx[size_t(kk)] * n + j);
      L.w[size_t(j * k + kk)] = (double(q[size_t(kk * n + j)]) - double(zero[gi])) * double(s[gi]);
    }
  // qweight [k·b/32, n]: every column a bitstream along k; qzeros [groups, n·b/32] along n.
  const int64_t kw = (k * b + 31) / 32, nw = (n * b + 31) / 32;  // partial last word padded
  src.add(prefix + ".qweight", DType::I32, {kw, n}, pack_cols(q, k, n, b, kw));
  src.add(prefix + ".qzeros", DType::I32, {groups, nw}, pack_rows(stored, groups, n, b, nw));
  src.add_float(prefix + ".scales", DType::F16, {groups, n}, s);
  src.add(prefix + ".g_idx", DType::I32, {k}, L.g_idx);
  if (bias) {
    L.bias = random_floats(size_t(n), rng);
    for (auto& x : L.bias) x = stored_float(x, DType::F16);
    src.add_float(prefix + ".bias", DType::F16, {n}, L.bias);
  }
  return L;
}

TEST(Gptq, EveryBitsGroupSymDescActFormatCombination) {
  Rng rng(21);
  const std::string p = "model.layers.3.self_attn.k_proj";
  int i = 0;
  for (int bits : {2, 3, 4, 8})
    for (int64_t group : {-1, 32, 64, 128})
      for (bool sym : {true, false})
        for (bool desc_act : {false, true})
          for (bool v2 : {false, true}) {
            GptqCase c{bits, group, sym, desc_act, v2};
            const int64_t k = (i % 3 == 0) ? 384 : 256, n = (i % 2 == 0) ? 32 : 96;
            FakeSource src;
            GptqLayer L = make_gptq_layer(src, p, k, n, c, (i++ % 4) == 1, rng);
            auto config = registry().make("gptq", gptq_json(c));
            expect_layer_matches(p, *config, src, L.w, n, k, L.bias, rng, label(c, k, n));
          }
}

// 3-bit codes straddle int32 words at values 10 and 21 of every 32: check one hand-made word
// triple against FORMATS.md's statement (value j at global bits 3j .. 3j+2).
TEST(Gptq, ThreeBitStraddlingValues) {
  // One column, k = 32: values 0..7 repeating; word 0 bits 30-31 hold the low 2 bits of value
  // 10 and word 1 bit 0 its high bit.
  std::vector<uint32_t> q(32);
  for (int j = 0; j < 32; ++j) q[size_t(j)] = uint32_t((j * 5 + 3) % 8);
  uint32_t words[3] = {0, 0, 0};
  for (int j = 0; j < 32; ++j)
    for (int t = 0; t < 3; ++t)
      if ((q[size_t(j)] >> t) & 1) words[(3 * j + t) / 32] |= 1u << ((3 * j + t) % 32);
  const uint32_t v10 = (words[0] >> 30) | ((words[1] & 1u) << 2);
  const uint32_t v21 = (words[1] >> 31) | ((words[2] & 3u) << 1);
  EXPECT_EQ(v10, q[10]);
  EXPECT_EQ(v21, q[21]);
  // The same through the method: W[0, k] = (q - 4) · 1 with sym 3-bit, group -1, n = 32 columns.
  FakeSource src;
  const int64_t k = 32, n = 32;
  std::vector<uint32_t> qk(size_t(k * n));
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t j = 0; j < n; ++j) qk[size_t(kk * n + j)] = q[size_t((kk + j) % 32)];
  src.add("l.qweight", DType::I32, {3, n}, pack_cols(qk, k, n, 3, 3));
  src.add("l.qzeros", DType::I32, {1, 3}, std::vector<int32_t>(3, 0));
  src.add_float("l.scales", DType::F16, {1, n}, std::vector<float>(size_t(n), 1.0f));
  std::vector<double> w(size_t(n * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t kk = 0; kk < k; ++kk) w[size_t(j * k + kk)] = double(qk[size_t(kk * n + j)]) - 4;
  auto config = registry().make("gptq", {{"bits", 3}, {"group_size", -1}, {"sym", true}});
  Rng rng(1);
  expect_layer_matches("l", *config, src, w, n, k, {}, rng, "3-bit straddling");
}

// Sizes that do not fill whole words (GPTQModel pads the last one): out_features 172 at 4 bits
// (22 qzeros words), odd out_features, and 3-bit in_features 48.
TEST(Gptq, PartialWords) {
  Rng rng(17);
  struct Shape {
    int bits;
    int64_t k, n, group;
  };
  for (Shape sh : {Shape{4, 64, 172, 32}, Shape{4, 64, 13, -1}, Shape{3, 48, 20, 16},
                   Shape{2, 40, 7, 8}, Shape{8, 36, 5, 12}})
    for (bool sym : {true, false}) {
      GptqCase c{sh.bits, sh.group, sym, true, false};
      FakeSource src;
      GptqLayer L = make_gptq_layer(src, "l", sh.k, sh.n, c, true, rng);
      expect_layer_matches("l", *registry().make("gptq", gptq_json(c)), src, L.w, sh.n, sh.k,
                           L.bias, rng, label(c, sh.k, sh.n));
    }
}

// Symmetric checkpoints decode with zero 2^(b-1) whatever qzeros holds (qzeros may be absent).
TEST(Gptq, SymmetricIgnoresQzeros) {
  Rng rng(4);
  GptqCase c{4, 64, true, false, false};
  FakeSource src;
  GptqLayer L = make_gptq_layer(src, "l", 128, 32, c, false, rng);
  src.remove("l.qzeros");
  src.remove("l.g_idx");
  auto config = registry().make("gptq", gptq_json(c));
  expect_layer_matches("l", *config, src, L.w, 32, 128, {}, rng, "sym without qzeros");
}

// quantize_config.json (AutoGPTQ side file) has the same keys and no quant_method.
TEST(Gptq, QuantizeConfigJsonKeysAndDefaults) {
  Rng rng(6);
  GptqCase c{4, 128, true, true, false};
  FakeSource src;
  GptqLayer L = make_gptq_layer(src, "l", 256, 64, c, false, rng);
  auto config = registry().make("gptq", json{{"bits", 4},
                                             {"group_size", 128},
                                             {"desc_act", true},
                                             {"sym", true},
                                             {"damp_percent", 0.01},
                                             {"true_sequential", true},
                                             {"static_groups", false}});
  expect_layer_matches("l", *config, src, L.w, 64, 256, {}, rng, "quantize_config.json");
  // "format" (GPTQModel) as the alias of checkpoint_format.
  GptqCase a{4, 32, false, false, true};
  FakeSource src2;
  GptqLayer L2 = make_gptq_layer(src2, "l", 64, 32, a, false, rng);
  json j = gptq_json(a);
  j.erase("checkpoint_format");
  j["format"] = "gptq_v2";
  expect_layer_matches("l", *registry().make("gptq", j), src2, L2.w, 32, 64, {}, rng, "format");
}

TEST(Gptq, LayerSelection) {
  LinearLayer layer;
  auto plain = registry().make("gptq", {{"bits", 4}, {"group_size", 128}});
  EXPECT_EQ(plain->get_quant_method(layer, "lm_head"), nullptr);
  EXPECT_NE(plain->get_quant_method(layer, "model.layers.0.mlp.up_proj"), nullptr);
  auto with_head = registry().make("gptq", {{"bits", 4}, {"lm_head", true}});
  EXPECT_NE(with_head->get_quant_method(layer, "lm_head"), nullptr);
  auto in_block =
      registry().make("gptq", {{"bits", 4},
                               {"modules_in_block_to_quantize",
                                {{"self_attn.q_proj", "self_attn.k_proj"}, {"mlp.down_proj"}}}});
  EXPECT_NE(in_block->get_quant_method(layer, "model.layers.1.self_attn.k_proj"), nullptr);
  EXPECT_NE(in_block->get_quant_method(layer, "model.layers.1.mlp.down_proj"), nullptr);
  EXPECT_EQ(in_block->get_quant_method(layer, "model.layers.1.self_attn.v_proj"), nullptr);
}

// GPTQModel `dynamic`: "-:" skips, "+:" overrides bits / group_size for matching modules.
TEST(Gptq, DynamicOverrides) {
  json j = {{"bits", 4},
            {"group_size", 128},
            {"sym", true},
            {"dynamic",
             {{"-:.*\\.mlp\\.down_proj", json::object()},
              {"+:.*\\.mlp\\.up_proj", {{"bits", 8}, {"group_size", 32}}},
              {"model\\.layers\\.1\\..*", {{"bits", 2}}}}}};
  auto config = registry().make("gptq", j);
  LinearLayer layer;
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.0.mlp.down_proj"), nullptr);
  Rng rng(8);
  {
    FakeSource src;
    GptqLayer L = make_gptq_layer(src, "model.layers.0.mlp.up_proj", 64, 32,
                                  {8, 32, true, false, false}, false, rng);
    expect_layer_matches("model.layers.0.mlp.up_proj", *config, src, L.w, 32, 64, {}, rng,
                         "dynamic +: 8-bit g32");
  }
  {
    FakeSource src;
    GptqLayer L = make_gptq_layer(src, "model.layers.1.self_attn.q_proj", 128, 32,
                                  {2, 128, true, false, false}, false, rng);
    expect_layer_matches("model.layers.1.self_attn.q_proj", *config, src, L.w, 32, 128, {}, rng,
                         "dynamic bare regex: 2-bit");
  }
  {
    FakeSource src;
    GptqLayer L = make_gptq_layer(src, "model.layers.0.self_attn.q_proj", 128, 32,
                                  {4, 128, true, false, false}, false, rng);
    expect_layer_matches("model.layers.0.self_attn.q_proj", *config, src, L.w, 32, 128, {}, rng,
                         "dynamic: base config");
  }
  expect_error(
      [] {
        registry().make("gptq", {{"dynamic", {{"+:(", {{"bits", 8}}}}}});
      },
      {"dynamic", "regex '('"});
  expect_error(
      [] {
        registry().make("gptq", {{"dynamic", {{".*up", {{"bits", 5}}}}}});
      },
      {"dynamic", "bits 5"});
}

TEST(Gptq, ConfigErrors) {
  auto make = [](json extra) {
    json j = {{"bits", 4}, {"group_size", 128}};
    j.update(extra);
    registry().make("gptq", j);
  };
  expect_error([&] { make({{"bits", 5}}); }, {"gptq", "bits 5", "2, 3, 4 or 8"});
  expect_error([&] { make({{"bits", 16}}); }, {"bits 16"});
  expect_error([&] { make({{"group_size", 0}}); }, {"group_size 0"});
  expect_error([&] { make({{"group_size", -4}}); }, {"group_size -4"});
  expect_error([&] { make({{"checkpoint_format", "marlin"}}); }, {"'marlin'", "Marlin"});
  expect_error([&] { make({{"checkpoint_format", "gptq_p"}}); }, {"'gptq_p'", "gptq_v2"});
  expect_error([&] { make({{"is_marlin_format", true}}); }, {"is_marlin_format"});
  expect_error([&] { make({{"pack_dtype", "int16"}}); }, {"pack_dtype 'int16'"});
  expect_error([&] { make({{"sym", "yes"}}); }, {"'sym'", "true or false"});
}

TEST(Gptq, TensorErrorsNameLayerFieldFoundAndExpected) {
  const std::string p = "model.layers.0.mlp.gate_proj";
  Rng rng(13);
  auto load = [&](const FakeSource& src, const GptqCase& c, int64_t k, int64_t n) {
    nn::load_linear(p, p, k, n, false, *registry().make("gptq", gptq_json(c)), src);
  };
  const GptqCase asym{4, 32, false, true, false};
  {  // group does not divide in_features
    FakeSource src;
    expect_error(
        [&] {
          load(src, {4, 128, true}, 192, 32);
        },
        {p, "in_features 192", "group_size 128"});
  }
  {  // g_idx out of range
    FakeSource src;
    GptqLayer L = make_gptq_layer(src, p, 64, 32, asym, false, rng);
    L.g_idx[3] = 7;
    src.add(p + ".g_idx", DType::I32, {64}, L.g_idx);
    expect_error([&] { load(src, asym, 64, 32); }, {p, "g_idx[3] = 7", "[0, 2)"});
    L.g_idx[3] = -1;
    src.add(p + ".g_idx", DType::I32, {64}, L.g_idx);
    expect_error([&] { load(src, asym, 64, 32); }, {p, "g_idx[3] = -1"});
  }
  {  // g_idx with unequal groups
    FakeSource src;
    make_gptq_layer(src, p, 64, 32, asym, false, rng);
    std::vector<int32_t> g(64, 0);
    for (int i = 0; i < 20; ++i) g[size_t(i)] = 1;
    src.add(p + ".g_idx", DType::I32, {64}, g);
    expect_error([&] { load(src, asym, 64, 32); }, {p, "g_idx assigns 44", "group 0", "32"});
  }
  {  // desc_act without g_idx
    FakeSource src;
    make_gptq_layer(src, p, 64, 32, asym, false, rng);
    src.remove(p + ".g_idx");
    expect_error([&] { load(src, asym, 64, 32); }, {p, "g_idx", "missing", "desc_act"});
  }
  {  // qweight shape for another bit width
    FakeSource src;
    make_gptq_layer(src, p, 64, 32, {8, 32, false}, false, rng);
    expect_error([&] { load(src, asym, 64, 32); },
                 {p + ".qweight", "[16, 32]", "expected [8, 32]"});
  }
  {  // scales for another group size
    FakeSource src;
    make_gptq_layer(src, p, 128, 32, {4, 64, false}, false, rng);
    expect_error([&] { load(src, asym, 128, 32); }, {p + ".qzeros", "[2, 4]", "expected [4, 4]"});
  }
  {  // dtypes
    FakeSource src;
    make_gptq_layer(src, p, 64, 32, asym, false, rng);
    src.add_float(p + ".scales", DType::F16, {2, 32}, std::vector<float>(64, 0.5f));
    src.add(p + ".qweight", DType::I64, {8, 32}, std::vector<int64_t>(256));
    expect_error([&] { load(src, asym, 64, 32); }, {p + ".qweight", "dtype I64", "I32"});
  }
  {
    FakeSource src;
    make_gptq_layer(src, p, 64, 32, asym, false, rng);
    src.add(p + ".g_idx", DType::F32, {64}, std::vector<float>(64));
    expect_error([&] { load(src, asym, 64, 32); }, {p + ".g_idx", "dtype F32"});
  }
}

}  // namespace
}  // namespace lowbit::quant::testing
