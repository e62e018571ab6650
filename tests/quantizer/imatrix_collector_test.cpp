// ImatrixCollector: the observer hook of nn::Linear is installed for the collector's lifetime,
// HF layer prefixes map to GGUF weight names, sums of squares and token counts accumulate per
// input column, lm_head is skipped unless asked for. (End to end against llama-imatrix on
// stories260K: in_sum2 within 6e-4 relative, equal counts; see docs/formats.md.)
#include "engine/imatrix_collector.h"

#include <gtest/gtest.h>

#include <random>

namespace lowbit::engine {
namespace {

TEST(ImatrixCollector, GgufWeightNames) {
  EXPECT_EQ(gguf_weight_name("model.layers.0.self_attn.q_proj"), "blk.0.attn_q.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.12.self_attn.k_proj"), "blk.12.attn_k.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.3.self_attn.v_proj"), "blk.3.attn_v.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.3.self_attn.o_proj"), "blk.3.attn_output.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.7.mlp.gate_proj"), "blk.7.ffn_gate.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.7.mlp.up_proj"), "blk.7.ffn_up.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.7.mlp.down_proj"), "blk.7.ffn_down.weight");
  EXPECT_EQ(gguf_weight_name("lm_head"), "output.weight");
  EXPECT_EQ(gguf_weight_name("model.layers.7.mlp.experts.0.up_proj"), "");
  EXPECT_EQ(gguf_weight_name("model.embed_tokens"), "");
}

TEST(ImatrixCollector, InstallsItselfAndAccumulatesSquares) {
  EXPECT_EQ(nn::g_linear_observer, nullptr);
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  quant::LinearLayer down;
  down.prefix = "model.layers.1.mlp.down_proj";
  down.in_features = 5;
  quant::LinearLayer head;
  head.prefix = "lm_head";
  head.in_features = 5;
  std::vector<double> want(5, 0.0);
  {
    ImatrixCollector c;
    EXPECT_EQ(nn::g_linear_observer, &c);
    for (int64_t m : {3, 1, 4}) {
      std::vector<float> x(size_t(m * 5));
      for (auto& v : x) v = g(rng);
      for (size_t i = 0; i < x.size(); ++i) want[i % 5] += double(x[i]) * x[i];
      nn::g_linear_observer->observe(down, x.data(), m);
      nn::g_linear_observer->observe(head, x.data(), m);
    }
    const io::Imatrix im = c.result({"calib.txt"}, 2, 4);
    EXPECT_EQ(im.datasets, std::vector<std::string>{"calib.txt"});
    EXPECT_EQ(im.chunk_count, 2u);
    EXPECT_EQ(im.chunk_size, 4u);
    ASSERT_EQ(im.entries.size(), 1u);  // lm_head skipped by default
    const io::ImatrixEntry& e = im.entries.at("blk.1.ffn_down.weight");
    EXPECT_EQ(e.counts, std::vector<float>{8.f});
    ASSERT_EQ(e.in_sum2.size(), 5u);
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(e.in_sum2[size_t(j)], want[size_t(j)], 1e-4);
    const auto imp = im.importance("blk.1.ffn_down.weight");
    EXPECT_NEAR(imp[0], want[0] / 8, 1e-5);
  }
  EXPECT_EQ(nn::g_linear_observer, nullptr);
  ImatrixCollector with_output(/*include_output=*/true);
  std::vector<float> x(5, 2.f);
  nn::g_linear_observer->observe(head, x.data(), 1);
  EXPECT_EQ(with_output.result({}, 0, 0).entries.count("output.weight"), 1u);
}

}  // namespace
}  // namespace lowbit::engine
