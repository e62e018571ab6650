// `awq` (AutoAWQ GEMM, FORMATS.md §1): random codes / zeros / scales packed by an independent
// packer with the AWQ interleave, loaded through nn::load_linear and compared with the
// dequantized weight in float64 (group 32/64/128/-1, m = 1 and 3, with and without bias,
// F16/BF16/F32 scales); layer selection and every config / tensor error.
#include "quant_test_util.h"

namespace lowbit::quant::testing {
namespace {

constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // slot i holds column 8c + kOrder[i]

// values [rows, n] (4-bit) -> I32 [rows, n/8] the way AutoAWQ's pack loop writes them.
std::vector<int32_t> awq_pack(const std::vector<uint32_t>& v, int64_t rows, int64_t n) {
  std::vector<int32_t> out(size_t(rows * n / 8));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n / 8; ++c) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) word |= v[size_t(r * n + 8 * c + kOrder[i])] << (4 * i);
      out[size_t(r * n / 8 + c)] = int32_t(word);
    }
  return out;
}

struct AwqLayer {
  std::vector<double> w;  // [n, k] dequantized
  std::vector<float> bias;
};

// Writes a random AWQ layer under `prefix` into `src`; g = group size (-1 = k).
AwqLayer make_awq_layer(FakeSource& src, const std::string& prefix, int64_t k, int64_t n, int64_t g,
                        bool bias, DType scale_dtype, Rng& rng) {
  const int64_t G = g < 0 ? k : g, groups = k / G;
  std::vector<uint32_t> q(size_t(k * n)), z(size_t(groups * n));
  for (auto& v : q) v = uint32_t(rng() % 16);
  for (auto& v : z) v = uint32_t(rng() % 16);
  std::vector<float> s = random_scales(size_t(groups * n), scale_dtype, rng);
  AwqLayer L;
  L.w.resize(size_t(n * k));
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t j = 0; j < n; ++j) {
      const size_t gi = size_t((kk / G) * n + j);
      L.w[size_t(j * k + kk)] = (double(q[size_t(kk * n + j)]) - double(z[gi])) * double(s[gi]);
    }
  src.add(prefix + ".qweight", DType::I32, {k, n / 8}, awq_pack(q, k, n));
  src.add(prefix + ".qzeros", DType::I32, {groups, n / 8}, awq_pack(z, groups, n));
  src.add_float(prefix + ".scales", scale_dtype, {groups, n}, s);
  if (bias) {
    L.bias = random_floats(size_t(n), rng);
    for (auto& b : L.bias) b = stored_float(b, DType::F16);
    src.add_float(prefix + ".bias", DType::F16, {n}, L.bias);
  }
  return L;
}

std::unique_ptr<QuantConfig> awq_config(int64_t group, json extra = json::object()) {
  json j = {{"quant_method", "awq"}, {"bits", 4},         {"group_size", group},
            {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  j.update(extra);
  return registry().make("awq", j);
}

TEST(Awq, MatchesDequantizedReference) {
  Rng rng(11);
  const int64_t groups[] = {32, 64, 128, -1};
  const DType dtypes[] = {DType::F16, DType::BF16, DType::F32};
  int i = 0;
  for (int64_t g : groups)
    for (int64_t k : {128, 384})
      for (int64_t n : {8, 72}) {
        FakeSource src;
        const bool bias = (i % 2) == 1;
        const DType dt = dtypes[i++ % 3];
        AwqLayer L = make_awq_layer(src, "model.layers.0.mlp.up_proj", k, n, g, bias, dt, rng);
        auto config = awq_config(g);
        expect_layer_matches("model.layers.0.mlp.up_proj", *config, src, L.w, n, k, L.bias, rng,
                             fmt::format("awq g={} k={} n={} bias={}", g, k, n, bias));
      }
}

TEST(Awq, LegacyKeySpellingsAndVersionCase) {
  Rng rng(3);
  FakeSource src;
  AwqLayer L =
      make_awq_layer(src, "model.layers.1.self_attn.o_proj", 64, 16, 32, false, DType::F16, rng);
  // quant_config.json spelling (w_bit, q_group_size, "GEMM").
  auto config = registry().make(
      "awq", json{{"w_bit", 4}, {"q_group_size", 32}, {"zero_point", true}, {"version", "GEMM"}});
  expect_layer_matches("model.layers.1.self_attn.o_proj", *config, src, L.w, 16, 64, {}, rng,
                       "legacy keys");
}

TEST(Awq, UnconvertedModulesAndLmHeadStayUnquantized) {
  auto config = awq_config(128, {{"modules_to_not_convert", {"visual", "mlp.gate"}}});
  LinearLayer layer;
  layer.in_features = 128;
  layer.out_features = 8;
  EXPECT_EQ(config->get_quant_method(layer, "lm_head"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.visual.blocks.0.attn.qkv"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.0.mlp.gate"), nullptr);
  EXPECT_NE(config->get_quant_method(layer, "model.layers.0.mlp.up_proj"), nullptr);
  // A skipped layer loads its float weight through `unquantized`.
  FakeSource src;
  Rng rng(5);
  std::vector<float> w = random_floats(8 * 128, rng);
  src.add("model.layers.0.mlp.gate.weight", DType::F32, {8, 128}, w);
  std::vector<double> wd(w.begin(), w.end());
  expect_layer_matches("model.layers.0.mlp.gate", *config, src, wd, 8, 128, {}, rng, "skipped");
}

TEST(Awq, ConfigErrors) {
  expect_error([] { awq_config(128, {{"bits", 8}}); }, {"awq", "bits 8", "4-bit"});
  expect_error([] { awq_config(128, {{"w_bit", 3}, {"bits", nullptr}}); }, {"bits 3"});
  expect_error([] { awq_config(0); }, {"group_size 0"});
  expect_error([] { awq_config(-2); }, {"group_size -2"});
  expect_error([] { awq_config(128, {{"version", "gemv"}}); }, {"version 'gemv'", "gemm"});
  expect_error([] { awq_config(128, {{"version", "gemv_fast"}}); }, {"version 'gemv_fast'"});
  expect_error([] { awq_config(128, {{"version", "marlin"}}); }, {"version 'marlin'"});
  expect_error([] { awq_config(128, {{"backend", "llm-awq"}}); }, {"backend 'llm-awq'"});
  expect_error([] { awq_config(128, {{"zero_point", false}}); }, {"zero_point false"});
  expect_error([] { awq_config(128, {{"group_size", "128"}}); }, {"'group_size'", "integer"});
  expect_error(
      [] {
        awq_config(128, {{"modules_to_not_convert", 5}});
      },
      {"modules_to_not_convert", "strings"});
}

TEST(Awq, TensorErrorsNameLayerFieldFoundAndExpected) {
  const std::string p = "model.layers.2.mlp.down_proj";
  auto load = [&](const FakeSource& src, int64_t k, int64_t n, int64_t g = 64) {
    auto config = awq_config(g);
    nn::load_linear(p, p, k, n, false, *config, src);
  };
  Rng rng(9);
  {  // group does not divide in_features
    FakeSource src;
    expect_error([&] { load(src, 96, 16); }, {p, "in_features 96", "group_size 64"});
  }
  {  // out_features not a multiple of 8
    FakeSource src;
    expect_error([&] { load(src, 128, 12); }, {p, "out_features 12", "multiple of 8"});
  }
  {  // qweight of the wrong shape
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 64, false, DType::F16, rng);
    src.add(p + ".qweight", DType::I32, {128, 4}, std::vector<int32_t>(512));
    expect_error([&] { load(src, 128, 16); }, {p + ".qweight", "[128, 4]", "expected [128, 2]"});
  }
  {  // scales of the wrong shape (group 32 checkpoint, config says 64)
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 32, false, DType::F16, rng);
    expect_error([&] { load(src, 128, 16); }, {p + ".qzeros", "[4, 2]", "expected [2, 2]"});
  }
  {  // qzeros stored as F16
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 64, false, DType::F16, rng);
    src.add_float(p + ".qzeros", DType::F16, {2, 2}, {1, 2, 3, 4});
    expect_error([&] { load(src, 128, 16); }, {p + ".qzeros", "dtype F16", "I32"});
  }
  {  // scales stored as I32
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 64, false, DType::F16, rng);
    src.add(p + ".scales", DType::I32, {2, 16}, std::vector<int32_t>(32, 1));
    expect_error([&] { load(src, 128, 16); }, {p + ".scales", "dtype I32"});
  }
  {  // missing qzeros
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 64, false, DType::F16, rng);
    src.remove(p + ".qzeros");
    expect_error([&] { load(src, 128, 16); }, {p + ".qzeros", "missing", "awq"});
  }
  {  // an infinite scale
    FakeSource src;
    make_awq_layer(src, p, 128, 16, 64, false, DType::F16, rng);
    std::vector<float> s(32, 0.01f);
    s[5] = INFINITY;
    src.add_float(p + ".scales", DType::F16, {2, 16}, s);
    expect_error([&] { load(src, 128, 16); }, {p, "scales", "finite"});
  }
}

}  // namespace
}  // namespace lowbit::quant::testing
