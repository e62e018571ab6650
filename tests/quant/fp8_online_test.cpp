// `--quantization fp8` (quant/fp8_online.h): registered as an online, CUDA-only method with
// minimum capability 8.9; the CPU path refuses it, naming --device cuda and the capability.
#include "quant/fp8_online.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/registry.h"

namespace lowbit::quant {
namespace {

TEST(OnlineFp8, RegisteredAsCudaOnlyOnlineMethod) {
  const MethodRegistry r = MethodRegistry::builtin();
  const MethodInfo* info = r.find("fp8");
  ASSERT_NE(info, nullptr);
  EXPECT_TRUE(info->quantizes_online);
  EXPECT_EQ(info->min_capability, 89);
  // cpu: FP8 checkpoints (quant/fp8_checkpoint.h); the online method itself is CUDA-only.
  EXPECT_EQ(info->backends, (std::vector<std::string>{"cpu", "cuda"}));
  auto config = r.make("fp8", nlohmann::json::object());
  EXPECT_EQ(config->name(), "fp8");
  EXPECT_EQ(config->min_capability(), 89);
  LinearLayer head;
  head.prefix = "lm_head";
  EXPECT_EQ(config->get_quant_method(head, "lm_head"), nullptr);  // stays bf16
  // A non-empty config is an FP8 checkpoint's, validated as such.
  EXPECT_THROW(r.make("fp8", nlohmann::json{{"activation_scheme", "per-row"}}), Error);
}

TEST(OnlineFp8, CpuRefusesNamingTheCudaDevice) {
  auto config = MethodRegistry::builtin().make("fp8", nlohmann::json::object());
  LinearLayer layer;
  layer.prefix = "model.layers.0.mlp.up_proj";
  layer.in_features = 64;
  layer.out_features = 32;
  auto method = config->get_quant_method(layer, layer.prefix);
  ASSERT_NE(method, nullptr);
  const auto specs = method->create_weights(layer);
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{32, 64}));
  try {
    method->process_weights_after_loading(layer);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.0.mlp.up_proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device cuda"), std::string::npos) << msg;
    EXPECT_NE(msg.find("8.9"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace lowbit::quant
