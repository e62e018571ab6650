// GpuLinear (kernels/cuda/gemm/gpu_linear.h): every representation against a plain host
// reference (double accumulation over the logical weight) on random data and odd shapes, the
// kernel choice by m and LOWBIT_DISABLE_KERNELS, and the fallbacks / errors for shapes the
// kernels cannot take.
#include "kernels/cuda/gemm/gpu_linear.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "cuda_test_util.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "kernels/cuda/gemm/wq_gemm.h"
#include "quant/weight_only_method.h"

namespace lowbit::test {
namespace {

using kernels::GpuWeightFormat;
namespace kcpu = kernels::cpu;

struct Runners {
  kc::GemmRunner gemm;
  kc::W8A8Runner w8a8;
  kc::DeviceBuffer scratch;
  kc::GpuLinearContext ctx(const kc::GpuLinear& l, int64_t max_m) {
    const int64_t elems = l.scratch_elems_for(max_m);
    if (elems > 0 && int64_t(scratch.bytes()) < elems * 2)
      scratch = kc::DeviceBuffer(size_t(elems) * 2, "test scratch");
    w8a8.reserve(max_m, l.k(), l.n());
    kc::GpuLinearContext c;
    c.gemm = &gemm;
    c.w8a8 = &w8a8;
    c.scratch = scratch.get<__nv_bfloat16>();
    c.scratch_elems = int64_t(scratch.bytes() / 2);
    return c;
  }
};

kc::GpuLinearOptions options(int64_t max_m, std::vector<std::string> disabled = {}, int cc = 0) {
  kc::GpuLinearOptions o;
  const auto d = engine::cuda_devices();
  o.capability = cc ? cc : d.front().cc_major * 10 + d.front().cc_minor;
  o.disabled = std::move(disabled);
  o.max_m = max_m;
  return o;
}

// Random weight-only codes (never all-equal), scales and zeros, optional act-order.
quant::DecodedWeight random_wq(kcpu::WqKind kind, int64_t n, int64_t k, int64_t group, bool zeros,
                               bool act_order, std::mt19937& rng) {
  quant::DecodedWeight q;
  q.kind = kind;
  q.n = n;
  q.k = k;
  q.group_size = group;
  const int levels = kind == kcpu::WqKind::kInt4 ? 16 : 256;
  std::uniform_int_distribution<int> code(0, levels - 1);
  q.codes.resize(size_t(n * k));
  for (auto& c : q.codes) c = uint8_t(code(rng));
  q.scales = random_floats(size_t(n * (k / group)), rng, 0.002f, 0.02f);
  if (zeros) {
    q.zeros.resize(q.scales.size());
    for (auto& z : q.zeros) z = float(code(rng));
  }
  if (act_order) {
    q.perm.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) q.perm[size_t(i)] = int32_t(i);
    std::shuffle(q.perm.begin(), q.perm.end(), rng);
  }
  return q;
}

// y = layer(x) for bf16 x [m, k] on the GPU, as floats (bf16 output).
std::vector<float> run(Runners& r, const kc::GpuLinear& l, const std::vector<float>& x, int64_t m,
                       const std::vector<float>* bias) {
  auto dx = upload(to_bf16(x));
  auto dy = poisoned(size_t(m * l.n()) * 2);
  kc::DeviceBuffer db;
  if (bias) db = upload(*bias);
  kc::GpuLinearContext ctx = r.ctx(l, m);
  l.forward(ctx, dx.get<__nv_bfloat16>(), l.k(), bias ? db.get<float>() : nullptr, dy.get(), l.n(),
            kc::OutType::kBf16, m, nullptr);
  return from_bf16(download<uint16_t>(dy, size_t(m * l.n())));
}

// Checks y against x·W_refᵀ (+ bias) in double: |y − ref| ≤ tol · Σ|w·x| + bf16 rounding of y.
void expect_close(const std::vector<float>& y, const std::vector<float>& w_ref,
                  const std::vector<float>& x, const std::vector<float>* bias, int64_t m, int64_t n,
                  int64_t k, double tol, const std::string& what) {
  int bad = 0;
  for (int64_t i = 0; i < m && bad < 5; ++i)
    for (int64_t j = 0; j < n && bad < 5; ++j) {
      double ref = bias ? (*bias)[size_t(j)] : 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = double(w_ref[size_t(j * k + c)]) * double(x[size_t(i * k + c)]);
        ref += p;
        mag += std::abs(p);
      }
      const double got = y[size_t(i * n + j)];
      const double allowed = tol * mag + std::abs(ref) * 1.0 / 128 + 1e-6;
      if (!(std::abs(got - ref) <= allowed)) {
        ++bad;
        ADD_FAILURE() << what << " y[" << i << ", " << j << "] = " << got << ", expected " << ref
                      << " ± " << allowed;
      }
    }
}

// The logical weight of an unpacked source [n, k] in input order.
std::vector<float> logical(const quant::DecodedWeight& q) {
  return kcpu::wq_dequantize(*kcpu::pack_wq_weight(q.source(), "test"));
}

TEST(GpuLinear, WeightOnlyMatchesReferenceOnEveryPath) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(11);
  Runners r;
  struct Case {
    kcpu::WqKind kind;
    int64_t n, k, group;
    bool zeros, act_order;
  };
  const Case cases[] = {
      {kcpu::WqKind::kInt4, 192, 256, 32, true, false},
      {kcpu::WqKind::kInt4, 128, 384, 128, false, false},
      {kcpu::WqKind::kInt4, 64, 512, 64, true, true},
      {kcpu::WqKind::kInt4, 256, 320, 320, true, false},  // group = k (per channel)
      {kcpu::WqKind::kInt8, 128, 256, 256, false, false},
      {kcpu::WqKind::kInt8, 192, 128, 32, true, true},
  };
  for (const Case& c : cases) {
    auto q = random_wq(c.kind, c.n, c.k, c.group, c.zeros, c.act_order, rng);
    const auto w = logical(q);
    auto bias = random_floats(size_t(c.n), rng);
    const std::string name =
        fmt::format("{} [{}, {}] g{}{}{}", kcpu::wq_kind_name(c.kind), c.n, c.k, c.group,
                    c.zeros ? " zeros" : "", c.act_order ? " act-order" : "");
    // Default choice, and each kernel forced by disabling the other.
    for (std::vector<std::string> disabled : {std::vector<std::string>{},
                                              {"wq_gemm"},
                                              {"wq_gemv", "wq_gemm"},
                                              {"wq_gemv", "wq_dequant_cublaslt"}}) {
      auto l = kc::GpuLinear::wq(q.source(), name, options(300, disabled), nullptr);
      ASSERT_EQ(l.format(),
                c.kind == kcpu::WqKind::kInt4 ? GpuWeightFormat::kW4A16 : GpuWeightFormat::kW8A16);
      for (int64_t m : {1, 3, 16, 65, 300}) {
        auto x = round_bf16(random_floats(size_t(m * c.k), rng));
        auto y = run(r, l, x, m, &bias);
        expect_close(y, w, x, &bias, m, c.n, c.k, 4e-3,
                     name + " m " + std::to_string(m) + " via " + l.kernel_for(m));
      }
    }
  }
}

TEST(GpuLinear, KernelChoiceFollowsSizeAndDisableList) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(2);
  auto q = random_wq(kcpu::WqKind::kInt4, 1024, 1024, 128, true, false, rng);
  auto l = kc::GpuLinear::wq(q.source(), "layer", options(4096), nullptr);
  // W4A16 decodes with the stream-K GEMV at m <= 2, then the GEMM (gpu_kernel_registry.cpp).
  EXPECT_STREQ(l.kernel_for(1), "wq_gemv");
  EXPECT_STREQ(l.kernel_for(2), "wq_gemv");
  EXPECT_STREQ(l.kernel_for(kernels::kWqGemvRows), "wq_gemm");
  EXPECT_STREQ(l.kernel_for(16), "wq_gemm");
  auto q8 = random_wq(kcpu::WqKind::kInt8, 1024, 1024, 1024, false, false, rng);
  auto l8 = kc::GpuLinear::wq(q8.source(), "layer", options(4096), nullptr);
  EXPECT_STREQ(l8.kernel_for(1), "wq_gemv");
  EXPECT_STREQ(l8.kernel_for(kernels::kWqGemvRows), "wq_gemv");
  EXPECT_STREQ(l8.kernel_for(kernels::kWqGemvRows + 1), "wq_gemm");
  EXPECT_STREQ(l.kernel_for(4096), "wq_dequant_cublaslt");
  EXPECT_EQ(l.scratch_elems_for(4096), 1024 * 1024);
  EXPECT_EQ(l.scratch_elems_for(1), 0);

  // LOWBIT_DISABLE_KERNELS, read from the environment as the model does.
  setenv("LOWBIT_DISABLE_KERNELS", "wq_gemv,wq_gemm", 1);
  auto no_gemm = kc::GpuLinear::wq(q.source(), "layer",
                                   options(64, kernels::disabled_kernels_from_env()), nullptr);
  unsetenv("LOWBIT_DISABLE_KERNELS");
  EXPECT_STREQ(no_gemm.kernel_for(1), "wq_dequant_cublaslt");

  // Both wq kernels off: a bf16 copy runs (notice on stderr) and still computes W.
  ::testing::internal::CaptureStderr();
  auto dense =
      kc::GpuLinear::wq(q.source(), "model.layers.3.mlp.down_proj",
                        options(64, {"wq_gemv", "wq_gemm", "wq_dequant_cublaslt"}), nullptr);
  const std::string notice = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(notice.find("model.layers.3.mlp.down_proj"), std::string::npos) << notice;
  EXPECT_NE(notice.find("running a bf16 copy"), std::string::npos) << notice;
  EXPECT_EQ(dense.format(), GpuWeightFormat::kBf16);
  EXPECT_STREQ(dense.kernel_for(1), "bf16_gemv");
  Runners r;
  auto x = round_bf16(random_floats(size_t(5 * 1024), rng));
  expect_close(run(r, dense, x, 5, nullptr), logical(q), x, nullptr, 5, 1024, 1024, 4e-3,
               "bf16 copy");

  // Nothing left: the error names the layer, the shape and every kernel's reason.
  try {
    kc::GpuLinear::wq(
        q.source(), "model.layers.3.mlp.down_proj",
        options(64, {"wq_gemv", "wq_gemm", "wq_dequant_cublaslt", "bf16_gemv", "bf16_cublaslt"}),
        nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* part : {"model.layers.3.mlp.down_proj", "[1024, 1024]", "bf16_gemv: disabled",
                             "bf16_cublaslt: disabled", "wq_gemv: disabled", "wq_gemm: disabled",
                             "wq_dequant_cublaslt: disabled"})
      EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
  }
}

TEST(GpuLinear, ShapesTheWqKernelsRefuseFallBackWithANotice) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(5);
  Runners r;
  // k = 100 (not a multiple of 32) and n = 100 (not a multiple of 64): a tensor-parallel-like
  // shard the 4-bit kernels cannot take.
  for (auto [n, k, g] : {std::tuple<int64_t, int64_t, int64_t>{128, 100, 50}, {100, 128, 32}}) {
    auto q = random_wq(kcpu::WqKind::kInt4, n, k, g, true, false, rng);
    ::testing::internal::CaptureStderr();
    auto l = kc::GpuLinear::wq(q.source(), "model.layers.0.self_attn.o_proj", options(32), nullptr);
    const std::string notice = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(notice.find("model.layers.0.self_attn.o_proj"), std::string::npos) << notice;
    EXPECT_NE(notice.find(fmt::format("[{}, {}]", n, k)), std::string::npos) << notice;
    EXPECT_NE(notice.find("wq_gemm: "), std::string::npos) << notice;
    EXPECT_EQ(std::count(notice.begin(), notice.end(), '\n'), 1) << notice;
    auto x = round_bf16(random_floats(size_t(7 * k), rng));
    expect_close(run(r, l, x, 7, nullptr), logical(q), x, nullptr, 7, n, k, 4e-3, "fallback");
  }
}

TEST(GpuLinear, Fp8AndInt8MatchReference) {
  LOWBIT_REQUIRE_GPU();
  const auto d = engine::cuda_devices();
  std::mt19937 rng(8);
  Runners r;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{256, 512}, {384, 256}}) {
    auto w = round_bf16(random_floats(size_t(n * k), rng, -0.1f, 0.1f));
    auto dw = upload(to_bf16(w));
    auto bias = random_floats(size_t(n), rng);
    std::vector<std::pair<std::string, kc::GpuLinear>> layers;
    if (d.front().cc_major * 10 + d.front().cc_minor >= 89)
      for (auto s :
           {kc::Fp8Scaling::kPerTensor, kc::Fp8Scaling::kRowwise, kc::Fp8Scaling::kBlock128})
        layers.emplace_back(kc::fp8_scaling_name(s),
                            kc::GpuLinear::fp8(dw.get<__nv_bfloat16>(), n, k, s, "fp8 layer",
                                               options(300), nullptr));
    layers.emplace_back("int8", kc::GpuLinear::int8(dw.get<__nv_bfloat16>(), n, k, "int8 layer",
                                                    options(300), nullptr));
    for (auto& [name, l] : layers)
      for (int64_t m : {1, 8, 9, 64, 300}) {
        auto x = round_bf16(random_floats(size_t(m * k), rng));
        // 8-bit weights and (m > 8) 8-bit activations: a few % of Σ|w·x|.
        expect_close(run(r, l, x, m, &bias), w, x, &bias, m, n, k, 0.07,
                     name + " m " + std::to_string(m) + " via " + l.kernel_for(m));
      }
  }
}

TEST(GpuLinear, Fp8WithoutFp8TensorCoresRunsWeightOnly) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(9);
  auto w = round_bf16(random_floats(size_t(128 * 256), rng, -0.1f, 0.1f));
  auto dw = upload(to_bf16(w));
  // Planned as on sm_80 (labels only: this GPU would run its fp8 tensor cores).
  auto a100 = kc::GpuLinear::fp8(dw.get<__nv_bfloat16>(), 128, 256, kc::Fp8Scaling::kRowwise,
                                 "layer", options(64, {}, 80), nullptr);
  EXPECT_EQ(a100.format(), GpuWeightFormat::kFp8Rowwise);
  EXPECT_STREQ(a100.kernel_for(1), "fp8_gemv");
  EXPECT_STREQ(a100.kernel_for(64), "fp8_weight_only");
  // Without the weight-only path, steps longer than the GEMV's fall back to bf16 (notice).
  ::testing::internal::CaptureStderr();
  auto big = kc::GpuLinear::fp8(dw.get<__nv_bfloat16>(), 128, 256, kc::Fp8Scaling::kRowwise,
                                "model.layers.1.mlp.down_proj",
                                options(64, {"fp8_weight_only"}, 80), nullptr);
  const std::string notice = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(big.format(), GpuWeightFormat::kBf16);
  EXPECT_NE(notice.find("model.layers.1.mlp.down_proj"), std::string::npos) << notice;
  EXPECT_NE(notice.find("needs compute capability 8.9"), std::string::npos) << notice;
  // On this GPU the weight-only path is not offered.
  auto here = kc::GpuLinear::fp8(dw.get<__nv_bfloat16>(), 128, 256, kc::Fp8Scaling::kRowwise,
                                 "layer", options(64), nullptr);
  if (engine::cuda_devices().front().cc_major >= 9)
    EXPECT_STREQ(here.kernel_for(64), "fp8_cublaslt");
}

}  // namespace
}  // namespace lowbit::test
