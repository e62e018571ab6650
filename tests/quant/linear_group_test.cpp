// nn::LinearGroup (q/k/v, gate/up fused by rows, quant/row_fusion.h): the fused product gives
// bit-identical outputs to the parts computed one by one through nn::load_linear, for every
// fusable format (unquantized F32/F16/BF16, gguf F16 and block types on the row-wise, K-quant
// and repacked GEMM paths, online int4/int8 on the wq kernels), with and without biases, for
// one token and for batches; parts whose storage does not line up stay separate.
#include "nn/linear_group.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/cpu/gguf_quantize.h"
#include "quant_test_util.h"

namespace lowbit::quant::testing {
namespace {

struct Part {
  std::string prefix;
  DType dtype;  // stored type of the weight
  int64_t out;
};

std::vector<float> random_values(Rng& rng, int64_t count, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = dist(rng);
  return v;
}

// Adds part weights (random normals, stored as `dtype`: floats or a GGUF block type) and
// optional biases to `src`.
void add_parts(FakeSource& src, const std::vector<Part>& parts, int64_t k, bool bias, Rng& rng) {
  for (const Part& p : parts) {
    std::vector<float> w = random_values(rng, p.out * k, 0.05f);
    if (p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16) {
      src.add_float(p.prefix + ".weight", p.dtype, {p.out, k}, w);
    } else {
      std::vector<uint8_t> bytes(size_t(p.out) * *dtype_bytes(p.dtype, uint64_t(k)));
      kernels::cpu::quantize_rows(p.dtype, w.data(), p.out, k, nullptr, bytes.data());
      src.add_bytes(p.prefix + ".weight", p.dtype, {p.out, k}, std::move(bytes));
    }
    if (bias) src.add_float(p.prefix + ".bias", DType::F32, {p.out}, random_values(rng, p.out, 1));
  }
}

// Loads the parts as a group (fused where possible) and one by one; checks that every output
// bit agrees for m = 1, 3 and 17 activation rows, and returns the group's product count.
size_t expect_group_matches_parts(const std::string& method, const std::vector<Part>& parts,
                                  int64_t k, bool bias, uint64_t seed) {
  Rng rng(seed);
  FakeSource src;
  add_parts(src, parts, k, bias, rng);
  auto config = registry().make(method, json::object());
  std::vector<std::string> prefixes;
  std::vector<int64_t> outs;
  for (const Part& p : parts) {
    prefixes.push_back(p.prefix);
    outs.push_back(p.out);
  }
  const nn::LinearGroup group =
      nn::load_linear_group(prefixes, outs, k, bias, *config, src, /*fuse=*/true);
  std::vector<nn::Linear> alone;
  for (const Part& p : parts)
    alone.push_back(nn::load_linear(p.prefix, p.prefix, k, p.out, bias, *config, src));
  EXPECT_EQ(group.parts(), parts.size());
  uint64_t bytes = 0;
  for (const nn::Linear& l : alone) bytes += l.weight_bytes();
  EXPECT_EQ(group.weight_bytes(), bytes) << method;

  for (int64_t m : {1, 3, 17}) {
    std::vector<float> x = random_values(rng, m * k, 1.0f);
    std::vector<float> y(size_t(m * group.out_features()), -1.0f);
    group.forward(x.data(), m, y.data());
    for (size_t i = 0; i < parts.size(); ++i) {
      const int64_t n = parts[i].out;
      std::vector<float> ref(size_t(m * n));
      alone[i].forward(x.data(), m, ref.data());
      for (int64_t r = 0; r < m; ++r)
        EXPECT_EQ(std::memcmp(y.data() + r * group.out_features() + group.offset(i),
                              ref.data() + r * n, size_t(n) * sizeof(float)),
                  0)
            << method << " " << name(parts[i].dtype) << " part " << parts[i].prefix << " m=" << m
            << " row " << r << ": fused output differs from the part alone";
    }
  }
  return group.products();
}

std::vector<Part> qkv(DType q, DType k, DType v, int64_t q_out = 96, int64_t kv_out = 32) {
  return {{"model.layers.0.self_attn.q_proj", q, q_out},
          {"model.layers.0.self_attn.k_proj", k, kv_out},
          {"model.layers.0.self_attn.v_proj", v, kv_out}};
}

TEST(LinearGroup, UnquantizedFloatsFuseBitIdentical) {
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (bool bias : {false, true})
      EXPECT_EQ(expect_group_matches_parts("unquantized", qkv(t, t, t), 160, bias, 1), 1u)
          << name(t);
}

TEST(LinearGroup, GgufTypesFuseBitIdentical) {
  // Q4_1: row-wise int8 kernel (no GEMM by default); Q4_0 / Q8_0: repacked GEMM (16-row tiles);
  // Q4_K / Q6_K: K-quant kernels or their GEMM; F16: activations rounded as ggml's.
  for (DType t : {DType::Q4_1, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16})
    for (bool bias : {false, true})
      EXPECT_EQ(expect_group_matches_parts("gguf", qkv(t, t, t), 512, bias, 2), 1u) << name(t);
  // gate/up shaped: two parts of the same width, the last not a multiple of 16.
  std::vector<Part> gate_up = {{"model.layers.3.mlp.gate_proj", DType::Q4_1, 80},
                               {"model.layers.3.mlp.up_proj", DType::Q4_1, 77}};
  EXPECT_EQ(expect_group_matches_parts("gguf", gate_up, 256, false, 3), 1u);
}

TEST(LinearGroup, OnlineIntFuseBitIdentical) {
  for (const char* method : {"int4", "int8"})
    for (bool bias : {false, true})
      EXPECT_EQ(
          expect_group_matches_parts(method, qkv(DType::F32, DType::F32, DType::F32), 384, bias, 4),
          1u)
          << method;
}

TEST(LinearGroup, MixedStorageStaysSeparate) {
  // A Q4_K_M file whose v is Q6_K: q and k fuse, v stays alone.
  EXPECT_EQ(
      expect_group_matches_parts("gguf", qkv(DType::Q4_K, DType::Q4_K, DType::Q6_K), 512, false, 5),
      2u);
  // Only consecutive parts fuse: k differs from q and v, so all three stay separate.
  EXPECT_EQ(
      expect_group_matches_parts("gguf", qkv(DType::Q4_0, DType::Q8_0, DType::Q4_0), 256, true, 6),
      3u);
  // A part whose rows are not a multiple of 16 ends a run (q: 40 rows): q alone, k+v fused.
  EXPECT_EQ(expect_group_matches_parts("gguf", qkv(DType::Q4_1, DType::Q4_1, DType::Q4_1, 40), 256,
                                       false, 7),
            2u);
}

TEST(LinearGroup, FuseOffKeepsEveryPart) {
  Rng rng(8);
  FakeSource src;
  const auto parts = qkv(DType::Q4_0, DType::Q4_0, DType::Q4_0);
  add_parts(src, parts, 256, false, rng);
  auto config = registry().make("gguf", json::object());
  const nn::LinearGroup g =
      nn::load_linear_group({parts[0].prefix, parts[1].prefix, parts[2].prefix}, {96, 32, 32}, 256,
                            false, *config, src, /*fuse=*/false);
  EXPECT_EQ(g.products(), 3u);
  EXPECT_EQ(g.out_features(), 160);
  EXPECT_EQ(g.offset(2), 128);
}

// Parts stored back to back (GGUF files often hold gate then up so): the fused layer reads the
// checkpoint bytes in place, and still matches the parts alone.
TEST(LinearGroup, BackToBackPartsFuseInPlace) {
  class OneBuffer : public models::WeightSource {
   public:
    std::vector<uint8_t> bytes;
    std::map<std::string, TensorView> views;
    const TensorView* find(const std::string& n) const override {
      auto it = views.find(n);
      return it == views.end() ? nullptr : &it->second;
    }
    std::string stored_name(const std::string& n) const override { return n; }
    std::string path() const override { return "one-buffer.gguf"; }
  };
  Rng rng(10);
  const int64_t k = 256, n = 48;
  const size_t row = *dtype_bytes(DType::Q4_1, uint64_t(k));
  OneBuffer src;
  src.bytes.resize(2 * n * row);
  std::vector<float> w = random_values(rng, 2 * n * k, 0.05f);
  kernels::cpu::quantize_rows(DType::Q4_1, w.data(), 2 * n, k, nullptr, src.bytes.data());
  for (int i = 0; i < 2; ++i) {
    const std::string name = i == 0 ? "mlp.gate_proj.weight" : "mlp.up_proj.weight";
    src.views[name] =
        TensorView{name, DType::Q4_1, {n, k}, src.bytes.data() + i * n * row, n * row};
  }
  auto config = registry().make("gguf", json::object());
  const nn::LinearGroup g =
      nn::load_linear_group({"mlp.gate_proj", "mlp.up_proj"}, {n, n}, k, false, *config, src, true);
  ASSERT_EQ(g.products(), 1u);
  EXPECT_EQ(g.linear_of(0).layer().tensors.at("weight").data, src.bytes.data());
  std::vector<float> x = random_values(rng, k, 1.0f), y(2 * n), ref(n);
  g.forward(x.data(), 1, y.data());
  for (int i = 0; i < 2; ++i) {
    nn::load_linear(i == 0 ? "mlp.gate_proj" : "mlp.up_proj",
                    i == 0 ? "mlp.gate_proj" : "mlp.up_proj", k, n, false, *config, src)
        .forward(x.data(), 1, ref.data());
    EXPECT_EQ(std::memcmp(y.data() + i * n, ref.data(), n * sizeof(float)), 0) << i;
  }
}

// Observers (lowbit imatrix) see each part under its own name once per forward, fused or not.
TEST(LinearGroup, ObserverSeesParts) {
  struct Counter : nn::LinearObserver {
    std::map<std::string, int64_t> rows;
    void observe(const LinearLayer& layer, const float*, int64_t m) override {
      rows[layer.prefix] += m;
    }
  };
  Rng rng(9);
  FakeSource src;
  const auto parts = qkv(DType::Q4_1, DType::Q4_1, DType::Q4_1);
  add_parts(src, parts, 256, false, rng);
  auto config = registry().make("gguf", json::object());
  const nn::LinearGroup g =
      nn::load_linear_group({parts[0].prefix, parts[1].prefix, parts[2].prefix}, {96, 32, 32}, 256,
                            false, *config, src, true);
  ASSERT_EQ(g.products(), 1u);
  Counter counter;
  nn::g_linear_observer = &counter;
  std::vector<float> x = random_values(rng, 2 * 256, 1.0f), y(2 * 160);
  g.forward(x.data(), 2, y.data());
  nn::g_linear_observer = nullptr;
  ASSERT_EQ(counter.rows.size(), 3u);
  for (const Part& p : parts) EXPECT_EQ(counter.rows[p.prefix], 2) << p.prefix;
}

}  // namespace
}  // namespace lowbit::quant::testing
