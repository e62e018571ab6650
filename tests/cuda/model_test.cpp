// The GPU Llama forward pass: stories260K against the CPU model (greedy tokens and logits),
// internal consistency on a random model with odd shapes (prefill vs step-by-step decode,
// CUDA-graph decode vs plain forward, batched vs single), FP8 KV caches, and the errors for
// contexts the cache cannot hold. Quantized: the tiny AWQ / GPTQ / compressed-tensors
// checkpoints and online int4 / int8 / fp8 against the CPU's greedy tokens (first divergence
// reported with the CPU's top-1 − top-2 logit margin there), random int4 / int8 / fp8 models
// (prefill vs decode vs graphs, and LOWBIT_DISABLE_KERNELS steering the kernels), and the same
// bits with programmatic dependent launch on and off.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "cuda_test_util.h"
#include "engine/generate.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "kernels/cpu/linear.h"
#include "models/llama_cuda.h"
#include "quant/registry.h"

namespace lowbit::test {
namespace {

std::vector<int32_t> greedy_cuda(models::CudaLlamaModel& m, std::vector<int32_t> prompt, int steps,
                                 bool graphs_path) {
  std::vector<float> logits;
  m.reset_sequence(0);
  m.forward(0, prompt, false, logits);
  std::vector<int32_t> out = {engine::argmax(logits)};
  for (int i = 1; i < steps; ++i) {
    if (graphs_path) {
      int seq[1] = {0};
      int32_t in[1] = {out.back()}, next[1];
      m.decode_greedy(seq, in, next);
      out.push_back(next[0]);
    } else {
      int32_t one[1] = {out.back()};
      m.forward(0, one, false, logits);
      out.push_back(engine::argmax(logits));
    }
  }
  return out;
}

TEST(CudaModel, Stories260KMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  if (!std::filesystem::exists(stories_dir() + "/config.json"))
    GTEST_SKIP() << "stories260K not found at " << stories_dir();
  auto registry = quant::MethodRegistry::builtin();
  engine::LoadedModel m = engine::load_model(stories_dir(), {}, registry);
  const int steps = 60;
  const std::vector<int32_t> prompt = {1};  // BOS

  // CPU reference: greedy ids and the logits of the prompt + ids.
  auto cache = m.model->make_cache(256);
  std::vector<float> cpu_logits;
  m.model->forward(prompt, cache, false, cpu_logits);
  std::vector<int32_t> cpu_ids = {engine::argmax(cpu_logits)};
  for (int i = 1; i < steps; ++i) {
    int32_t one[1] = {cpu_ids.back()};
    m.model->forward(one, cache, false, cpu_logits);
    cpu_ids.push_back(engine::argmax(cpu_logits));
  }

  models::CudaOptions opt;
  opt.max_context = 256;
  models::CudaLlamaModel gpu(m.config, *m.source, m.quant->name(), opt);
  auto gpu_ids = greedy_cuda(gpu, prompt, steps, false);
  auto graph_ids = greedy_cuda(gpu, prompt, steps, true);
  EXPECT_EQ(gpu_ids, cpu_ids);
  EXPECT_EQ(graph_ids, cpu_ids);

  // Logits of the whole sequence in one prefill vs the CPU's.
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), cpu_ids.begin(), cpu_ids.end() - 1);
  auto cpu_cache = m.model->make_cache(256);
  std::vector<float> cpu_all, gpu_all;
  m.model->forward(seq, cpu_cache, true, cpu_all);
  gpu.reset_sequence(0);
  gpu.forward(0, seq, true, gpu_all);
  std::vector<double> ref(cpu_all.begin(), cpu_all.end());
  EXPECT_LT(rel_error(gpu_all, ref), 3e-2);

  // FP8 KV caches (scales from the prompt): the logits stay close to the CPU's.
  for (const char* kv : {"fp8_e4m3", "fp8_e5m2"}) {
    models::CudaOptions o8 = opt;
    o8.kv_cache_dtype = kv;
    models::CudaLlamaModel gpu8(m.config, *m.source, m.quant->name(), o8);
    EXPECT_EQ(gpu8.kv_cache_dtype(), kv);
    std::vector<float> l8;
    gpu8.forward(0, seq, true, l8);
    auto [ks, vs] = gpu8.kv_scales(0);
    for (size_t h = 0; h < ks.size(); ++h) {
      EXPECT_GT(ks[h], 0.0f);
      EXPECT_GT(vs[h], 0.0f);
    }
    EXPECT_LT(rel_error(l8, ref), std::string(kv) == "fp8_e4m3" ? 0.1 : 0.2) << kv;
  }
}

models::ModelConfig odd_config() {
  models::ModelConfig c;
  c.architecture = "qwen3";
  c.vocab_size = 301;
  c.hidden_size = 96;
  c.intermediate_size = 172;
  c.num_layers = 3;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.rope_dim = 32;
  c.max_position = 4096;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.attention_bias = true;
  c.mlp_bias = true;
  c.qk_norm = true;
  c.tie_word_embeddings = false;
  return c;
}

TEST(CudaModel, PrefillDecodeGraphsAndBatchAgree) {
  LOWBIT_REQUIRE_GPU();
  for (const char* kv : {"bf16", "fp8"}) {
    models::CudaOptions opt;
    opt.kv_cache_dtype = kv;
    opt.max_sequences = 3;
    opt.max_step_tokens = 24;  // prompts of 40 tokens run as two chunks
    auto m = models::CudaLlamaModel::random(odd_config(), 5, opt);
    std::mt19937 rng(3);
    std::uniform_int_distribution<int32_t> tok(0, 300);
    std::vector<int32_t> prompt(40);
    for (auto& t : prompt) t = tok(rng);

    // Whole prompt at once (all logits) vs one token at a time.
    std::vector<float> all, one, step;
    m->forward(0, prompt, true, all);
    m->reset_sequence(0);
    std::vector<double> ref;
    for (size_t i = 0; i < prompt.size(); ++i) {
      int32_t t[1] = {prompt[i]};
      m->forward(0, t, false, step);
      ref.insert(ref.end(), step.begin(), step.end());
    }
    std::vector<float> all_f(all.begin(), all.end());
    // Prefill and decode attention kernels round differently in bf16 (measured 1.0003e-2 after
    // the decode-kernel rewrite of b1e87fb).
    EXPECT_LT(rel_error(all_f, ref), std::string(kv) == "bf16" ? 1.5e-2 : 5e-2) << kv;

    // Three sequences: prompts of different lengths, then batched graph decode vs singles.
    std::vector<std::vector<int32_t>> prompts = {
        {prompt.begin(), prompt.begin() + 5}, {prompt.begin(), prompt.end()}, {7, 8, 9}};
    std::vector<int32_t> last(3);
    for (int s = 0; s < 3; ++s) {
      m->reset_sequence(s);
      m->forward(s, prompts[size_t(s)], false, step);
      last[size_t(s)] = engine::argmax(step);
    }
    std::vector<std::vector<int32_t>> batched(3);
    int seqs[3] = {0, 1, 2};
    for (int i = 0; i < 6; ++i) {
      std::vector<int32_t> next(3);
      m->decode_greedy(seqs, last, next);
      for (int s = 0; s < 3; ++s) batched[size_t(s)].push_back(next[size_t(s)]);
      last = next;
    }
    for (int s = 0; s < 3; ++s) {
      m->reset_sequence(s);
      m->forward(s, prompts[size_t(s)], false, step);
      int32_t cur = engine::argmax(step);
      for (int i = 0; i < 6; ++i) {
        int32_t t[1] = {cur};
        m->forward(s, t, false, step);
        cur = engine::argmax(step);
        EXPECT_EQ(cur, batched[size_t(s)][size_t(i)]) << kv << " seq " << s << " step " << i;
      }
      EXPECT_EQ(m->sequence_length(s), int64_t(prompts[size_t(s)].size()) + 6);
    }
  }
}

TEST(CudaModel, ClearErrorsForContextAndOptions) {
  LOWBIT_REQUIRE_GPU();
  models::CudaOptions opt;
  opt.max_context = 64;
  auto m = models::CudaLlamaModel::random(odd_config(), 1, opt);
  std::vector<int32_t> prompt(65, 3);
  std::vector<float> logits;
  try {
    m->forward(0, prompt, false, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("65 tokens exceeds the maximum context of 64"),
              std::string::npos)
        << e.what();
  }
  // Two sequences share a pool sized for... one at full length when memory is the limit is
  // hard to force; an invalid token id and unknown KV dtype must be refused.
  std::vector<int32_t> bad = {301};
  EXPECT_THROW(m->forward(0, bad, false, logits), Error);
  opt.kv_cache_dtype = "int3";
  EXPECT_THROW(models::CudaLlamaModel::random(odd_config(), 1, opt), Error);
  opt.kv_cache_dtype = "auto";
  opt.gpu_memory_utilization = 1e-4;  // less than the weights already use
  try {
    models::CudaLlamaModel::random(odd_config(), 1, opt);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache"), std::string::npos) << e.what();
  }
}

// ---- quantized models -------------------------------------------------------------------

struct Greedy {
  std::vector<int32_t> ids;
  std::vector<float> margins;  // top-1 − top-2 logit at each step
};

float top2_margin(const std::vector<float>& logits) {
  float a = -INFINITY, b = -INFINITY;
  for (float v : logits) {
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) {
      b = v;
    }
  }
  return a - b;
}

// The CPU model with exact fp32 activations (the weights' own product, as on the GPU).
Greedy cpu_greedy(const engine::LoadedModel& m, const std::vector<int32_t>& prompt, int steps) {
  kernels::cpu::set_exact_activations(true);
  Greedy g;
  auto cache = m.model->make_cache(int64_t(prompt.size()) + steps + 1);
  std::vector<float> logits;
  m.model->forward(prompt, cache, false, logits);
  for (int i = 0; i < steps; ++i) {
    g.ids.push_back(engine::argmax(logits));
    g.margins.push_back(top2_margin(logits));
    int32_t one[1] = {g.ids.back()};
    m.model->forward(one, cache, false, logits);
  }
  kernels::cpu::set_exact_activations(false);
  return g;
}

// Same tokens, or a first divergence where the CPU itself hesitated (margin <= max_margin).
void expect_same_greedy(const std::string& name, const Greedy& cpu, const std::vector<int32_t>& gpu,
                        float max_margin) {
  ASSERT_EQ(cpu.ids.size(), gpu.size());
  for (size_t i = 0; i < gpu.size(); ++i)
    if (cpu.ids[i] != gpu[i]) {
      std::printf("  %-34s first divergence at step %zu: CPU %d, GPU %d, CPU logit margin %.4f\n",
                  name.c_str(), i, cpu.ids[i], gpu[i], cpu.margins[i]);
      EXPECT_LE(cpu.margins[i], max_margin)
          << name << ": GPU token " << gpu[i] << " at step " << i << " where the CPU chose "
          << cpu.ids[i] << " by a margin of " << cpu.margins[i];
      return;
    }
  std::printf("  %-34s %zu/%zu greedy tokens equal (smallest CPU margin %.4f)\n", name.c_str(),
              gpu.size(), gpu.size(), *std::min_element(cpu.margins.begin(), cpu.margins.end()));
}

std::string kernels_at(const models::CudaLlamaModel& m, int64_t rows) {
  std::string s;
  for (const auto& [layer, k] : m.linear_kernels(rows)) s += layer + "=" + k + " ";
  return s;
}

TEST(CudaModel, QuantizedCheckpointsGreedyMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  auto registry = quant::MethodRegistry::builtin();
  const std::vector<int32_t> prompt = {1, 23, 45, 167, 289};  // inside every vocabulary (300)
  const int steps = 24;
  struct Fixture {
    const char* dir;
    bool all_wq_kernels;  // every quantized shape fits the wq kernels (no bf16 fallback)
  };
  const Fixture fixtures[] = {
      {"tiny_quant/awq_llama", true},
      {"tiny_quant/ct_llama_w4a16_asym", true},
      {"tiny_quant/ct_qwen2_w8a16", true},
      {"tiny_quant/gptq_llama_3bit_v2", true},
      {"tiny_quant/gptq_llama_8bit_sym", true},
      {"tiny_quant/gptq_qwen2_act_order", true},
      {"quantized/awq_w4_g32_gemm", false},  // hidden 64 / intermediate 172: some fall back
      {"quantized/ct_gptq_w4a16_g32_bf16", false},
      {"quantized/ct_rtn_w8a16_channel", false},
      {"quantized/gptq_w4_g32_sym_descact", false},
      {"quantized/gptq_w8_g32_sym_descact", false},
  };
  for (const Fixture& f : fixtures) {
    const std::string path = std::string(LOWBIT_SOURCE_DIR) + "/tests/fixtures/" + f.dir;
    engine::LoadedModel m = engine::load_model(path, {}, registry);
    const Greedy cpu = cpu_greedy(m, prompt, steps);
    models::CudaOptions opt;
    opt.max_context = 64;
    models::CudaLlamaModel gpu(m.config, *m.source, *m.quant, opt);
    const std::string used = kernels_at(gpu, 1);
    std::printf("  %s: %s\n", f.dir, used.c_str());
    // At m = 1 int4 and int8 weights run the decode GEMV wq_gemv.
    if (f.all_wq_kernels)
      EXPECT_TRUE(used.find("qkv_proj=wq_gemm") != std::string::npos ||
                  used.find("qkv_proj=wq_gemv") != std::string::npos)
          << f.dir << ": " << used;
    auto ids = greedy_cuda(gpu, prompt, steps, true);
    expect_same_greedy(f.dir, cpu, ids, 0.1f);
    // Prefill of the prompt + tokens in one step (larger m) gives the same logits as decode.
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), ids.begin(), ids.end() - 1);
    std::vector<float> all;
    gpu.reset_sequence(0);
    gpu.forward(0, seq, true, all);
    const int64_t V = m.config.vocab_size;
    for (int i = 0; i < steps; ++i) {
      std::vector<float> row(all.begin() + (int64_t(prompt.size()) - 1 + i) * V,
                             all.begin() + (int64_t(prompt.size()) + i) * V);
      if (engine::argmax(row) != ids[size_t(i)])
        EXPECT_LT(top2_margin(row), 0.1f) << f.dir << " prefill vs decode at step " << i;
    }
  }
}

TEST(CudaModel, OnlineQuantizationGreedyMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  if (!std::filesystem::exists(stories_dir() + "/config.json"))
    GTEST_SKIP() << "stories260K not found at " << stories_dir();
  auto registry = quant::MethodRegistry::builtin();
  const std::vector<int32_t> prompt = {1};
  const int steps = 40;
  models::CudaOptions opt;
  opt.max_context = 128;
  for (const char* method : {"int4", "int8"}) {
    engine::LoadedModel m = engine::load_model(stories_dir(), {method}, registry);
    const Greedy cpu = cpu_greedy(m, prompt, steps);
    models::CudaLlamaModel gpu(m.config, *m.source, *m.quant, opt);
    std::printf("  stories260K %s: %s\n", method, kernels_at(gpu, 1).c_str());
    expect_same_greedy(std::string("stories260K --quantization ") + method, cpu,
                       greedy_cuda(gpu, prompt, steps, true), 0.1f);
  }
  // fp8 has no CPU kernels: the CPU load refuses it naming --device cuda; the GPU model is
  // compared with the unquantized CPU model (a different weight: a looser margin).
  try {
    engine::load_model(stories_dir(), {"fp8"}, registry);
    FAIL() << "expected the CPU to refuse fp8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
  const auto d = engine::cuda_devices();
  if (d.front().cc_major * 10 + d.front().cc_minor < 89) GTEST_SKIP() << "fp8 needs sm_89";
  engine::LoadedModel ref = engine::load_model(stories_dir(), {}, registry);
  const Greedy cpu = cpu_greedy(ref, prompt, steps);
  engine::LoadedModel m = engine::load_model(stories_dir(), {"fp8", false, false}, registry);
  ASSERT_EQ(m.model, nullptr);
  models::CudaLlamaModel gpu(m.config, *m.source, *m.quant, opt);
  std::printf("  stories260K fp8: %s\n", kernels_at(gpu, 1).c_str());
  expect_same_greedy("stories260K --quantization fp8 vs f32", cpu,
                     greedy_cuda(gpu, prompt, steps, true), 1.0f);
}

models::ModelConfig small_config() {
  models::ModelConfig c = odd_config();
  c.hidden_size = 128;  // shapes the wq / fp8 kernels take: n % 64, k % 32
  c.intermediate_size = 256;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  return c;
}

TEST(CudaModel, RandomQuantizedModelsAgreeAcrossPaths) {
  LOWBIT_REQUIRE_GPU();
  const auto d = engine::cuda_devices();
  const bool fp8 = d.front().cc_major * 10 + d.front().cc_minor >= 89;
  for (const char* weights : {"int4", "int8", "fp8"}) {
    if (std::string(weights) == "fp8" && !fp8) continue;
    models::CudaOptions opt;
    opt.max_sequences = 2;
    opt.max_step_tokens = 64;
    auto m = models::CudaLlamaModel::random(small_config(), 5, opt, weights);
    std::mt19937 rng(3);
    std::uniform_int_distribution<int32_t> tok(0, 300);
    std::vector<int32_t> prompt(40);
    for (auto& t : prompt) t = tok(rng);
    std::vector<float> all, step;
    m->forward(0, prompt, true, all);
    m->reset_sequence(0);
    std::vector<double> ref;
    for (int32_t t : prompt) {
      int32_t one[1] = {t};
      m->forward(0, one, false, step);
      ref.insert(ref.end(), step.begin(), step.end());
    }
    // fp8: steps of 1 token use the GEMV (bf16 activations), the prefill quantizes them.
    EXPECT_LT(rel_error(all, ref), std::string(weights) == "fp8" ? 0.1 : 1e-2) << weights;
    // Graph decode vs plain forward.
    m->reset_sequence(0);
    auto graphs = greedy_cuda(*m, {prompt.begin(), prompt.begin() + 8}, 8, true);
    auto plain = greedy_cuda(*m, {prompt.begin(), prompt.begin() + 8}, 8, false);
    EXPECT_EQ(graphs, plain) << weights;
    EXPECT_LT(m->weight_bytes_per_token(),
              models::CudaLlamaModel::random(small_config(), 5, opt)->weight_bytes_per_token())
        << weights;
  }

  // LOWBIT_DISABLE_KERNELS reaches the model: without wq_gemv and wq_gemm the dequantize path
  // runs, with the same result.
  models::CudaOptions opt;
  opt.max_step_tokens = 64;
  auto a = models::CudaLlamaModel::random(small_config(), 9, opt, "int4");
  setenv("LOWBIT_DISABLE_KERNELS", "wq_gemv,wq_gemm", 1);
  std::unique_ptr<models::CudaLlamaModel> b;
  try {
    b = models::CudaLlamaModel::random(small_config(), 9, opt, "int4");
  } catch (...) {
    unsetenv("LOWBIT_DISABLE_KERNELS");
    throw;
  }
  unsetenv("LOWBIT_DISABLE_KERNELS");
  EXPECT_NE(kernels_at(*a, 1).find("qkv_proj=wq_gemv"), std::string::npos) << kernels_at(*a, 1);
  EXPECT_NE(kernels_at(*b, 1).find("qkv_proj=wq_dequant_cublaslt"), std::string::npos)
      << kernels_at(*b, 1);
  std::vector<int32_t> prompt = {5, 17, 99, 3, 250, 7};
  std::vector<float> la, lb;
  a->forward(0, prompt, true, la);
  b->forward(0, prompt, true, lb);
  std::vector<double> ref(lb.begin(), lb.end());
  EXPECT_LT(rel_error(la, ref), 1e-2);

  // Unknown names are refused.
  setenv("LOWBIT_DISABLE_KERNELS", "marlin", 1);
  EXPECT_THROW(models::CudaLlamaModel::random(small_config(), 9, opt, "int4"), Error);
  unsetenv("LOWBIT_DISABLE_KERNELS");
  EXPECT_THROW(models::CudaLlamaModel::random(small_config(), 9, opt, "int3"), Error);
}

// Programmatic dependent launch changes when kernels start, never what they compute: the same
// random model run with it (the default) and without (LOWBIT_PDL=0) gives bit-identical
// prefill logits, single-token logits and graph-decoded tokens, for every weight format.
TEST(CudaModel, ProgrammaticLaunchChangesNoBits) {
  LOWBIT_REQUIRE_GPU();
  const auto d = engine::cuda_devices();
  const bool fp8 = d.front().cc_major * 10 + d.front().cc_minor >= 89;
  for (const char* weights : {"bf16", "int4", "int8", "fp8"}) {
    if (std::string(weights) == "fp8" && !fp8) continue;
    struct Run {
      std::vector<float> prefill, steps;
      std::vector<int32_t> graph_ids;
    };
    auto run = [&](bool pdl) {
      if (!pdl) setenv("LOWBIT_PDL", "0", 1);
      Run r;
      try {
        models::CudaOptions opt;
        opt.max_step_tokens = 64;
        auto m = models::CudaLlamaModel::random(small_config(), 11, opt, weights);
        const std::vector<int32_t> prompt = {5, 17, 99, 3, 250, 7, 42, 1, 300, 64, 9, 128};
        m->forward(0, prompt, true, r.prefill);
        std::vector<float> step;
        for (int32_t t : {11, 22, 33}) {
          int32_t one[1] = {t};
          m->forward(0, one, false, step);
          r.steps.insert(r.steps.end(), step.begin(), step.end());
        }
        r.graph_ids = greedy_cuda(*m, prompt, 8, true);
      } catch (...) {
        unsetenv("LOWBIT_PDL");
        throw;
      }
      unsetenv("LOWBIT_PDL");
      return r;
    };
    const Run on = run(true), off = run(false);
    EXPECT_EQ(on.prefill, off.prefill) << weights;
    EXPECT_EQ(on.steps, off.steps) << weights;
    EXPECT_EQ(on.graph_ids, off.graph_ids) << weights;
  }
}

}  // namespace
}  // namespace lowbit::test
