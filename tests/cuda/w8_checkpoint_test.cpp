// FP8 and int8 W8A8 checkpoints on the GPU (models/w8_checkpoint_cuda.h):
//   - the device codes are the file's bytes and the scales the file's values (per-tensor ones
//     repeated per row), for q/k/v stacked into one GEMM, on the tiny fixtures of
//     tools/gen_fp8_tiny_models.py;
//   - a 128×128 block-scaled layer (random codes, non-power-of-two scales, a partial last block
//     row) against the CPU method's own apply() (dequantized bf16 weight + emulated 1×128
//     activation rounding) and against the weight-only product;
//   - whole tiny models: GPU prefill logits against the CPU path's, greedy tokens against the
//     CPU's.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "cuda_test_util.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "kernels/cpu/linear.h"
#include "kernels/cuda/gemm/gpu_linear.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "models/llama_cuda.h"
#include "models/w8_checkpoint_cuda.h"
#include "models/weight_source.h"
#include "nn/linear.h"
#include "quant/fp8_checkpoint.h"
#include "quant/registry.h"

namespace lowbit::test {
namespace {

using kernels::GpuWeightFormat;
using models::W8StoredWeight;

std::string fixture(const std::string& name) {
  return std::string(LOWBIT_SOURCE_DIR) + "/tests/fixtures/tiny_quant/" + name;
}

int capability() {
  const auto d = engine::cuda_devices();
  return d.front().cc_major * 10 + d.front().cc_minor;
}

kc::GpuLinearOptions options(int64_t max_m) {
  kc::GpuLinearOptions o;
  o.capability = capability();
  o.max_m = max_m;
  return o;
}

// The W8A8 form of one projection of a loaded checkpoint.
W8StoredWeight read_projection(const engine::LoadedModel& m, const std::string& prefix, int64_t n,
                               int64_t k, models::W8Notices& notices) {
  std::shared_ptr<const quant::LinearMethod> method;
  quant::LinearLayer layer =
      nn::load_linear_tensors(prefix, prefix, k, n, false, *m.quant, *m.source, &method);
  auto w = models::read_w8_checkpoint(layer, *method, notices);
  if (!w) ADD_FAILURE() << prefix << ": not read as an 8-bit W8A8 weight";
  return w ? std::move(*w) : W8StoredWeight{};
}

template <typename T>
std::vector<T> to_host(const void* device, size_t count) {
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(count);
  kc::copy_to_host(v.data(), device, count * sizeof(T));
  return v;
}

TEST(W8Checkpoint, UploadedCodesAreTheFileBytes) {
  LOWBIT_REQUIRE_GPU();
  if (capability() < 89) GTEST_SKIP() << "FP8 checkpoints need sm_89";
  const auto registry = quant::MethodRegistry::builtin();
  struct Case {
    const char* name;
    bool int8;
  };
  for (const Case c : {Case{"fp8_llama_static", false}, Case{"ct_llama_fp8_dynamic", false},
                       Case{"modelopt_llama_fp8", false}, Case{"ct_qwen2_int8_w8a8", true}}) {
    SCOPED_TRACE(c.name);
    engine::LoadedModel m = engine::load_model(fixture(c.name), {"", false, false}, registry);
    const int64_t H = m.config.hidden_size, q = m.config.num_heads * m.config.head_dim,
                  kv = m.config.num_kv_heads * m.config.head_dim;
    const std::vector<std::pair<std::string, int64_t>> parts = {
        {"model.layers.0.self_attn.q_proj", q},
        {"model.layers.0.self_attn.k_proj", kv},
        {"model.layers.0.self_attn.v_proj", kv}};
    models::W8Notices notices;
    std::vector<W8StoredWeight> ws;
    for (const auto& [prefix, n] : parts) ws.push_back(read_projection(m, prefix, n, H, notices));
    std::vector<const W8StoredWeight*> ptrs;
    for (const W8StoredWeight& w : ws) ptrs.push_back(&w);
    ASSERT_TRUE(models::w8_stackable(ptrs));
    kc::Stream stream;
    const kc::GpuLinear lin = models::make_w8_linear(ptrs, "qkv", options(16), stream.get());
    const int64_t n = q + 2 * kv;
    ASSERT_EQ(lin.n(), n);
    ASSERT_EQ(lin.k(), H);
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    if (c.int8) {
      ASSERT_EQ(lin.format(), GpuWeightFormat::kInt8W8A8);
      codes = to_host<uint8_t>(lin.int8_weight()->data(), size_t(n * H));
      scales = to_host<float>(lin.int8_weight()->scales(), size_t(n));
    } else {
      ASSERT_EQ(lin.format(), GpuWeightFormat::kFp8Rowwise);
      codes = to_host<uint8_t>(lin.fp8_weight()->data(), size_t(n * H));
      scales = to_host<float>(lin.fp8_weight()->scales(), size_t(n));
    }
    int64_t row = 0;
    for (const auto& [prefix, rows] : parts) {
      const TensorView* w = m.source->find(prefix + ".weight");
      ASSERT_NE(w, nullptr);
      ASSERT_EQ(w->nbytes, uint64_t(rows * H));
      EXPECT_TRUE(std::equal(w->data, w->data + rows * H, codes.begin() + row * H)) << prefix;
      const TensorView* s = m.source->find(prefix + ".weight_scale");
      ASSERT_NE(s, nullptr);
      const std::vector<float> file = *float_values(*s);
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(scales[size_t(row + r)], file.size() == 1 ? file[0] : file[size_t(r)])
            << prefix << " row " << r;
      row += rows;
    }
    std::printf("  %s: q/k/v codes (%lld bytes) equal the file's, scales equal\n", c.name,
                (long long)(n * H));
  }
}

// A [320, 384] FP8 layer with 128×128 block scales (HF "fp8" weight_block_size [128, 128]).
struct BlockLayer {
  int64_t n = 320, k = 384;  // 3 block rows (the last one partial) × 3 block columns
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  quant::LinearLayer layer;
  std::shared_ptr<quant::Fp8CheckpointMethod> method;

  explicit BlockLayer(std::mt19937& rng) {
    std::uniform_real_distribution<float> v(-448.0f, 448.0f), s(0.6e-3f, 1.7e-3f);
    codes.resize(size_t(n * k));
    for (auto& c : codes) c = f32_to_fp8(v(rng), true);
    scales.resize(9);
    for (auto& x : scales) x = s(rng);
    quant::Fp8Scheme scheme;
    scheme.scales = quant::Fp8Scheme::Scales::kBlock;
    scheme.block_n = scheme.block_k = 128;
    scheme.scale_suffix = "weight_scale_inv";
    scheme.act.kind = quant::ActQuant::Kind::kDynamic;
    scheme.act.group = 128;
    scheme.act.min_amax = 1e-4f;
    scheme.label = "block [128, 128]";
    method = std::make_shared<quant::Fp8CheckpointMethod>("fp8", scheme,
                                                          std::make_shared<std::once_flag>());
    layer.prefix = "model.layers.0.mlp.up_proj";
    layer.in_features = k;
    layer.out_features = n;
    layer.tensors["weight"] = {"weight", DType::F8_E4M3, {n, k}, codes.data(), codes.size()};
    layer.tensors["weight_scale_inv"] = {"weight_scale_inv",
                                         DType::F32,
                                         {3, 3},
                                         reinterpret_cast<const uint8_t*>(scales.data()),
                                         scales.size() * 4};
  }
};

TEST(W8Checkpoint, Block128LayerMatchesTheCpuMethod) {
  LOWBIT_REQUIRE_GPU();
  if (capability() < 89) GTEST_SKIP() << "FP8 W8A8 needs sm_89";
  std::mt19937 rng(11);
  BlockLayer b(rng);
  models::W8Notices notices;
  auto w = models::read_w8_checkpoint(b.layer, *b.method, notices);
  ASSERT_TRUE(w);
  EXPECT_TRUE(notices.empty());  // dynamic 1×128 activations: what the kernel does
  ASSERT_EQ(w->kind, W8StoredWeight::Kind::kFp8);
  ASSERT_EQ(w->scaling, kc::Fp8Scaling::kBlock128);
  const int64_t max_m = 32;
  kc::Stream stream;
  const kc::GpuLinear lin = models::make_w8_linear({&*w}, "up_proj", options(max_m), stream.get());
  ASSERT_EQ(lin.format(), GpuWeightFormat::kFp8Block);
  EXPECT_EQ(to_host<uint8_t>(lin.fp8_weight()->data(), b.codes.size()), b.codes);
  EXPECT_EQ(to_host<float>(lin.fp8_weight()->scales(), 9), b.scales);

  quant::LinearLayer cpu_layer = b.layer;
  b.method->process_weights_after_loading(cpu_layer);
  kc::GemmRunner gemm;
  kc::W8A8Runner w8a8;
  w8a8.reserve(max_m, b.k, b.n);
  kc::GpuLinearContext ctx;
  ctx.gemm = &gemm;
  ctx.w8a8 = &w8a8;
  for (int64_t m : {1, 5, 16, 32}) {
    SCOPED_TRACE(m);
    const std::vector<float> x = round_bf16(random_floats(size_t(m * b.k), rng));
    // The weight-only product in double (exact e4m3 · scale weights, unrounded x).
    std::vector<double> exact(size_t(m * b.n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < b.n; ++j) {
        double acc = 0;
        for (int64_t c = 0; c < b.k; ++c)
          acc += double(x[size_t(i * b.k + c)]) * fp8_e4m3_to_f32(b.codes[size_t(j * b.k + c)]) *
                 b.scales[size_t((j / 128) * 3 + c / 128)];
        exact[size_t(i * b.n + j)] = acc;
      }
    std::vector<float> cpu(size_t(m * b.n));
    b.method->apply(cpu_layer, x.data(), m, cpu.data());
    const std::vector<double> cpu_ref(cpu.begin(), cpu.end());
    const kc::DeviceBuffer dx = upload(to_bf16(x));
    kc::DeviceBuffer dy = poisoned(size_t(m * b.n) * 4);
    lin.forward(ctx, dx.get<__nv_bfloat16>(), b.k, nullptr, dy.get(), b.n, kc::OutType::kF32, m,
                stream.get());
    const std::vector<float> gpu = download<float>(dy, size_t(m * b.n));
    const double vs_cpu = rel_error(gpu, cpu_ref), vs_exact = rel_error(gpu, exact);
    std::printf("  block128 m=%-3lld %-16s vs CPU method %.2e, vs weight-only product %.2e\n",
                (long long)m, w8a8.last_path(), vs_cpu, vs_exact);
    const std::string path = w8a8.last_path();
    if (path == "gemv") {
      // Decode rows: bf16 activations, the exact weights, fp32 accumulation.
      EXPECT_LT(vs_exact, 1e-5);
    } else if (path == "dequant+bf16-gemm") {
      // cuBLASLt without a block-scaled algorithm: bf16 copies of W rows (<= 2^-9 each).
      EXPECT_LT(vs_exact, 4e-3);
    } else {
      // W8A8: the same e4m3 activations (same bf16 input, same amax / 448 scales) as the CPU's
      // emulation; left: the CPU's bf16 rounding of W (<= 2^-9 relative per weight).
      EXPECT_LT(vs_cpu, 4e-3);
      EXPECT_LT(vs_cpu * 4, vs_exact);  // it follows the activation rounding the CPU emulates
    }
  }
}

float top2_margin(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
  return s[0] - s[1];
}

// Greedy decode: through the CUDA graphs, or plain one-token forward steps.
std::vector<int32_t> gpu_greedy(models::CudaLlamaModel& gpu, const std::vector<int32_t>& prompt,
                                int steps, bool graphs) {
  std::vector<float> logits;
  gpu.reset_sequence(0);
  gpu.forward(0, prompt, false, logits);
  std::vector<int32_t> ids = {engine::argmax(logits)};
  for (int i = 1; i < steps; ++i) {
    int32_t in[1] = {ids.back()};
    if (graphs) {
      int seqs[1] = {0};
      int32_t next[1];
      gpu.decode_greedy(seqs, in, next);
      ids.push_back(next[0]);
    } else {
      gpu.forward(0, in, false, logits);
      ids.push_back(engine::argmax(logits));
    }
  }
  return ids;
}

size_t equal_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - b[i]));
  return d;
}

TEST(W8Checkpoint, TinyModelsMatchTheCpu) {
  LOWBIT_REQUIRE_GPU();
  if (capability() < 89) GTEST_SKIP() << "FP8 checkpoints need sm_89";
  const auto registry = quant::MethodRegistry::builtin();
  struct Case {
    const char* name;
    const char* qkv_kernel;  // what layer 0's q/k/v GEMM runs for a 16-token step
    double max_logit_error;  // ‖GPU − CPU‖ / ‖CPU‖ over the prefill logits
  };
  // Why the bounds are not ~1e-3 like the single block128 layer above: the CPU emulates the
  // activation rounding on fp32 activations, the GPU on the bf16 activations its kernels pass
  // on (bf16 models: within 3e-2 of the CPU, CudaModel.Stories260KMatchesCpu). A bf16
  // difference (2^-8 relative) moves an activation across an e4m3 rounding boundary (spacing
  // 2^-3 relative) about 3% of the time, and across an int8 one (amax/127, about 2^-7 of amax)
  // often, so the two sides round a few percent of the activations to neighbouring values: a
  // large fraction of the rounding noise of W8A8 itself, which these tiny random models
  // (hidden 64) amplify. Static-scale checkpoints run per-token scales on the GPU (notice),
  // i.e. another rounding of every activation; the [32, 32] block checkpoint runs a bf16
  // weight with unrounded activations. Measured on H100 (the run that set these bounds):
  // 0.089, 0.033, 0.127, 0.176, 0.089; bounds about 1.7x that. For scale, the test prints
  // the same comparison for the decode-step GEMV logits (weight-only: no activation rounding).
  const Case cases[] = {
      {"ct_llama_fp8_dynamic", "fp8_cublaslt", 0.15}, {"ct_qwen2_int8_w8a8", "int8_cublaslt", 0.06},
      {"fp8_llama_static", "fp8_cublaslt", 0.22},     {"modelopt_llama_fp8", "fp8_cublaslt", 0.3},
      {"fp8_llama_block", "bf16_cublaslt", 0.15},
  };
  const std::vector<int32_t> prompt = {1, 23, 45, 167, 289};
  const int steps = 16;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    engine::LoadedModel m = engine::load_model(fixture(c.name), {}, registry);
    kernels::cpu::set_exact_activations(true);
    // CPU greedy tokens (with the top-1 − top-2 margins) and the logits of prompt + tokens.
    auto cache = m.model->make_cache(64);
    std::vector<float> logits;
    std::vector<int32_t> cpu_ids;
    std::vector<float> margins;
    m.model->forward(prompt, cache, false, logits);
    for (int i = 0; i < steps; ++i) {
      cpu_ids.push_back(engine::argmax(logits));
      margins.push_back(top2_margin(logits));
      int32_t one[1] = {cpu_ids.back()};
      m.model->forward(one, cache, false, logits);
    }
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), cpu_ids.begin(), cpu_ids.end() - 1);
    auto cache2 = m.model->make_cache(64);
    std::vector<float> cpu_all;
    m.model->forward(seq, cache2, true, cpu_all);
    kernels::cpu::set_exact_activations(false);
    const std::vector<double> cpu_ref(cpu_all.begin(), cpu_all.end());

    models::CudaOptions opt;
    opt.max_context = 64;
    models::CudaLlamaModel gpu(m.config, *m.source, *m.quant, opt);
    std::string kernels16;
    for (const auto& [layer, k] : gpu.linear_kernels(16)) kernels16 += layer + "=" + k + " ";
    EXPECT_NE(kernels16.find(std::string("qkv_proj=") + c.qkv_kernel), std::string::npos)
        << kernels16;
    std::vector<float> gpu_all;
    gpu.forward(0, seq, true, gpu_all);  // one prefill step of 20 tokens: the W8A8 GEMMs
    const double err = rel_error(gpu_all, cpu_ref);
    EXPECT_LT(err, c.max_logit_error);
    // Baseline: the same tokens one at a time (decode GEMV: bf16 activations, not rounded).
    gpu.reset_sequence(0);
    std::vector<float> step, steps_all;
    for (int32_t t : seq) {
      int32_t one[1] = {t};
      gpu.forward(0, one, false, step);
      steps_all.insert(steps_all.end(), step.begin(), step.end());
    }
    const double err_weight_only = rel_error(steps_all, cpu_ref);

    // Greedy tokens with the decode steps on the W8A8 GEMM too (GEMV kernels disabled), so
    // both sides round activations as the scheme says: equal up to a first divergence where
    // the CPU's top-1 − top-2 margin is within the logit differences the prefill showed.
    setenv("LOWBIT_DISABLE_KERNELS", "fp8_gemv,fp8_weight_only,int8_gemv", 1);
    std::unique_ptr<models::CudaLlamaModel> w8;
    try {
      w8 = std::make_unique<models::CudaLlamaModel>(m.config, *m.source, *m.quant, opt);
    } catch (...) {
      unsetenv("LOWBIT_DISABLE_KERNELS");
      throw;
    }
    unsetenv("LOWBIT_DISABLE_KERNELS");
    const std::vector<int32_t> ids = gpu_greedy(*w8, prompt, steps, false);
    const size_t same = equal_prefix(ids, cpu_ids);
    const double tolerance = 2 * max_abs_diff(gpu_all, cpu_all);
    // The default kernels through the CUDA graphs (decode GEMV: unrounded activations).
    const size_t same_graphs = equal_prefix(gpu_greedy(gpu, prompt, steps, true), cpu_ids);
    std::printf(
        "  %-22s qkv %s; prefill logits rel. error %.3f (weight-only decode steps %.3f, max "
        "|diff| %.3f); greedy tokens equal: %zu/%d W8A8%s, %zu/%d default kernels + graphs\n",
        c.name, c.qkv_kernel, err, err_weight_only, tolerance / 2, same, steps,
        same < ids.size() ? fmt::format(" (CPU margin there {:.3f})", margins[same]).c_str() : "",
        same_graphs, steps);
    if (same < ids.size()) {
      EXPECT_LT(margins[same], tolerance) << "first divergence at step " << same;
    }
  }
}

}  // namespace
}  // namespace lowbit::test
