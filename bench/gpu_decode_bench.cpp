// Decode speed of the CUDA backend on a synthetic Llama-3-8B-shaped model (random weights:
// bf16 generated on the GPU; int4 / int8 random codes packed for the W4A16 / W8A16 kernels;
// fp8 random bf16 quantized on the GPU, rowwise), against the memory-bandwidth bound measured
// in the same run:
//   bound = (weight bytes + batch · context · KV bytes per token) / device-to-device copy rate
// (weight bytes: what the step's GEMMs read, i.e. the quantized linear weights + bf16 lm_head).
// Also times the paged-attention kernel alone on decode shapes (compare with
// bench/gpu_sdpa_baseline.py, PyTorch SDPA on the same shapes).
//
//   gpu_decode_bench [--quick] [--batches 1,8,16] [--contexts 128,4096] [--steps 32]
//                    [--weights bf16,int4,int8,fp8] [--kv bf16,fp8_e4m3]
//                    [--attention-batches 1,8,32,64] [--attention-only] [--profile-steps N]
// --profile-steps N brackets the first N timed steps of each configuration with
// cudaProfilerStart/Stop, for `ncu --profile-from-start off` (per-kernel times of a step).
#include <cuda_bf16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/common/pdl.h"
#include "kernels/cuda/ops/elementwise.h"
#include "models/llama_cuda.h"

using namespace lowbit;
namespace kc = lowbit::kernels::cuda;

namespace {

models::ModelConfig llama3_8b() {
  models::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.rope_dim = 128;
  c.max_position = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.rope_scaling.type = models::RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8;
  c.tie_word_embeddings = false;
  return c;
}

// Device-to-device copy rate, bytes read + written per second (median of 20).
double copy_bandwidth() {
  const size_t bytes = size_t(2) << 30;
  kc::DeviceBuffer a(bytes, "bandwidth test"), b(bytes, "bandwidth test");
  kc::fill_uniform(a.get<__nv_bfloat16>(), int64_t(bytes / 2), 1, 1.0f, nullptr);
  cudaEvent_t e0, e1;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&e0));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> rates;
  for (int i = 0; i < 23; ++i) {
    LOWBIT_CUDA_CHECK(cudaEventRecord(e0));
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
    LOWBIT_CUDA_CHECK(cudaEventRecord(e1));
    LOWBIT_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) rates.push_back(2.0 * double(bytes) / (ms * 1e-3));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

std::vector<std::string> parse_names(const char* s) {
  std::vector<std::string> v;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || !*p) {
      if (!cur.empty()) v.push_back(cur);
      cur.clear();
      if (!*p) break;
    } else {
      cur += *p;
    }
  }
  return v;
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Row {
  std::string weights, kv;
  int64_t batch, ctx;
  double step_ms, tok_s, bound_ms, pct;
};

// Attention alone: batch decode queries over contexts of `ctx` tokens, one layer, µs per call.
double attention_us(kc::KvDtype dtype, int64_t batch, int64_t ctx, int sms) {
  const int heads = 32, kv_heads = 8, hd = 128, bs = 16;
  const int64_t blocks_per_seq = (ctx + bs - 1) / bs, num_blocks = batch * blocks_per_seq;
  const size_t elems = size_t(num_blocks) * kv_heads * bs * hd;
  const int eb = kc::kv_dtype_bytes(dtype);
  kc::DeviceBuffer k(elems * eb, "bench K"), v(elems * eb, "bench V");
  if (dtype == kc::KvDtype::kBf16) {
    kc::fill_uniform(k.get<__nv_bfloat16>(), int64_t(elems), 3, 1.0f, nullptr);
    kc::fill_uniform(v.get<__nv_bfloat16>(), int64_t(elems), 4, 1.0f, nullptr);
  } else {
    kc::fill_random_fp8(k.get<uint8_t>(), int64_t(elems), 3, nullptr);
    kc::fill_random_fp8(v.get<uint8_t>(), int64_t(elems), 4, nullptr);
  }
  std::vector<int32_t> table(static_cast<size_t>(num_blocks)), seq(static_cast<size_t>(batch)),
      lens(static_cast<size_t>(batch), static_cast<int32_t>(ctx));
  std::iota(table.begin(), table.end(), 0);
  std::iota(seq.begin(), seq.end(), 0);
  kc::DeviceBuffer d_table(table.size() * 4, "t"), d_seq(seq.size() * 4, "s"),
      d_len(lens.size() * 4, "l");
  kc::copy_to_device(d_table.get(), table.data(), table.size() * 4);
  kc::copy_to_device(d_seq.get(), seq.data(), seq.size() * 4);
  kc::copy_to_device(d_len.get(), lens.data(), lens.size() * 4);
  kc::DeviceBuffer q(size_t(batch) * heads * hd * 2, "q"), out(size_t(batch) * heads * hd * 2, "o");
  kc::fill_uniform(q.get<__nv_bfloat16>(), batch * heads * hd, 5, 1.0f, nullptr);
  const float one = 1.0f / 16;
  kc::DeviceBuffer scales(8, "scales");
  float sc[2] = {one, one};
  kc::copy_to_device(scales.get(), sc, 8);
  const int32_t splits = kc::attention_splits(batch, heads, kv_heads, ctx, sms);
  kc::DeviceBuffer ws(
      size_t(std::max<int64_t>(1, kc::attention_workspace_floats(batch, heads, hd, splits))) * 4,
      "ws");
  kc::PagedKvLayer c;
  c.k = k.get();
  c.v = v.get();
  c.k_scale = scales.get<float>();
  c.v_scale = scales.get<float>() + 1;
  c.dtype = dtype;
  c.num_blocks = int32_t(num_blocks);
  c.num_kv_heads = kv_heads;
  c.block_size = bs;
  c.head_dim = hd;
  kc::AttentionArgs a;
  a.q = q.get<__nv_bfloat16>();
  a.q_stride = heads * hd;
  a.out = out.get<__nv_bfloat16>();
  a.n = batch;
  a.num_heads = heads;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.token_seq = d_seq.get<int32_t>();
  a.ctx_lens = d_len.get<int32_t>();
  a.block_tables = d_table.get<int32_t>();
  a.max_blocks_per_seq = int32_t(blocks_per_seq);
  a.num_splits = splits;
  a.workspace = ws.get<float>();
  for (int i = 0; i < 10; ++i) kc::paged_attention(a, c, nullptr);
  cudaEvent_t e0, e1;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&e0));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    LOWBIT_CUDA_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < 50; ++i) kc::paged_attention(a, c, nullptr);
    LOWBIT_CUDA_CHECK(cudaEventRecord(e1));
    LOWBIT_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1e3 / 50);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return median(t);
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<int64_t> batches = {1, 8, 16}, contexts = {128, 4096};
  int steps = 32;
  std::vector<int64_t> attn_batches = {1, 8, 32, 64};
  bool attention_only = false;
  int profile_steps = 0;
  std::vector<std::string> weight_kinds = {"bf16"}, kv_kinds = {"bf16", "fp8_e4m3"};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) {
      batches = {1};
      steps = 12;
    } else if (!std::strcmp(argv[i], "--batches") && i + 1 < argc) {
      batches = parse_list(argv[++i]);
    } else if (!std::strcmp(argv[i], "--contexts") && i + 1 < argc) {
      contexts = parse_list(argv[++i]);
    } else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--attention-batches") && i + 1 < argc) {
      attn_batches = parse_list(argv[++i]);
    } else if (!std::strcmp(argv[i], "--weights") && i + 1 < argc) {
      weight_kinds = parse_names(argv[++i]);
    } else if (!std::strcmp(argv[i], "--kv") && i + 1 < argc) {
      kv_kinds = parse_names(argv[++i]);
    } else if (!std::strcmp(argv[i], "--profile-steps") && i + 1 < argc) {
      profile_steps = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--attention-only")) {
      attention_only = true;
    }
  }
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double bw = copy_bandwidth();
  std::printf(
      "device: %s, %d SMs; device-to-device copy %.0f GB/s (read + write); programmatic "
      "dependent launch %s\n",
      prop.name, prop.multiProcessorCount, bw / 1e9, kc::pdl_enabled() ? "on" : "off");

  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  const int64_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
  std::vector<Row> rows;
  for (const std::string& weights : weight_kinds)
    for (const std::string& kv : kv_kinds) {
      if (attention_only) break;
      models::CudaOptions opt;
      opt.kv_cache_dtype = kv;
      opt.max_sequences = max_batch;
      opt.max_context = max_ctx + steps + 16;
      opt.max_step_tokens = 256;
      const auto t_load = std::chrono::steady_clock::now();
      auto m = models::CudaLlamaModel::random(llama3_8b(), 42, opt, weights);
      m->fill_kv_cache_random(7);
      std::printf(
          "%s weights: %s | weights read per step %.2f GB | KV %llu bytes/token | made in "
          "%.1f s\n",
          weights.c_str(), m->describe().c_str(), double(m->weight_bytes_per_token()) / 1e9,
          (unsigned long long)m->kv_bytes_per_token(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
      for (int64_t B : batches) {
        std::string k;
        for (const auto& [layer, name] : m->linear_kernels(B)) k += " " + layer + "=" + name;
        std::printf("  kernels at batch %lld:%s\n", (long long)B, k.c_str());
      }
      for (int64_t B : batches)
        for (int64_t ctx : contexts) {
          std::vector<int> seqs(static_cast<size_t>(B));
          std::vector<int32_t> tok(static_cast<size_t>(B)), next(static_cast<size_t>(B));
          for (int64_t s = 0; s < B; ++s) {
            seqs[size_t(s)] = int(s);
            m->reset_sequence(int(s));
            m->assume_cached_context(int(s), ctx);
            tok[size_t(s)] = int32_t((s * 7919 + 13) % 128256);
          }
          for (int i = 0; i < 3; ++i) {  // warm-up, graph capture
            m->decode_greedy(seqs, tok, next);
            tok = next;
          }
          std::vector<double> ms;
          for (int i = 0; i < steps; ++i) {
            if (i == 0 && profile_steps > 0) LOWBIT_CUDA_CHECK(cudaProfilerStart());
            if (i == profile_steps && profile_steps > 0) LOWBIT_CUDA_CHECK(cudaProfilerStop());
            auto t0 = std::chrono::steady_clock::now();
            m->decode_greedy(seqs, tok, next);
            ms.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
            tok = next;
          }
          const double step = median(ms);
          const double bytes =
              double(m->weight_bytes_per_token()) +
              double(B) * double(ctx + 3 + steps / 2) * double(m->kv_bytes_per_token());
          const double bound = bytes / bw * 1e3;
          rows.push_back(
              {weights, kv, B, ctx, step, double(B) * 1e3 / step, bound, 100.0 * bound / step});
        }
    }

  // Attention alone: bytes = the K and V of every context position (q and out are noise).
  // "% copy" is that rate over the copy rate above; FP8 rows give their speedup over bf16.
  std::printf("\nattention only (32 q heads, 8 kv heads, head_dim 128, one layer, us per call):\n");
  std::printf("%-9s %6s %6s %10s %10s %8s %9s\n", "kv", "batch", "ctx", "us", "GB/s", "% copy",
              "vs bf16");
  for (int64_t B : attn_batches)
    for (int64_t ctx : contexts) {
      double bf16_us = 0;
      for (kc::KvDtype d : {kc::KvDtype::kBf16, kc::KvDtype::kFp8E4M3, kc::KvDtype::kFp8E5M2}) {
        const double us = attention_us(d, B, ctx, prop.multiProcessorCount);
        const double bytes = double(B * ctx) * 8 * 128 * 2 * kc::kv_dtype_bytes(d);
        const double rate = bytes / (us * 1e-6);
        if (d == kc::KvDtype::kBf16) bf16_us = us;
        std::printf("%-9s %6lld %6lld %10.1f %10.0f %7.1f%% %8.2fx\n", kc::kv_dtype_name(d),
                    (long long)B, (long long)ctx, us, rate / 1e9, 100.0 * rate / bw, bf16_us / us);
      }
    }

  std::printf("\ndecode, synthetic Llama-3-8B, CUDA graphs, greedy on GPU:\n");
  std::printf("%-8s %-9s %6s %6s %10s %10s %10s %8s %9s\n", "weights", "kv", "batch", "ctx",
              "step ms", "tok/s", "bound ms", "% bound", "vs bf16");
  for (const auto& r : rows) {
    double base = 0;
    for (const auto& b : rows)
      if (b.weights == "bf16" && b.kv == r.kv && b.batch == r.batch && b.ctx == r.ctx)
        base = b.tok_s;
    std::printf("%-8s %-9s %6lld %6lld %10.3f %10.1f %10.3f %7.1f%% %8.2fx\n", r.weights.c_str(),
                r.kv.c_str(), (long long)r.batch, (long long)r.ctx, r.step_ms, r.tok_s, r.bound_ms,
                r.pct, base > 0 ? r.tok_s / base : 0.0);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_decode_bench: error: %s\n", e.what());
  return 1;
}
