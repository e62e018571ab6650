// `bitsandbytes` (FORMATS.md §7) against checkpoints written by the real bitsandbytes package
// (tools/gen_bnb_fixtures.py, tests/fixtures/bnb/): single layers at every block size and both
// 4-bit types, with and without nested absmax, against bitsandbytes' own dequantization in
// float64; whole tiny models (NF4 + double quantization, FP4, LLM.int8) against transformers'
// logits with bnb-dequantized weights; every config / tensor error.
#include <filesystem>
#include <fstream>

#include "engine/model_loader.h"
#include "io/safetensors.h"
#include "quant_test_util.h"
#include "test_paths.h"

namespace lowbit::quant::testing {
namespace {
using lowbit::testing::source_path;

const json kFourBitConfig = {{"quant_method", "bitsandbytes"},
                             {"load_in_4bit", true},
                             {"load_in_8bit", false},
                             {"bnb_4bit_quant_type", "nf4"},
                             {"llm_int8_skip_modules", nullptr}};

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

// Every tensor of tests/fixtures/bnb/layers.safetensors, copied into a FakeSource.
struct LayerFixture {
  FakeSource src;
  json layers;
  std::map<std::string, std::vector<double>> reference;  // prefix -> bnb's dequantized [n, k]
};

LayerFixture load_layer_fixture() {
  LayerFixture f;
  f.layers = read_json(source_path("tests/fixtures/bnb/layers.json"))["layers"];
  auto file = io::SafetensorsFile::open(source_path("tests/fixtures/bnb/layers.safetensors"));
  for (const TensorView& t : file->tensors()) {
    const std::string suffix = ".reference";
    if (t.name.size() > suffix.size() &&
        t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      auto values = float_values(t);
      f.reference[t.name.substr(0, t.name.size() - suffix.size())] =
          std::vector<double>(values->begin(), values->end());
      continue;
    }
    f.src.add_bytes(t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  return f;
}

TEST(Bitsandbytes, LayersMatchBitsandbytesDequantization) {
  LayerFixture f = load_layer_fixture();
  ASSERT_EQ(f.layers.size(), 6u);
  auto config = registry().make("bitsandbytes", kFourBitConfig);
  Rng rng(41);
  for (const json& L : f.layers) {
    const std::string prefix = L["prefix"];
    const int64_t n = L["out_features"], k = L["in_features"];
    SCOPED_TRACE(prefix);
    ASSERT_TRUE(f.reference.count(prefix));
    expect_layer_matches(prefix, *config, f.src, f.reference[prefix], n, k, {}, rng, prefix);
  }
}

// Teacher-forced logits of a whole bnb checkpoint against the reference rows.
void check_tiny_model(const std::string& name, double tolerance) {
  const std::string base = source_path("tests/fixtures/bnb/" + name);
  json meta = read_json(base + ".json");
  std::ifstream bin(base + ".logits.f32", std::ios::binary | std::ios::ate);
  std::vector<float> ref(size_t(bin.tellg()) / 4);
  bin.seekg(0);
  bin.read(reinterpret_cast<char*>(ref.data()), std::streamsize(ref.size() * 4));

  EXPECT_EQ(engine::detect_method(base, "", registry()), "bitsandbytes");
  EXPECT_EQ(engine::detect_method(base, "bitsandbytes", registry()), "bitsandbytes");
  engine::LoadedModel m = engine::load_model(base, {"", false}, registry());
  EXPECT_EQ(m.quant->name(), "bitsandbytes");
  const int64_t vocab = meta["vocab_size"];
  const bool was_exact = kernels::cpu::exact_activations();
  kernels::cpu::set_exact_activations(true);
  size_t offset = 0;
  for (const json& c : meta["cases"]) {
    std::vector<int32_t> ids = c["input_ids"];
    auto cache = m.model->make_cache(int64_t(ids.size()));
    std::vector<float> logits;
    m.model->forward(ids, cache, true, logits);
    ASSERT_EQ(logits.size(), ids.size() * size_t(vocab));
    double diff = 0, mag = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      diff = std::max(diff, double(std::abs(logits[i] - ref[offset + i])));
      mag = std::max(mag, double(std::abs(ref[offset + i])));
    }
    EXPECT_LT(diff / mag, tolerance) << name << " prompt of " << ids.size() << " tokens";
    offset += logits.size();
  }
  EXPECT_EQ(offset, ref.size());
  kernels::cpu::set_exact_activations(was_exact);
}

TEST(Bitsandbytes, TinyNf4DoubleQuantModelMatchesReference) {
  check_tiny_model("tiny_nf4_dq", 1e-4);
}
TEST(Bitsandbytes, TinyFp4ModelMatchesReference) { check_tiny_model("tiny_fp4", 1e-4); }
TEST(Bitsandbytes, TinyInt8ModelMatchesReference) { check_tiny_model("tiny_int8", 1e-4); }

TEST(Bitsandbytes, ConfigErrors) {
  const auto& r = registry();
  expect_error(
      [&] {
        r.make("bitsandbytes", {{"quant_method", "bitsandbytes"}});
      },
      {"load_in_4bit=false", "load_in_8bit=false", "exactly one"});
  expect_error(
      [&] {
        r.make("bitsandbytes",
               {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", true}});
      },
      {"exactly one"});
  json j = kFourBitConfig;
  j["bnb_4bit_quant_storage"] = "bfloat16";
  expect_error([&] { r.make("bitsandbytes", j); }, {"bnb_4bit_quant_storage 'bfloat16'", "uint8"});
  j = kFourBitConfig;
  j["bnb_4bit_quant_type"] = "int4";
  expect_error([&] { r.make("bitsandbytes", j); }, {"bnb_4bit_quant_type 'int4'"});
  j = kFourBitConfig;
  j["load_in_4bit"] = "yes";
  expect_error([&] { r.make("bitsandbytes", j); }, {"load_in_4bit"});
  expect_error(
      [&] {
        r.make("bitsandbytes", {{"quant_method", "bitsandbytes"},
                                {"load_in_8bit", true},
                                {"llm_int8_has_fp16_weight", true}});
      },
      {"llm_int8_has_fp16_weight=true"});
}

TEST(Bitsandbytes, SkipModulesAndLmHeadStayUnquantized) {
  json j = kFourBitConfig;
  j["llm_int8_skip_modules"] = json::array({"mlp.down_proj"});
  auto config = registry().make("bitsandbytes", j);
  LinearLayer layer;
  EXPECT_EQ(config->get_quant_method(layer, "lm_head"), nullptr);
  EXPECT_EQ(config->get_quant_method(layer, "model.layers.3.mlp.down_proj"), nullptr);
  EXPECT_NE(config->get_quant_method(layer, "model.layers.3.mlp.up_proj"), nullptr);
}

// Each tensor-level defect, on a copy of one fixture layer.
TEST(Bitsandbytes, TensorErrors) {
  auto config = registry().make("bitsandbytes", kFourBitConfig);
  const std::string p = "nf4_bs128_nested";  // n 20, k 100, nested
  const std::string qs_name = p + ".weight.quant_state.bitsandbytes__nf4";
  auto load = [&](FakeSource& src) { nn::load_linear(p, p, 100, 20, false, *config, src); };
  auto fresh = [] { return load_layer_fixture(); };
  auto state = [&](LayerFixture& f) {
    const TensorView* t = f.src.find(qs_name);
    return json::parse(t->data, t->data + t->nbytes);
  };
  auto set_state = [&](LayerFixture& f, const std::string& text) {
    f.src.add_bytes(qs_name, DType::U8, {int64_t(text.size())},
                    std::vector<uint8_t>(text.begin(), text.end()));
  };
  {
    LayerFixture f = fresh();
    set_state(f, "{not json");
    expect_error([&] { load(f.src); }, {qs_name, "invalid JSON"});
  }
  {
    LayerFixture f = fresh();
    json s = state(f);
    s["blocksize"] = 100;
    set_state(f, s.dump());
    expect_error([&] { load(f.src); }, {qs_name, "blocksize 100", "power of two"});
  }
  {
    LayerFixture f = fresh();
    json s = state(f);
    s["quant_type"] = "fp4";
    set_state(f, s.dump());
    expect_error([&] { load(f.src); }, {"quant_type 'fp4'", "expected 'nf4'"});
  }
  {
    LayerFixture f = fresh();
    json s = state(f);
    s["shape"] = {100, 20};
    set_state(f, s.dump());
    expect_error([&] { load(f.src); }, {"shape [100,20]", "expected [20, 100]"});
  }
  {
    LayerFixture f = fresh();
    json s = state(f);
    s.erase("nested_offset");
    s.erase("nested_blocksize");
    set_state(f, s.dump());
    expect_error([&] { load(f.src); }, {"absmax", "U8", "no nested quantization"});
  }
  {
    LayerFixture f = fresh();
    f.src.remove(qs_name);
    expect_error([&] { load(f.src); }, {"bitsandbytes__nf4 / __fp4", "neither"});
  }
  {
    LayerFixture f = fresh();
    const std::string text = state(f).dump();
    f.src.add_bytes(p + ".weight.quant_state.bitsandbytes__fp4", DType::U8, {int64_t(text.size())},
                    std::vector<uint8_t>(text.begin(), text.end()));
    expect_error([&] { load(f.src); }, {"found both"});
  }
  {
    LayerFixture f = fresh();
    f.src.add(p + ".weight.absmax", DType::U8, {3}, std::vector<uint8_t>{1, 2, 3});
    expect_error([&] { load(f.src); }, {p + ".weight.absmax: 3 elements, expected 16"});
  }
  {
    LayerFixture f = fresh();
    std::vector<float> map(16, 0.5f);
    f.src.add(p + ".weight.quant_map", DType::F32, {16}, map);
    expect_error([&] { load(f.src); }, {"quant_map[0] = 0.5", "expected -1", "custom code books"});
  }
  {
    LayerFixture f = fresh();
    f.src.remove(p + ".weight.nested_absmax");
    expect_error([&] { load(f.src); }, {p + ".weight.nested_absmax is missing"});
  }
  {
    LayerFixture f = fresh();
    std::vector<float> nested(1, std::numeric_limits<float>::infinity());
    f.src.add(p + ".weight.nested_absmax", DType::F32, {1}, nested);
    expect_error([&] { load(f.src); }, {"nested_absmax[0] = inf", "finite"});
  }
  {
    LayerFixture f = fresh();
    f.src.add(p + ".weight", DType::U8, {999, 1}, std::vector<uint8_t>(999, 0));
    expect_error([&] { load(f.src); }, {p + ".weight", "[999, 1]", "expected [1000, 1]"});
  }
}

TEST(Bitsandbytes, Int8TensorErrors) {
  auto config =
      registry().make("bitsandbytes", {{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}});
  FakeSource src;
  const std::string p = "model.layers.0.mlp.up_proj";
  Rng rng(43);
  std::vector<int8_t> cb(6 * 10);
  for (auto& v : cb) v = int8_t(int(rng() % 255) - 127);
  std::vector<float> scb = {1.5f, 0.25f, 3.0f, 0.5f, 2.0f, 1.0f};
  src.add(p + ".weight", DType::I8, {6, 10}, cb);
  src.add(p + ".SCB", DType::F32, {6}, scb);
  src.add(p + ".weight_format", DType::U8, {}, std::vector<uint8_t>{0});
  std::vector<double> w(60);
  for (int j = 0; j < 6; ++j)
    for (int c = 0; c < 10; ++c)
      w[size_t(j * 10 + c)] = cb[size_t(j * 10 + c)] * double(scb[size_t(j)] / 127.0f);
  expect_layer_matches(p, *config, src, w, 6, 10, {}, rng, "int8");
  src.add(p + ".weight_format", DType::U8, {}, std::vector<uint8_t>{2});
  expect_error([&] { nn::load_linear(p, p, 10, 6, false, *config, src); },
               {p + ".weight_format = 2", "expected 0", "legacy"});
  src.remove(p + ".weight_format");
  src.add(p + ".SCB", DType::F32, {6}, std::vector<float>{1, 1, NAN, 1, 1, 1});
  expect_error([&] { nn::load_linear(p, p, 10, 6, false, *config, src); }, {p + ".SCB[2] = nan"});
}

}  // namespace
}  // namespace lowbit::quant::testing
