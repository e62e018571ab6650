// Quantization-method plugins (quant/plugin_api.h): the example plugin
// (examples/quant_plugin/ternary_plugin.cpp) loaded through the registry API, its layers
// against an independent float64 ternary reference, a whole tiny model run with it; each load
// error (missing file, not a shared library, missing symbols, ABI mismatch, duplicate names,
// an entry point that throws) with its message; LOWBIT_PLUGINS.
#include "quant/plugin.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/model_loader.h"
#include "quant/plugin_api.h"
#include "quant_test_util.h"
#include "test_paths.h"

namespace lowbit::quant::testing {
namespace {
namespace fs = std::filesystem;

std::string plugin_path(const std::string& file) {
  return std::string(LOWBIT_BINARY_DIR) + "/lib/" + file + ".so";
}
const std::string kTernary = "lowbit_ternary_plugin";

// BitNet b1.58 absmean ternary, written from its definition: scale = mean |w| per row,
// t = clamp(round(w / scale), -1, 1).
std::vector<double> ternary_reference(const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<double> out(w.size());
  for (int64_t j = 0; j < n; ++j) {
    double sum = 0;
    for (int64_t c = 0; c < k; ++c) sum += std::abs(double(w[size_t(j * k + c)]));
    const float scale = float(sum / double(k));
    for (int64_t c = 0; c < k; ++c) {
      const double t = std::clamp(std::nearbyint(w[size_t(j * k + c)] / scale), -1.0f, 1.0f);
      out[size_t(j * k + c)] = t * scale;
    }
  }
  return out;
}

TEST(Plugin, LoadsAndRegistersTheExampleMethod) {
  MethodRegistry r = MethodRegistry::builtin();
  const size_t before = r.methods().size();
  std::vector<std::string> names = load_plugin(r, plugin_path(kTernary));
  EXPECT_EQ(names, std::vector<std::string>{"ternary"});
  ASSERT_EQ(r.methods().size(), before + 1);
  const MethodInfo* info = r.find("ternary");
  ASSERT_NE(info, nullptr);
  EXPECT_TRUE(info->quantizes_online);
  EXPECT_EQ(info->origin, fs::canonical(plugin_path(kTernary)).string());
  EXPECT_EQ(info->backends, std::vector<std::string>{"cpu"});
  EXPECT_NE(info->description.find("ternary"), std::string::npos);
  // The same file again (another spelling of its path) is not loaded twice.
  EXPECT_TRUE(
      load_plugin(r, std::string(LOWBIT_BINARY_DIR) + "/lib/../lib/" + kTernary + ".so").empty());
  EXPECT_EQ(r.methods().size(), before + 1);

  auto config = r.make("ternary", json::object());
  EXPECT_EQ(config->name(), "ternary");
  EXPECT_EQ(config->min_capability(), -1);
  Rng rng(31);
  for (auto [n, k, bias] :
       {std::tuple<int64_t, int64_t, bool>{17, 173, true}, {64, 64, false}, {3, 5, true}}) {
    FakeSource src;
    const std::string prefix = "model.layers.1.self_attn.o_proj";
    std::vector<float> w = random_floats(size_t(n * k), rng);
    src.add_float(prefix + ".weight", DType::F32, {n, k}, w);
    std::vector<float> b;
    if (bias) {
      b = random_floats(size_t(n), rng);
      src.add_float(prefix + ".bias", DType::F32, {n}, b);
    }
    nn::Linear lin = nn::load_linear(prefix, prefix, k, n, bias, *config, src);
    // 2 bits a weight + a 4-byte scale a row.
    EXPECT_EQ(lin.weight_bytes(), uint64_t(n * ((k + 3) / 4) + 4 * n));
    for (int64_t m : {int64_t(1), int64_t(4)}) {
      std::vector<float> x = random_floats(size_t(m * k), rng);
      std::vector<double> ref = reference_forward(ternary_reference(w, n, k), n, k, x, m);
      for (int64_t rr = 0; rr < m; ++rr)
        for (int64_t j = 0; j < n; ++j) ref[size_t(rr * n + j)] += bias ? b[size_t(j)] : 0.0;
      std::vector<float> y(size_t(m * n));
      lin.forward(x.data(), m, y.data());
      EXPECT_LT(relative_error(y, ref), 1e-5) << "n=" << n << " k=" << k << " m=" << m;
    }
  }
}

TEST(Plugin, RunsAWholeModel) {
  MethodRegistry r = MethodRegistry::builtin();
  load_plugin(r, plugin_path(kTernary));
  const std::string path = lowbit::testing::source_path("tests/fixtures/tiny/llama3_rope_f32.gguf");
  EXPECT_EQ(engine::detect_method(path, "ternary", r), "ternary");
  engine::LoadedModel m = engine::load_model(path, {"ternary", false}, r);
  EXPECT_EQ(m.quant->name(), "ternary");
  std::vector<int32_t> ids = {1, 5, 9, 200};
  auto cache = m.model->make_cache(4);
  std::vector<float> logits;
  m.model->forward(ids, cache, false, logits);
  ASSERT_FALSE(logits.empty());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  // Errors from inside the plugin's method come through as lowbit::Error (symbols shared with
  // the host): a NaN weight.
  auto config = r.make("ternary", json::object());
  FakeSource src;
  std::vector<float> w(12, 1.0f);
  w[7] = INFINITY;
  src.add_float("p.weight", DType::F32, {3, 4}, w);
  expect_error([&] { nn::load_linear("p", "p", 4, 3, false, *config, src); },
               {"p.weight[1, 3]", "inf", "finite"});
}

TEST(Plugin, LoadErrors) {
  MethodRegistry r = MethodRegistry::builtin();
  const size_t before = r.methods().size();
  expect_error([&] { load_plugin(r, "/nonexistent/plugin.so"); },
               {"plugin /nonexistent/plugin.so", "no such file"});

  fs::path dir = fs::temp_directory_path() / ("lowbit_plugin_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string text = (dir / "not_a_library.so").string();
  std::ofstream(text) << "this is not an ELF file\n";
  expect_error([&] { load_plugin(r, text); },
               {"plugin " + text, "cannot load as a shared library", "not_a_library.so"});
  expect_error([&] { load_plugin(r, dir.string()); }, {"not a regular file"});
  fs::remove_all(dir);

  expect_error(
      [&] { load_plugin(r, plugin_path("lowbit_test_plugin_no_entry")); },
      {"lowbit_test_plugin_no_entry.so", "entry point 'lowbit_register_plugin' is missing"});
  expect_error([&] { load_plugin(r, plugin_path("lowbit_test_plugin_no_abi")); },
               {"lowbit_test_plugin_no_abi.so", "'lowbit_plugin_abi_version' is missing"});
  expect_error([&] { load_plugin(r, plugin_path("lowbit_test_plugin_wrong_abi")); },
               {"lowbit_test_plugin_wrong_abi.so", "ABI version 999",
                "expects version " + std::to_string(LOWBIT_PLUGIN_ABI_VERSION)});
  expect_error(
      [&] { load_plugin(r, plugin_path("lowbit_test_plugin_duplicate_builtin")); },
      {"lowbit_test_plugin_duplicate_builtin.so", "'int8' is already registered", "built-in"});
  expect_error([&] { load_plugin(r, plugin_path("lowbit_test_plugin_throws")); },
               {"lowbit_test_plugin_throws.so", "cannot initialise: a device is missing"});
  // Nothing of a failed plugin stays registered (the throwing one registered a method first).
  EXPECT_EQ(r.methods().size(), before);
  EXPECT_EQ(r.find("fine_method"), nullptr);

  load_plugin(r, plugin_path(kTernary));
  expect_error([&] { load_plugin(r, plugin_path("lowbit_test_plugin_duplicate_plugin")); },
               {"'ternary' is already registered", "by plugin", kTernary + ".so"});
}

TEST(Plugin, PluginListAndEnvironment) {
  EXPECT_EQ(split_plugin_list("a.so:b.so"), (std::vector<std::string>{"a.so", "b.so"}));
  EXPECT_EQ(split_plugin_list(":a.so::"), std::vector<std::string>{"a.so"});
  EXPECT_TRUE(split_plugin_list("").empty());

  const char* old = std::getenv("LOWBIT_PLUGINS");
  std::string saved = old ? old : "";
  ::setenv("LOWBIT_PLUGINS", (":" + plugin_path(kTernary) + ":").c_str(), 1);
  MethodRegistry r = registry_with_plugins({});
  EXPECT_NE(r.find("ternary"), nullptr);
  // --plugin after LOWBIT_PLUGINS naming the same file: loaded once.
  EXPECT_NE(registry_with_plugins({plugin_path(kTernary)}).find("ternary"), nullptr);
  ::setenv("LOWBIT_PLUGINS", "/nonexistent/x.so", 1);
  expect_error([&] { registry_with_plugins({}); }, {"LOWBIT_PLUGINS", "/nonexistent/x.so"});
  if (old)
    ::setenv("LOWBIT_PLUGINS", saved.c_str(), 1);
  else
    ::unsetenv("LOWBIT_PLUGINS");
}

}  // namespace
}  // namespace lowbit::quant::testing
