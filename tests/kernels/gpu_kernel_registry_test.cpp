// The GPU kernel choice (kernels/gpu_kernel_registry.h) is host logic: tested here without a
// GPU. Shapes are Llama-3-8B's (gate_up: n 28672, k 4096) and odd ones.
#include "kernels/gpu_kernel_registry.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lowbit::kernels {
namespace {

using F = GpuWeightFormat;

GpuLinearShape shape(F f, int64_t n, int64_t k, int64_t group = 128, int cc = 90) {
  GpuLinearShape s;
  s.format = f;
  s.n = n;
  s.k = k;
  s.group_size = group;
  s.capability = cc;
  return s;
}

std::string chosen(const GpuKernelPlan& p, int64_t m) {
  const GpuKernelInfo* k = p.choose(m);
  return k ? k->name : "none";
}

const GpuKernelInfo& kernel(const std::string& name) {
  for (const auto& k : gpu_linear_kernels())
    if (name == k.name) return k;
  throw Error("no kernel " + name);
}

TEST(GpuKernelRegistry, Bf16FollowsTheGemvLimit) {
  auto p = GpuKernelPlan::make(shape(F::kBf16, 6144, 4096), {}, nullptr);
  for (int64_t m = 1; m <= 4; ++m) EXPECT_EQ(chosen(p, m), "bf16_gemv") << m;
  for (int64_t m : {5, 8, 16, 256, 4096}) EXPECT_EQ(chosen(p, m), "bf16_cublaslt") << m;
}

TEST(GpuKernelRegistry, W4A16SwitchesToDequantOnceAtLargeM) {
  for (auto [n, k] :
       {std::pair<int64_t, int64_t>{28672, 4096}, {4096, 14336}, {6144, 4096}, {1000, 333}}) {
    auto p = GpuKernelPlan::make(shape(F::kW4A16, n, k), {}, nullptr);
    // W4A16: the stream-K GEMV at m <= 2 (measured end to end), the GEMM above.
    EXPECT_EQ(chosen(p, 1), "wq_gemv") << n << "x" << k;
    EXPECT_EQ(chosen(p, 2), "wq_gemv") << n << "x" << k;
    EXPECT_EQ(chosen(p, 3), "wq_gemm") << n << "x" << k;
    EXPECT_EQ(chosen(p, kWqGemvRows), "wq_gemm") << n << "x" << k;
    EXPECT_EQ(chosen(p, 16), "wq_gemm");
    EXPECT_EQ(chosen(p, 64), "wq_gemm");
    bool dequant = false;
    for (int64_t m = 1; m <= 16384; m = m * 3 / 2 + 1) {
      const std::string c = chosen(p, m);
      if (dequant) EXPECT_EQ(c, "wq_dequant_cublaslt") << n << "x" << k << " m " << m;
      dequant = c == "wq_dequant_cublaslt";
    }
    EXPECT_TRUE(dequant) << n << "x" << k;
  }
  auto p8 = GpuKernelPlan::make(shape(F::kW4A16, 28672, 4096), {}, nullptr);
  EXPECT_EQ(chosen(p8, 4096), "wq_dequant_cublaslt");
}

// The point of the choice, by the cost rules: a W4A16 layer is much cheaper than bf16 at decode
// sizes and at most ~15% dearer at large m (one dequantization pass on top of the same GEMM).
TEST(GpuKernelRegistry, W4A16CostAgainstBf16AtSmallAndLargeM) {
  auto q = GpuKernelPlan::make(shape(F::kW4A16, 28672, 4096), {}, nullptr);
  auto d = GpuKernelPlan::make(shape(F::kBf16, 28672, 4096), {}, nullptr);
  auto cost = [](const GpuKernelPlan& p, int64_t m) { return p.choose(m)->cost_us(p.shape(), m); };
  for (int64_t m : {1, 4, 16}) EXPECT_LT(cost(q, m), cost(d, m) / 3) << m;
  EXPECT_LT(cost(q, 64), cost(d, 64) / 2);
  for (int64_t m : {4096, 8192}) EXPECT_LE(cost(q, m), cost(d, m) * 1.15) << m;
}

TEST(GpuKernelRegistry, W8A16DecodesWithTheGemvUpToItsLimit) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{28672, 4096}, {4096, 14336}, {128256, 4096}}) {
    auto p = GpuKernelPlan::make(shape(F::kW8A16, n, k, k), {}, nullptr);
    for (int64_t m = 1; m <= kWqGemvRows; ++m)
      EXPECT_EQ(chosen(p, m), "wq_gemv") << n << " m " << m;
    EXPECT_EQ(chosen(p, kWqGemvRows + 1), "wq_gemm") << n;
  }
  // W4A16 runs it where wq_gemm is disabled.
  auto p4 = GpuKernelPlan::make(shape(F::kW4A16, 4096, 4096), {"wq_gemm"}, nullptr);
  EXPECT_EQ(chosen(p4, 1), "wq_gemv");
  EXPECT_EQ(chosen(p4, kWqGemvRows + 1), "wq_dequant_cublaslt");
}

TEST(GpuKernelRegistry, DisabledKernelsSteerTheChoice) {
  auto g = GpuKernelPlan::make(shape(F::kW8A16, 4096, 4096, 4096), {"wq_gemv"}, nullptr);
  EXPECT_EQ(chosen(g, 1), "wq_gemm");
  auto p = GpuKernelPlan::make(shape(F::kW4A16, 4096, 4096), {"wq_gemv", "wq_gemm"}, nullptr);
  EXPECT_EQ(chosen(p, 1), "wq_dequant_cublaslt");
  EXPECT_NE(p.reasons().find("wq_gemm: disabled by LOWBIT_DISABLE_KERNELS"), std::string::npos);
  EXPECT_TRUE(p.shape_refusals().empty());  // a user's choice is not a shape problem

  auto none = GpuKernelPlan::make(shape(F::kW4A16, 4096, 4096),
                                  {"wq_gemv", "wq_gemm", "wq_dequant_cublaslt"}, nullptr);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(chosen(none, 1), "none");
  EXPECT_NE(none.reasons().find("wq_dequant_cublaslt: disabled"), std::string::npos);

  auto bf = GpuKernelPlan::make(shape(F::kBf16, 64, 64), {"bf16_gemv"}, nullptr);
  EXPECT_EQ(chosen(bf, 1), "bf16_cublaslt");
}

TEST(GpuKernelRegistry, ParsesDisableListAndRefusesUnknownNames) {
  EXPECT_EQ(parse_disabled_kernels(" wq_gemm , bf16_gemv,,"),
            (std::vector<std::string>{"wq_gemm", "bf16_gemv"}));
  EXPECT_TRUE(parse_disabled_kernels("").empty());
  try {
    parse_disabled_kernels("wq_gemm,marlin");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'marlin'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("wq_dequant_cublaslt"), std::string::npos) << msg;  // lists known names
  }
  const char* old = std::getenv("LOWBIT_DISABLE_KERNELS");
  std::string saved = old ? old : "";
  setenv("LOWBIT_DISABLE_KERNELS", "fp8_gemv", 1);
  EXPECT_EQ(disabled_kernels_from_env(), std::vector<std::string>{"fp8_gemv"});
  unsetenv("LOWBIT_DISABLE_KERNELS");
  EXPECT_TRUE(disabled_kernels_from_env().empty());
  if (old) setenv("LOWBIT_DISABLE_KERNELS", saved.c_str(), 1);
}

TEST(GpuKernelRegistry, CapabilityDecidesTheFp8Path) {
  auto h100 = GpuKernelPlan::make(shape(F::kFp8Rowwise, 4096, 4096, 0, 90), {}, nullptr);
  EXPECT_EQ(chosen(h100, 1), "fp8_gemv");
  EXPECT_EQ(chosen(h100, kW8GemvRows), "fp8_gemv");
  EXPECT_EQ(chosen(h100, kW8GemvRows + 1), "fp8_cublaslt");
  EXPECT_EQ(chosen(h100, 4096), "fp8_cublaslt");
  // Without fp8 tensor cores: weight-only (the GEMV, then dequantize + bf16 GEMM).
  auto a100 = GpuKernelPlan::make(shape(F::kFp8Rowwise, 4096, 4096, 0, 80), {}, nullptr);
  EXPECT_EQ(chosen(a100, 1), "fp8_gemv");
  EXPECT_EQ(chosen(a100, 16), "fp8_weight_only");
  EXPECT_NE(a100.reasons().find("fp8_cublaslt: needs compute capability 8.9, the GPU has 8.0"),
            std::string::npos)
      << a100.reasons();
  auto gemv_only =
      GpuKernelPlan::make(shape(F::kFp8Rowwise, 4096, 4096, 0, 80), {"fp8_weight_only"}, nullptr);
  EXPECT_EQ(chosen(gemv_only, 16), "none");  // the loader turns this into a fallback or error
}

TEST(GpuKernelRegistry, ShapeRefusalsAreRecordedForTheNotice) {
  auto p = GpuKernelPlan::make(shape(F::kW4A16, 4096, 100, 100), {}, [](const GpuKernelInfo& k) {
    const std::string name = k.name;
    return name == "wq_gemm" || name == "wq_gemv" ? "k = 100 is not a multiple of 64" : "";
  });
  EXPECT_EQ(chosen(p, 1), "wq_dequant_cublaslt");
  ASSERT_EQ(p.shape_refusals().size(), 2u);
  EXPECT_EQ(p.shape_refusals()[0].first, "wq_gemv");
  EXPECT_EQ(p.shape_refusals()[1].first, "wq_gemm");
  EXPECT_NE(p.reasons().find("wq_gemm: k = 100 is not a multiple of 64"), std::string::npos);
}

TEST(GpuKernelRegistry, EveryFormatHasAKernelOnHopper) {
  for (F f : {F::kBf16, F::kW4A16, F::kW8A16, F::kFp8PerTensor, F::kFp8Rowwise, F::kFp8Block,
              F::kInt8W8A8}) {
    auto p = GpuKernelPlan::make(shape(f, 4096, 4096), {}, nullptr);
    for (int64_t m : {1, 16, 64, 256, 4096})
      EXPECT_NE(p.choose(m), nullptr) << gpu_weight_format_name(f) << " m " << m;
  }
  EXPECT_EQ(kernel("bf16_gemv").max_m, 4);
}

}  // namespace
}  // namespace lowbit::kernels
