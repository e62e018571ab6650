// `compressed-tensors` (FORMATS.md §3): pack-quantized and int-/naive-quantized integer
// weights, 4 and 8 bits, channel and group strategies, symmetric and asymmetric, actorder
// "group" (weight_g_idx), odd out_features and padded in_features, packed by an independent
// packer and compared with the dequantized weight in float64; targets / ignore matching and the
// refusal of every scheme that is not supported (NVFP4, MXFP4, sparse, rotated, ...).
#include <numeric>

#include "quant_test_util.h"

namespace lowbit::quant::testing {
namespace {

enum class Fmt { kPack, kInt, kNaive };

struct CtCase {
  Fmt format = Fmt::kPack;
  int bits = 4;
  int64_t group = -1;  // -1 = channel
  bool sym = true;
  bool actorder = false;
  DType scale_dtype = DType::BF16;
};

const char* format_name(Fmt f) {
  return f == Fmt::kPack ? "pack-quantized" : f == Fmt::kInt ? "int-quantized" : "naive-quantized";
}

json weights_json(const CtCase& c) {
  json w = {{"num_bits", c.bits}, {"type", "int"},        {"symmetric", c.sym},
            {"dynamic", false},   {"observer", "minmax"}, {"actorder", nullptr}};
  if (c.group < 0) {
    w["strategy"] = "channel";
    w["group_size"] = nullptr;
  } else {
    w["strategy"] = "group";
    w["group_size"] = c.group;
  }
  if (c.actorder) w["actorder"] = "group";
  return w;
}

json ct_json(const CtCase& c, json ignore = json::array({"lm_head"}),
             json targets = json::array({"Linear"})) {
  return {{"quant_method", "compressed-tensors"},
          {"format", format_name(c.format)},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", nullptr},
          {"config_groups",
           {{"group_0",
             {{"targets", targets},
              {"weights", weights_json(c)},
              {"input_activations", nullptr},
              {"output_activations", nullptr},
              {"format", nullptr}}}}},
          {"ignore", ignore},
          {"kv_cache_scheme", nullptr},
          {"sparsity_config", json::object()},
          {"transform_config", json::object()}};
}

struct CtLayer {
  std::vector<double> w;
  std::vector<float> bias;
  std::vector<int32_t> g_idx;
};

// Writes a random compressed-tensors layer under `prefix` (FORMATS.md §3.2-3.5).
CtLayer make_ct_layer(FakeSource& src, const std::string& prefix, int64_t k, int64_t n,
                      const CtCase& c, bool bias, Rng& rng) {
  const int b = c.bits, half = 1 << (b - 1);
  const int64_t G = c.group < 0 ? k : c.group, groups = k / G;
  CtLayer L;
  L.g_idx.resize(size_t(k));
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  if (c.actorder) std::shuffle(order.begin(), order.end(), rng);
  for (int64_t pos = 0; pos < k; ++pos) L.g_idx[size_t(order[size_t(pos)])] = int32_t(pos / G);

  // Signed codes and zero points, [n, k] and [n, groups].
  std::vector<int> q(size_t(n * k)), zp(size_t(n * groups), 0);
  for (auto& v : q) v = int(rng() % (2 * half)) - half;
  if (!c.sym)
    for (auto& v : zp) v = int(rng() % (2 * half)) - half;
  std::vector<float> s = random_scales(size_t(n * groups), c.scale_dtype, rng);
  L.w.resize(size_t(n * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t kk = 0; kk < k; ++kk) {
      const size_t gi = size_t(j * groups + L.g_idx[size_t(kk)]);
      L.w[size_t(j * k + kk)] = double(q[size_t(j * k + kk)] - zp[gi]) * double(s[gi]);
    }
  if (c.format == Fmt::kPack) {
    // Unsigned = signed + 2^(b-1); weight along k per row, zero points along n per column.
    std::vector<uint32_t> uq(q.size()), uz(zp.size());
    for (size_t i = 0; i < q.size(); ++i) uq[i] = uint32_t(q[i] + half);
    for (size_t i = 0; i < zp.size(); ++i) uz[i] = uint32_t(zp[i] + half);
    const int64_t kw = (k * b + 31) / 32, nw = (n * b + 31) / 32;
    src.add(prefix + ".weight_packed", DType::I32, {n, kw}, pack_rows(uq, n, k, b, kw));
    if (!c.sym)
      src.add(prefix + ".weight_zero_point", DType::I32, {nw, groups},
              pack_cols(uz, n, groups, b, nw));
    src.add(prefix + ".weight_shape", DType::I64, {2}, std::vector<int64_t>{n, k});
  } else {
    src.add(prefix + ".weight", DType::I8, {n, k}, std::vector<int8_t>(q.begin(), q.end()));
    if (!c.sym)
      src.add(prefix + ".weight_zero_point", DType::I8, {n, groups},
              std::vector<int8_t>(zp.begin(), zp.end()));
  }
  src.add_float(prefix + ".weight_scale", c.scale_dtype, {n, groups}, s);
  if (c.actorder) src.add(prefix + ".weight_g_idx", DType::I32, {k}, L.g_idx);
  if (bias) {
    L.bias = random_floats(size_t(n), rng);
    for (auto& x : L.bias) x = stored_float(x, DType::BF16);
    src.add_float(prefix + ".bias", DType::BF16, {n}, L.bias);
  }
  return L;
}

std::string label(const CtCase& c, int64_t k, int64_t n) {
  return fmt::format("ct {} bits={} group={} sym={} actorder={} k={} n={}", format_name(c.format),
                     c.bits, c.group, c.sym, c.actorder, k, n);
}

TEST(CompressedTensors, PackQuantizedEveryCombination) {
  Rng rng(31);
  const std::string p = "model.layers.0.self_attn.q_proj";
  const DType dtypes[] = {DType::BF16, DType::F16, DType::F32};
  int i = 0;
  for (int bits : {4, 8})
    for (int64_t group : {-1, 32, 64, 128})
      for (bool sym : {true, false})
        for (bool actorder : {false, true}) {
          if (group < 0 && actorder) continue;  // one group: nothing to reorder
          CtCase c{Fmt::kPack, bits, group, sym, actorder, dtypes[i % 3]};
          // Odd out_features; in_features not a multiple of 32 / 4 where the group allows.
          const int64_t n = (i % 2) ? 13 : 37;
          const int64_t k = group < 0 ? ((i % 3) ? 100 : 37) : 3 * group;
          FakeSource src;
          CtLayer L = make_ct_layer(src, p, k, n, c, (i++ % 3) == 0, rng);
          expect_layer_matches(p, *registry().make("compressed-tensors", ct_json(c)), src, L.w, n,
                               k, L.bias, rng, label(c, k, n));
        }
}

TEST(CompressedTensors, UnpackedIntAndNaiveFormats) {
  Rng rng(32);
  const std::string p = "model.layers.1.mlp.down_proj";
  int i = 0;
  for (Fmt f : {Fmt::kInt, Fmt::kNaive})
    for (int bits : {4, 8})
      for (int64_t group : {-1, 64})
        for (bool sym : {true, false}) {
          CtCase c{f, bits, group, sym, false, DType::F16};
          const int64_t n = (i % 2) ? 11 : 24, k = group < 0 ? 45 : 128;
          FakeSource src;
          CtLayer L = make_ct_layer(src, p, k, n, c, (i++ % 2) == 0, rng);
          expect_layer_matches(p, *registry().make("compressed-tensors", ct_json(c)), src, L.w, n,
                               k, L.bias, rng, label(c, k, n));
        }
}

// Per-group "format" overrides a global "mixed-precision"; actorder aliases.
TEST(CompressedTensors, MixedPrecisionGroupsAndTargets) {
  CtCase a{Fmt::kPack, 4, 32, false, false, DType::BF16};
  CtCase b{Fmt::kPack, 8, -1, true, false, DType::BF16};
  json j = ct_json(a, {"lm_head", "re:.*mlp\\.gate$"});
  j["format"] = "mixed-precision";
  j["config_groups"]["group_0"]["format"] = "pack-quantized";
  j["config_groups"]["group_0"]["targets"] = {"re:.*self_attn\\.(q|k|v)_proj$"};
  j["config_groups"]["group_1"] = j["config_groups"]["group_0"];
  j["config_groups"]["group_1"]["targets"] = {"model.layers.0.mlp.up_proj"};
  j["config_groups"]["group_1"]["weights"] = weights_json(b);
  auto config = registry().make("compressed-tensors", j);
  LinearLayer layer;
  EXPECT_EQ(config->get_quant_method(layer, "lm_head"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.0.mlp.gate"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.0.self_attn.o_proj"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.0.mlp.down_proj"), nullptr);
  Rng rng(33);
  {
    FakeSource src;
    CtLayer L = make_ct_layer(src, "model.layers.0.self_attn.k_proj", 64, 16, a, false, rng);
    expect_layer_matches("model.layers.0.self_attn.k_proj", *config, src, L.w, 16, 64, {}, rng,
                         "group_0 regex target");
  }
  {
    FakeSource src;
    CtLayer L = make_ct_layer(src, "model.layers.0.mlp.up_proj", 64, 16, b, false, rng);
    expect_layer_matches("model.layers.0.mlp.up_proj", *config, src, L.w, 16, 64, {}, rng,
                         "group_1 exact target");
  }
  // actorder "dynamic" is the alias of "group".
  CtCase g{Fmt::kPack, 4, 32, true, true, DType::BF16};
  json jg = ct_json(g);
  jg["config_groups"]["group_0"]["weights"]["actorder"] = "dynamic";
  FakeSource src;
  CtLayer L = make_ct_layer(src, "model.layers.0.mlp.up_proj", 128, 16, g, false, rng);
  expect_layer_matches("model.layers.0.mlp.up_proj", *registry().make("compressed-tensors", jg),
                       src, L.w, 16, 128, {}, rng, "actorder dynamic");
}

// Schemes that are recognised but not supported yet are refused naming the scheme.
TEST(CompressedTensors, RefusedSchemesAreNamed) {
  auto with = [](std::function<void(json&)> edit) {
    json j = ct_json({Fmt::kPack, 4, 128, true});
    edit(j);
    registry().make("compressed-tensors", j);
  };
  json int8_token = {{"num_bits", 8},
                     {"type", "int"},
                     {"symmetric", true},
                     {"dynamic", true},
                     {"strategy", "token"}};
  // W8A8 / W4A8 with dynamic int8 activations and the FP8 schemes are supported
  // (tests/quant/fp8_checkpoint_test.cpp); activations of another width are not.
  expect_error(
      [&] {
        with([&](json& j) {
          json a = int8_token;
          a["num_bits"] = 4;
          j["config_groups"]["group_0"]["input_activations"] = a;
        });
      },
      {"group_0", "W4A4", "int 4-bit", "not supported yet"});
  expect_error(
      [&] {
        with([&](json& j) {
          j["format"] = "nvfp4-pack-quantized";
          j["config_groups"]["group_0"]["weights"] = {
              {"num_bits", 4}, {"type", "float"}, {"strategy", "tensor_group"}, {"group_size", 16}};
          j["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 4},
                                                                {"type", "float"},
                                                                {"strategy", "tensor_group"},
                                                                {"dynamic", "local"},
                                                                {"group_size", 16}};
        });
      },
      {"NVFP4", "float 4-bit"});
  expect_error(
      [&] {
        with([&](json& j) {
          j["format"] = "nvfp4-pack-quantized";
          j["config_groups"]["group_0"]["weights"] = {
              {"num_bits", 4}, {"type", "float"}, {"strategy", "tensor_group"}, {"group_size", 16}};
        });
      },
      {"NVFP4A16"});
  expect_error(
      [&] {
        with([&](json& j) {
          j["format"] = "mxfp4-pack-quantized";
          j["config_groups"]["group_0"]["weights"] = {
              {"num_bits", 4}, {"type", "float"}, {"strategy", "group"}, {"group_size", 32}};
        });
      },
      {"MXFP4"});
  expect_error(
      [&] {
        with([](json& j) {
          j["sparsity_config"] = {{"format", "sparse-24-bitmask"},
                                  {"sparsity_structure", "2:4"},
                                  {"targets", {"Linear"}}};
        });
      },
      {"sparsity_config", "'sparse-24-bitmask'", "not supported yet"});
  expect_error([&]() { with([](json& j) { j["format"] = "marlin-24"; }); },
               {"'marlin-24'", "W4A16"});
  expect_error([&] { with([](json& j) { j["format"] = "dense"; }); }, {"'dense'"});
  expect_error([&] { with([](json& j) { j["quantization_status"] = "frozen"; }); },
               {"quantization_status 'frozen'"});
  expect_error(
      [&] { with([](json& j) {
              j["transform_config"] = {{"config_groups", {{"u", 1}}}};
            }); },
      {"transform_config"});
  expect_error([&] { with([](json& j) { j["format"] = "mixed-precision"; }); },
               {"mixed-precision", "group_0"});
}

TEST(CompressedTensors, ConfigErrors) {
  auto with_weights = [](std::function<void(json&)> edit) {
    json j = ct_json({Fmt::kPack, 4, 128, true});
    edit(j["config_groups"]["group_0"]["weights"]);
    registry().make("compressed-tensors", j);
  };
  expect_error([&] { with_weights([](json& w) { w["num_bits"] = 2; }); },
               {"group_0.weights", "num_bits 2", "4 or 8"});
  expect_error([&] { with_weights([](json& w) { w["strategy"] = "tensor"; }); },
               {"strategy 'tensor'", "channel", "group"});
  expect_error(
      [&] {
        with_weights([](json& w) {
          w.erase("strategy");
          w["group_size"] = nullptr;
        });
      },
      {"strategy 'tensor'"});
  expect_error([&] { with_weights([](json& w) { w["group_size"] = 0; }); },
               {"strategy 'group'", "group_size 0"});
  expect_error([&] { with_weights([](json& w) { w["actorder"] = "sideways"; }); },
               {"actorder 'sideways'"});
  expect_error([&] { with_weights([](json& w) { w["dynamic"] = true; }); }, {"dynamic"});
  expect_error([&] { with_weights([](json& w) { w["symmetric"] = 1; }); },
               {"'symmetric'", "true or false"});
  json no_groups = ct_json({});
  no_groups["config_groups"] = json::object();
  expect_error([&] { registry().make("compressed-tensors", no_groups); }, {"config_groups"});
  json bad_regex = ct_json({}, {"re:model.layers.(0"});
  expect_error([&] { registry().make("compressed-tensors", bad_regex); },
               {"ignore", "regex 'model.layers.(0'"});
}

TEST(CompressedTensors, TensorErrorsNameLayerFieldFoundAndExpected) {
  const std::string p = "model.layers.4.mlp.up_proj";
  Rng rng(35);
  auto load = [&](const FakeSource& src, const CtCase& c, int64_t k, int64_t n) {
    nn::load_linear(p, p, k, n, false, *registry().make("compressed-tensors", ct_json(c)), src);
  };
  const CtCase asym{Fmt::kPack, 4, 32, false, true, DType::BF16};
  {
    FakeSource src;
    expect_error([&] { load(src, asym, 48, 16); }, {p, "in_features 48", "group_size 32"});
  }
  {  // weight_shape disagrees
    FakeSource src;
    make_ct_layer(src, p, 64, 16, asym, false, rng);
    src.add(p + ".weight_shape", DType::I64, {2}, std::vector<int64_t>{16, 65});
    expect_error([&] { load(src, asym, 64, 16); }, {p, "weight_shape is [16, 65]", "[16, 64]"});
  }
  {  // weight_packed shape for 8-bit
    FakeSource src;
    make_ct_layer(src, p, 64, 16, {Fmt::kPack, 8, 32, false, true}, false, rng);
    expect_error([&] { load(src, asym, 64, 16); },
                 {p + ".weight_packed", "[16, 16]", "expected [16, 8]"});
  }
  {  // zero point missing (asym)
    FakeSource src;
    make_ct_layer(src, p, 64, 16, asym, false, rng);
    src.remove(p + ".weight_zero_point");
    expect_error([&] { load(src, asym, 64, 16); }, {p + ".weight_zero_point", "missing"});
  }
  {  // scale as I8
    FakeSource src;
    make_ct_layer(src, p, 64, 16, asym, false, rng);
    src.add(p + ".weight_scale", DType::I8, {16, 2}, std::vector<int8_t>(32, 1));
    expect_error([&] { load(src, asym, 64, 16); }, {p + ".weight_scale", "dtype I8"});
  }
  {  // g_idx out of range
    FakeSource src;
    CtLayer L = make_ct_layer(src, p, 64, 16, asym, false, rng);
    L.g_idx[10] = 2;
    src.add(p + ".weight_g_idx", DType::I32, {64}, L.g_idx);
    expect_error([&] { load(src, asym, 64, 16); }, {p, "weight_g_idx[10] = 2", "[0, 2)"});
  }
  {  // naive 4-bit value outside [-8, 7]
    const CtCase naive{Fmt::kNaive, 4, -1, true, false, DType::F16};
    FakeSource src;
    make_ct_layer(src, p, 40, 8, naive, false, rng);
    std::vector<int8_t> w(320, 1);
    w[41] = 9;
    src.add(p + ".weight", DType::I8, {8, 40}, w);
    expect_error([&] { load(src, naive, 40, 8); }, {p, "weight[1, 1] = 9", "[-8, 7]"});
  }
}

}  // namespace
}  // namespace lowbit::quant::testing
