#include "models/llama_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "core/error.h"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/gpu_linear.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "kernels/cuda/ops/elementwise.h"
#include "kernels/cuda/ops/sampling.h"
#include "models/kv_scales.h"
#include "models/llama_weights_cuda.h"
#include "models/w8_checkpoint_cuda.h"
#include "models/weight_source.h"
#include "quant/registry.h"
#include "quant/weight_only_method.h"

namespace lowbit::models {
namespace {

namespace kc = kernels::cuda;
using kc::bf16;
using kc::DeviceBuffer;
using namespace llama_weights;

constexpr int64_t kBlockSize = 16;  // tokens per KV block

kc::KvDtype parse_kv_dtype(const std::string& s, bool checkpoint_has_scales) {
  if (s == "auto") return checkpoint_has_scales ? kc::KvDtype::kFp8E4M3 : kc::KvDtype::kBf16;
  if (s == "bf16") return kc::KvDtype::kBf16;
  if (s == "fp8" || s == "fp8_e4m3") return kc::KvDtype::kFp8E4M3;
  if (s == "fp8_e5m2") return kc::KvDtype::kFp8E5M2;
  fail("--kv-cache-dtype '{}' is not known; expected auto, bf16, fp8, fp8_e4m3 or fp8_e5m2", s);
}

// Per-step metadata, one int32 array of kMetaFields segments of max_step entries each.
enum MetaField { kTokens, kPositions, kSlots, kTokenSeq, kCtxLens, kMetaFields };

}  // namespace

struct CudaLlamaModel::Impl {
  ModelConfig cfg;
  CudaOptions opt;
  kc::KvDtype kv_dtype = kc::KvDtype::kBf16;
  engine::KvScaleGranularity kv_granularity = engine::KvScaleGranularity::kTensor;
  bool kv_scales_from_checkpoint = false;
  int sms = 0;
  int64_t qkv_width = 0, q_width = 0, kv_width = 0, max_context = 0, max_blocks_per_seq = 0;
  kc::Stream stream;
  kc::GemmRunner gemm;
  kc::W8A8Runner w8a8;
  kc::GpuLinearOptions linear_options;  // capability, LOWBIT_DISABLE_KERNELS, rows per step
  DeviceBuffer dequant_scratch;         // bf16, for wq_dequant_cublaslt (large steps)
  W8Notices w8_notices;                 // 8-bit checkpoint notices printed for this model
  std::vector<DeviceBuffer> owned;      // every weight allocation
  uint64_t weight_bytes = 0, weight_bytes_per_token = 0;

  // One GEMM of a layer: `lin` writes output columns [col, col + lin.n()) of its group's
  // output. A group (q/k/v, gate/up, o, down) is one part when its weights could be fused.
  struct Part {
    kc::GpuLinear lin;
    int64_t col = 0;
  };
  using Group = std::vector<Part>;

  struct Layer {
    Group qkv, o, gate_up, down;
    float *qkv_b = nullptr, *o_b = nullptr, *gate_up_b = nullptr, *down_b = nullptr;
    float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
  };
  std::vector<Layer> layers;
  bf16 *embedding = nullptr, *lm_head = nullptr;
  // The logits GEMM when the method quantizes lm_head (online int4/int8 keep it at int8, as
  // the CPU does); empty = the bf16 `lm_head` above.
  Group lm_head_q;
  float *final_norm = nullptr, *inv_freq = nullptr;

  // KV cache pool: k and v each [layers, blocks, kv_heads, block_size, head_dim].
  int64_t num_blocks = 0;
  uint64_t layer_pool_bytes = 0;
  DeviceBuffer k_pool, v_pool, kv_scales;  // kv_scales: [2, layers, kv_heads] (k then v)
  bool scales_ready = false;
  std::vector<int32_t> free_blocks;
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t length = 0;
  };
  std::vector<Seq> seqs;
  std::vector<int32_t> block_tables;  // [max_sequences, max_blocks_per_seq]

  // Step buffers.
  int64_t max_step = 0, logit_rows = 0;
  DeviceBuffer meta, d_block_tables, x, h, qkv, attn, gate_up, act, delta, logits, ids, workspace,
      amax;
  int64_t workspace_floats = 0;
  kc::PinnedBuffer h_meta, h_ids, h_uniforms;
  DeviceBuffer uniforms;        // [max_sequences] one uniform per sampled sequence
  DeviceBuffer argmax_scratch;  // kc::argmax_rows' partial results, zeroed once
  std::vector<float> host_logits_tmp;

  struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<int64_t, Graph> graphs;  // by batch size

  ~Impl() {
    for (auto& [n, g] : graphs) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
      if (g.graph) cudaGraphDestroy(g.graph);
    }
  }

  template <typename T>
  T* alloc(int64_t elems, const std::string& what) {
    owned.emplace_back(size_t(elems) * sizeof(T), what);
    weight_bytes += uint64_t(elems) * sizeof(T);
    return owned.back().get<T>();
  }

  void init_shapes(const ModelConfig& c, const CudaOptions& o) {
    cfg = c;
    opt = o;
    if (opt.max_sequences < 1) fail("max sequences is {}, expected >= 1", opt.max_sequences);
    if (opt.max_step_tokens < 1) fail("max step tokens is {}, expected >= 1", opt.max_step_tokens);
    if (!(opt.gpu_memory_utilization > 0 && opt.gpu_memory_utilization <= 1))
      fail("--gpu-memory-utilization is {}, expected a fraction in (0, 1]",
           opt.gpu_memory_utilization);
    if (c.head_dim % 8 != 0 || c.head_dim > 256)
      fail("{}: head_dim {} is not supported by the CUDA attention (a multiple of 8 up to 256)",
           c.architecture, c.head_dim);
    LOWBIT_CUDA_CHECK(cudaSetDevice(opt.device));
    cudaDeviceProp prop{};
    LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, opt.device));
    sms = prop.multiProcessorCount;
    linear_options.capability = prop.major * 10 + prop.minor;
    linear_options.disabled = kernels::disabled_kernels_from_env();
    linear_options.max_m = std::max(opt.max_step_tokens, opt.max_sequences);
    q_width = c.num_heads * c.head_dim;
    kv_width = c.num_kv_heads * c.head_dim;
    qkv_width = q_width + 2 * kv_width;
    max_context = opt.max_context > 0 ? opt.max_context : c.max_position;
    max_blocks_per_seq = (max_context + kBlockSize - 1) / kBlockSize;
    layers.resize(size_t(c.num_layers));
  }

  void alloc_weights() {
    const ModelConfig& c = cfg;
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      Layer& L = layers[size_t(l)];
      L.attn_norm = alloc<float>(H, "norm weights");
      L.ffn_norm = alloc<float>(H, "norm weights");
      if (c.attention_bias) L.qkv_b = alloc<float>(qkv_width, "qkv bias");
      if (c.attention_out_bias) L.o_b = alloc<float>(H, "o_proj bias");
      if (c.mlp_bias) {
        L.gate_up_b = alloc<float>(2 * I, "gate/up bias");
        L.down_b = alloc<float>(H, "down bias");
      }
      if (c.qk_norm) {
        L.q_norm = alloc<float>(c.head_dim, "q_norm");
        L.k_norm = alloc<float>(c.head_dim, "k_norm");
      }
    }
    embedding = alloc<bf16>(c.vocab_size * H, "embedding");
    final_norm = alloc<float>(H, "final norm");
    inv_freq = alloc<float>(c.rope_dim / 2, "RoPE frequencies");
  }

  // Bytes one decode step reads: every linear weight, one embedding row set (counted as the
  // whole lm_head, read by the logits GEMM) and the final norm.
  void count_bytes_per_token() {
    uint64_t linear_bytes = 0;
    for (const Layer& L : layers)
      for (const Group* g : {&L.qkv, &L.o, &L.gate_up, &L.down})
        for (const Part& p : *g) linear_bytes += p.lin.weight_bytes();
    const int64_t H = cfg.hidden_size;
    uint64_t lm_head_bytes = uint64_t(cfg.vocab_size * H) * 2;
    if (!lm_head_q.empty()) lm_head_bytes = lm_head_q.front().lin.weight_bytes();
    weight_bytes_per_token = linear_bytes + lm_head_bytes + uint64_t(H) * 2;
  }

  // Adds a GpuLinear that owns its weight (quantized, or a bf16 fallback copy).
  void add_owned(Group& g, kc::GpuLinear lin, int64_t col) {
    weight_bytes += lin.weight_bytes();
    g.push_back({std::move(lin), col});
  }

  // bf16 [Σn, k] on the device from the projections' dense floats (rows stacked).
  void upload_dense_rows(const WeightSource& src, const std::vector<Projection>& ps, bf16* dst) {
    for (const Projection& p : ps) {
      upload_bf16(dst, tensor_floats(src, p.prefix + ".weight", {p.n, p.k}));
      dst += p.n * p.k;
    }
  }

  // The GEMM(s) of projections that share their input; outputs are consecutive columns.
  // `name` names the fused weight ("model.layers.0.self_attn.q_proj+k_proj+v_proj").
  Group make_group(const WeightSource& src, const std::vector<Projection>& ps,
                   const std::string& name) {
    Group g;
    const int64_t k = ps.front().k;
    int64_t total_n = 0;
    for (const Projection& p : ps) total_n += p.n;
    auto all = [&](Projection::Kind kind) {
      return std::all_of(ps.begin(), ps.end(), [&](const Projection& p) { return p.kind == kind; });
    };
    std::vector<const W8StoredWeight*> w8s;
    for (const Projection& p : ps)
      if (p.kind == Projection::kW8) w8s.push_back(&*p.w8);
    if (all(Projection::kDense)) {
      bf16* w = alloc<bf16>(total_n * k, name + " weights");
      upload_dense_rows(src, ps, w);
      g.push_back({kc::GpuLinear::bf16(w, total_n, k, name, linear_options), 0});
    } else if (all(Projection::kFp8)) {
      DeviceBuffer staging(size_t(total_n * k) * 2, name + " (bf16 before fp8 quantization)");
      upload_dense_rows(src, ps, staging.get<bf16>());
      add_owned(g,
                kc::GpuLinear::fp8(staging.get<bf16>(), total_n, k, kc::Fp8Scaling::kRowwise, name,
                                   linear_options, stream.get()),
                0);
      stream.synchronize();  // the quantizer read `staging` on the stream
    } else if (w8s.size() == ps.size() && w8_stackable(w8s)) {
      add_owned(g, make_w8_linear(w8s, name, linear_options, stream.get()), 0);
    } else if (stackable(ps)) {
      quant::DecodedWeight w = ps.size() == 1 ? ps.front().wq : stack_rows(ps);
      drop_default_zeros(w);
      add_owned(g, kc::GpuLinear::wq(w.source(), name, linear_options, stream.get()), 0);
    } else {
      // Mixed formats (e.g. a projection the checkpoint left unquantized): one GEMM each.
      int64_t col = 0;
      for (const Projection& p : ps) {
        Group one = make_group(src, {p}, p.prefix);
        for (Part& part : one) g.push_back({std::move(part.lin), col});
        col += p.n;
      }
    }
    return g;
  }

  // y[:, part columns] = x · W_partᵀ (+ bias) for every part of a group; y is bf16 [m, ldy].
  void run_group(const Group& g, const bf16* x, int64_t ldx, const float* bias, bf16* y,
                 int64_t ldy, int64_t m, cudaStream_t st) const {
    const kc::GpuLinearContext ctx = linear_context();
    if (g.size() == 1) {
      g.front().lin.forward(ctx, x, ldx, bias, y, ldy, kc::OutType::kBf16, m, st);
      return;
    }
    // Parts write strided column blocks, which not every kernel can add a bias to: add the
    // group's bias once over its whole (contiguous, ldy wide) output rows.
    for (const Part& p : g)
      p.lin.forward(ctx, x, ldx, nullptr, y + p.col, ldy, kc::OutType::kBf16, m, st);
    if (bias) kc::add_bias(y, bias, m, ldy, st);
  }

  kc::GpuLinearContext linear_context() const {
    kc::GpuLinearContext ctx;
    ctx.gemm = const_cast<kc::GemmRunner*>(&gemm);
    ctx.w8a8 = const_cast<kc::W8A8Runner*>(&w8a8);
    ctx.scratch = dequant_scratch.get<bf16>();
    ctx.scratch_elems = int64_t(dequant_scratch.bytes() / 2);
    return ctx;
  }

  void upload_inv_freq(const std::vector<float>& freq_factors) {
    std::vector<double> inv = rope_inv_freq(cfg, freq_factors);
    std::vector<float> f(inv.begin(), inv.end());
    upload_f32(inv_freq, f);
  }

  void load(const WeightSource& src, const quant::QuantConfig& qc) {
    const ModelConfig& c = cfg;
    const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
    auto bias = [&](int64_t l, const char* rest, int64_t out, float* dst) {
      if (dst) upload_f32(dst, tensor_floats(src, layer_name(l, rest) + ".bias", {out}));
    };
    auto vec = [&](const std::string& name, int64_t n, float* dst) {
      upload_f32(dst, tensor_floats(src, name, {n}));
    };
    for (int64_t l = 0; l < c.num_layers; ++l) {
      Layer& L = layers[size_t(l)];
      auto proj = [&](const char* rest, int64_t out, int64_t in, bool has_bias) {
        return read_projection(src, qc, layer_name(l, rest), out, in, has_bias, w8_notices);
      };
      // Fused [q; k; v] rows and [gate; up] rows: one GEMM each where the formats allow.
      L.qkv = make_group(src,
                         {proj("self_attn.q_proj", q_width, H, c.attention_bias),
                          proj("self_attn.k_proj", kv_width, H, c.attention_bias),
                          proj("self_attn.v_proj", kv_width, H, c.attention_bias)},
                         layer_name(l, "self_attn.q_proj+k_proj+v_proj"));
      L.o = make_group(src, {proj("self_attn.o_proj", H, q_width, c.attention_out_bias)},
                       layer_name(l, "self_attn.o_proj"));
      L.gate_up = make_group(
          src, {proj("mlp.gate_proj", I, H, c.mlp_bias), proj("mlp.up_proj", I, H, c.mlp_bias)},
          layer_name(l, "mlp.gate_proj+up_proj"));
      L.down = make_group(src, {proj("mlp.down_proj", H, I, c.mlp_bias)},
                          layer_name(l, "mlp.down_proj"));
      bias(l, "self_attn.q_proj", q_width, L.qkv_b);
      bias(l, "self_attn.k_proj", kv_width, L.qkv_b ? L.qkv_b + q_width : nullptr);
      bias(l, "self_attn.v_proj", kv_width, L.qkv_b ? L.qkv_b + q_width + kv_width : nullptr);
      bias(l, "self_attn.o_proj", H, L.o_b);
      bias(l, "mlp.gate_proj", I, L.gate_up_b);
      bias(l, "mlp.up_proj", I, L.gate_up_b ? L.gate_up_b + I : nullptr);
      bias(l, "mlp.down_proj", H, L.down_b);
      vec(layer_name(l, "input_layernorm.weight"), H, L.attn_norm);
      vec(layer_name(l, "post_attention_layernorm.weight"), H, L.ffn_norm);
      if (c.qk_norm) {
        vec(layer_name(l, "self_attn.q_norm.weight"), hd, L.q_norm);
        vec(layer_name(l, "self_attn.k_norm.weight"), hd, L.k_norm);
      }
    }
    upload_bf16(embedding, tensor_floats(src, "model.embed_tokens.weight", {c.vocab_size, H}));
    vec("model.norm.weight", H, final_norm);
    const bool tied = c.tie_word_embeddings || !src.find("lm_head.weight");
    Projection head = read_projection(src, qc, "lm_head", c.vocab_size, H, false, w8_notices,
                                      tied ? "model.embed_tokens" : "lm_head");
    if (head.kind == Projection::kWq || head.kind == Projection::kW8) {
      lm_head_q = make_group(src, {head}, "lm_head");
    } else if (tied) {
      lm_head = embedding;
    } else {
      lm_head = alloc<bf16>(c.vocab_size * H, "lm_head");
      upload_bf16(lm_head, tensor_floats(src, "lm_head.weight", {c.vocab_size, H}));
    }
    std::vector<float> freq_factors;
    if (const TensorView* f = src.find("rope_freqs.weight")) {
      if (f->dtype != DType::F32 || f->shape != std::vector<int64_t>{c.rope_dim / 2})
        fail("{}: rope_freqs.weight is {} {}, expected F32 [{}]", src.path(), name(f->dtype),
             shape_string(f->shape), c.rope_dim / 2);
      const float* p = reinterpret_cast<const float*>(f->data);
      freq_factors.assign(p, p + c.rope_dim / 2);
    }
    upload_inv_freq(freq_factors);
    count_bytes_per_token();
  }

  void alloc_runtime(const std::optional<engine::KvScales>& ckpt_scales) {
    const ModelConfig& c = cfg;
    const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    max_step = opt.max_step_tokens;
    logit_rows = std::max<int64_t>(opt.max_sequences, std::min<int64_t>(max_step, 256));
    const int64_t n = std::max(max_step, opt.max_sequences);
    // GEMM scratch before the KV pool takes what is left: the bf16 weight wq_dequant_cublaslt
    // decodes into (the largest such layer), the W8A8 runner's activation buffers.
    int64_t scratch = 0, w8_k = 0, w8_n = 0;
    std::vector<const Group*> groups = {&lm_head_q};  // empty unless the method quantizes it
    for (const Layer& L : layers) groups.insert(groups.end(), {&L.qkv, &L.o, &L.gate_up, &L.down});
    for (const Group* g : groups)
      for (const Part& p : *g) {
        scratch = std::max(scratch, p.lin.scratch_elems_for(n));
        if (p.lin.format() != kernels::GpuWeightFormat::kBf16 &&
            p.lin.format() != kernels::GpuWeightFormat::kW4A16 &&
            p.lin.format() != kernels::GpuWeightFormat::kW8A16) {
          w8_k = std::max(w8_k, p.lin.k());
          w8_n = std::max(w8_n, p.lin.n());
        }
      }
    if (scratch > 0) dequant_scratch = DeviceBuffer(size_t(scratch) * 2, "dequantization scratch");
    if (w8_k > 0) w8a8.reserve(n, w8_k, w8_n);
    meta = DeviceBuffer(size_t(kMetaFields * n) * 4, "step metadata");
    h_meta = kc::PinnedBuffer(size_t(kMetaFields * n) * 4);
    x = DeviceBuffer(size_t(n * H) * 4, "activations");
    h = DeviceBuffer(size_t(n * H) * 2, "activations");
    delta = DeviceBuffer(size_t(n * H) * 2, "activations");
    qkv = DeviceBuffer(size_t(n * qkv_width) * 2, "activations");
    attn = DeviceBuffer(size_t(n * q_width) * 2, "activations");
    gate_up = DeviceBuffer(size_t(n * 2 * I) * 2, "activations");
    act = DeviceBuffer(size_t(n * I) * 2, "activations");
    logits = DeviceBuffer(size_t(logit_rows * V) * 4, "logits");
    ids = DeviceBuffer(size_t(opt.max_sequences) * 4, "sampled ids");
    argmax_scratch =
        DeviceBuffer(size_t(kc::argmax_scratch_bytes(opt.max_sequences, V)), "argmax scratch");
    LOWBIT_CUDA_CHECK(cudaMemset(argmax_scratch.get(), 0, argmax_scratch.bytes()));
    h_ids = kc::PinnedBuffer(size_t(opt.max_sequences) * 4);
    uniforms = DeviceBuffer(size_t(opt.max_sequences) * 4, "sampling uniforms");
    h_uniforms = kc::PinnedBuffer(size_t(opt.max_sequences) * 4);
    amax = DeviceBuffer(size_t(2 * c.num_kv_heads) * 4, "KV amax");
    // Workspace for split attention: the most splits any step shape can ask for.
    workspace_floats = 0;
    for (int64_t rows = 1; rows <= n; ++rows) {
      int32_t s = kc::attention_splits(rows, c.num_heads, c.num_kv_heads, max_context, sms);
      workspace_floats = std::max(workspace_floats,
                                  kc::attention_workspace_floats(rows, c.num_heads, c.head_dim, s));
    }
    workspace = DeviceBuffer(size_t(workspace_floats) * 4, "attention workspace");

    // KV scales [2, layers, kv_heads]: checkpoint values, 1 for bf16, else calibrated on the
    // first prompt (per head or per tensor: kv_granularity).
    kv_scales = DeviceBuffer(size_t(2 * c.num_layers * c.num_kv_heads) * 4, "KV scales");
    std::vector<float> scales(size_t(2 * c.num_layers * c.num_kv_heads), 1.0f);
    scales_ready = true;
    if (kv_dtype != kc::KvDtype::kBf16) {
      if (ckpt_scales) {
        std::copy(ckpt_scales->k.begin(), ckpt_scales->k.end(), scales.begin());
        std::copy(ckpt_scales->v.begin(), ckpt_scales->v.end(),
                  scales.begin() + int64_t(ckpt_scales->k.size()));
      } else {
        std::fill(scales.begin(), scales.end(), 0.0f);
        scales_ready = false;
      }
    }
    upload_f32(kv_scales.get<float>(), scales);

    // The KV pool takes what --gpu-memory-utilization leaves, up to what is needed.
    size_t free_b = 0, total_b = 0;
    LOWBIT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const double used = double(total_b - free_b);
    const double budget = opt.gpu_memory_utilization * double(total_b) - used;
    const uint64_t block_bytes = uint64_t(kBlockSize) * uint64_t(kv_width) *
                                 uint64_t(kc::kv_dtype_bytes(kv_dtype)) * 2 *
                                 uint64_t(c.num_layers);
    const int64_t wanted = opt.max_sequences * max_blocks_per_seq;
    const int64_t fit = budget > 0 ? int64_t(budget / double(block_bytes)) : 0;
    num_blocks = std::min(wanted, fit);
    if (num_blocks < 1)
      fail(
          "no GPU memory left for the KV cache: {:.1f} MiB of {:.1f} MiB in use after loading "
          "{:.1f} MiB of weights, and --gpu-memory-utilization {} allows {:.1f} MiB; one block "
          "of {} tokens needs {:.2f} MiB",
          used / 1048576.0, double(total_b) / 1048576.0, double(weight_bytes) / 1048576.0,
          opt.gpu_memory_utilization, opt.gpu_memory_utilization * double(total_b) / 1048576.0,
          kBlockSize, double(block_bytes) / 1048576.0);
    layer_pool_bytes = uint64_t(num_blocks) * block_bytes / 2 / uint64_t(c.num_layers);
    k_pool = DeviceBuffer(size_t(layer_pool_bytes * uint64_t(c.num_layers)), "KV cache (keys)");
    v_pool = DeviceBuffer(size_t(layer_pool_bytes * uint64_t(c.num_layers)), "KV cache (values)");
    free_blocks.resize(size_t(num_blocks));
    for (int64_t b = 0; b < num_blocks; ++b) free_blocks[size_t(b)] = int32_t(num_blocks - 1 - b);
    seqs.assign(size_t(opt.max_sequences), {});
    block_tables.assign(size_t(opt.max_sequences * max_blocks_per_seq), 0);
    d_block_tables = DeviceBuffer(block_tables.size() * 4, "block tables");
    warm_up_linears(n);
    LOWBIT_CUDA_CHECK(cudaMemset(d_block_tables.get(), 0, d_block_tables.bytes()));
  }

  // Act-order weights grow a gather buffer on their first call with a new largest m: run
  // every GEMM once at the largest step so that no later call (inside a CUDA graph capture)
  // allocates. Inputs are whatever the buffers hold; outputs are overwritten by every step.
  void warm_up_linears(int64_t n) {
    bool any = false;
    for (const Layer& L : layers)
      for (const Group* g : {&L.qkv, &L.o, &L.gate_up, &L.down})
        for (const Part& p : *g) any = any || p.lin.needs_warm_up();
    if (!any) return;
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    cudaStream_t st = stream.get();
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(h.get(), 0, h.bytes(), st));
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(attn.get(), 0, attn.bytes(), st));
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(act.get(), 0, act.bytes(), st));
    for (const Layer& L : layers) {
      run_group(L.qkv, h.get<bf16>(), H, nullptr, qkv.get<bf16>(), qkv_width, n, st);
      run_group(L.o, attn.get<bf16>(), q_width, nullptr, delta.get<bf16>(), H, n, st);
      run_group(L.gate_up, h.get<bf16>(), H, nullptr, gate_up.get<bf16>(), 2 * I, n, st);
      run_group(L.down, act.get<bf16>(), I, nullptr, delta.get<bf16>(), H, n, st);
    }
    stream.synchronize();
  }

  kc::PagedKvLayer cache_layer(int64_t l) const {
    kc::PagedKvLayer v;
    v.k = k_pool.get<uint8_t>() + uint64_t(l) * layer_pool_bytes;
    v.v = v_pool.get<uint8_t>() + uint64_t(l) * layer_pool_bytes;
    v.k_scale = kv_scales.get<float>() + l * cfg.num_kv_heads;
    v.v_scale = kv_scales.get<float>() + (cfg.num_layers + l) * cfg.num_kv_heads;
    v.scale_stride = 1;
    v.dtype = kv_dtype;
    v.num_blocks = int32_t(num_blocks);
    v.num_kv_heads = int32_t(cfg.num_kv_heads);
    v.block_size = int32_t(kBlockSize);
    v.head_dim = int32_t(cfg.head_dim);
    return v;
  }

  int32_t* meta_dev(MetaField f) const {
    return meta.get<int32_t>() + int64_t(f) * std::max(max_step, opt.max_sequences);
  }
  int32_t* meta_host(MetaField f) const {
    return h_meta.get<int32_t>() + int64_t(f) * std::max(max_step, opt.max_sequences);
  }

  // Grows sequence `s` to `new_length` tokens, taking blocks from the pool.
  void reserve(int s, int64_t new_length) {
    Seq& q = seqs[size_t(s)];
    if (new_length > max_context)
      fail("context of {} tokens exceeds the maximum context of {} tokens (--ctx-size)", new_length,
           max_context);
    const int64_t need = (new_length + kBlockSize - 1) / kBlockSize;
    const int64_t more = need - int64_t(q.blocks.size());
    if (more > int64_t(free_blocks.size()))
      fail(
          "the KV cache is full: a context of {} tokens needs {} blocks of {} tokens, {} are "
          "free of {} ({:.1f} MiB of {} KV cache; raise --gpu-memory-utilization (now {}) or "
          "shorten the context)",
          new_length, need, kBlockSize, free_blocks.size() + q.blocks.size(), num_blocks,
          double(layer_pool_bytes) * 2 * double(cfg.num_layers) / 1048576.0,
          kc::kv_dtype_name(kv_dtype), opt.gpu_memory_utilization);
    for (int64_t i = 0; i < more; ++i) {
      int32_t b = free_blocks.back();
      free_blocks.pop_back();
      block_tables[size_t(s * max_blocks_per_seq + int64_t(q.blocks.size()))] = b;
      q.blocks.push_back(b);
    }
  }

  void check_seq(int s) const {
    if (s < 0 || s >= int(seqs.size()))
      fail("sequence {} is outside 0..{} (max sequences)", s, seqs.size() - 1);
  }

  // Writes the metadata of token i of a step (sequence s, position pos, id).
  void set_token(int64_t i, int s, int64_t pos, int32_t id) {
    if (id < 0 || id >= cfg.vocab_size)
      fail("token id {} at position {} is outside the vocabulary 0..{}", id, pos,
           cfg.vocab_size - 1);
    const Seq& q = seqs[size_t(s)];
    meta_host(kTokens)[i] = id;
    meta_host(kPositions)[i] = int32_t(pos);
    meta_host(kSlots)[i] =
        int32_t(q.blocks[size_t(pos / kBlockSize)] * kBlockSize + pos % kBlockSize);
    meta_host(kTokenSeq)[i] = s;
    meta_host(kCtxLens)[i] = int32_t(pos + 1);
  }

  void upload_step() {
    cudaStream_t st = stream.get();
    LOWBIT_CUDA_CHECK(
        cudaMemcpyAsync(meta.get(), h_meta.get(), h_meta.bytes(), cudaMemcpyHostToDevice, st));
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(d_block_tables.get(), block_tables.data(),
                                      block_tables.size() * 4, cudaMemcpyHostToDevice, st));
  }

  // The decoder layers over the n tokens described in `meta`; leaves the final-normed hidden
  // states in h [n, H].
  void run_layers(int64_t n, int32_t splits) {
    const ModelConfig& c = cfg;
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const float eps = float(c.rms_norm_eps);
    cudaStream_t st = stream.get();
    bf16 *hb = h.get<bf16>(), *qkvb = qkv.get<bf16>(), *attnb = attn.get<bf16>();
    bf16 *gub = gate_up.get<bf16>(), *actb = act.get<bf16>(), *db = delta.get<bf16>();
    float* xf = x.get<float>();
    kc::embedding(embedding, meta_dev(kTokens), n, H, xf, st);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const Layer& L = layers[size_t(l)];
      const kc::PagedKvLayer cache = cache_layer(l);
      kc::add_rms_norm(xf, l == 0 ? nullptr : db, L.attn_norm, eps, n, H, hb, st);
      run_group(L.qkv, hb, H, L.qkv_b, qkvb, qkv_width, n, st);
      kc::RopeKvArgs r;
      r.qkv = qkvb;
      r.n = n;
      r.num_heads = int32_t(c.num_heads);
      r.num_kv_heads = int32_t(c.num_kv_heads);
      r.head_dim = int32_t(c.head_dim);
      r.rope_dim = int32_t(c.rope_dim);
      r.neox = c.rope_style == RopeStyle::kNeox;
      r.inv_freq = inv_freq;
      r.positions = meta_dev(kPositions);
      r.slot_mapping = meta_dev(kSlots);
      r.q_norm = L.q_norm;
      r.k_norm = L.k_norm;
      r.norm_eps = eps;
      if (scales_ready) {
        kc::rope_kv_write(r, cache, st);
      } else {
        // FP8 without checkpoint scales: rotate, measure max|k|, max|v| (per head), then store.
        r.store = false;
        kc::rope_kv_write(r, cache, st);
        kc::calibrate_kv_scales(
            qkvb, n, r.num_heads, r.num_kv_heads, r.head_dim, kc::kv_fp8_max(kv_dtype),
            kv_granularity == engine::KvScaleGranularity::kHead, amax.get<float>(),
            const_cast<float*>(cache.k_scale), const_cast<float*>(cache.v_scale), st);
        r.rotate = false;
        r.store = true;
        kc::rope_kv_write(r, cache, st);
      }
      kc::AttentionArgs a;
      a.q = qkvb;
      a.q_stride = qkv_width;
      a.out = attnb;
      a.n = n;
      a.num_heads = int32_t(c.num_heads);
      a.scale = 1.0f / std::sqrt(float(c.head_dim));
      a.token_seq = meta_dev(kTokenSeq);
      a.ctx_lens = meta_dev(kCtxLens);
      a.block_tables = d_block_tables.get<int32_t>();
      a.max_blocks_per_seq = int32_t(max_blocks_per_seq);
      a.num_splits = splits;
      a.workspace = workspace.get<float>();
      LOWBIT_CHECK(
          kc::attention_workspace_floats(n, c.num_heads, c.head_dim, splits) <= workspace_floats,
          "attention workspace too small for {} tokens, {} splits", n, splits);
      kc::paged_attention(a, cache, st);
      run_group(L.o, attnb, q_width, L.o_b, db, H, n, st);
      kc::add_rms_norm(xf, db, L.ffn_norm, eps, n, H, hb, st);
      run_group(L.gate_up, hb, H, L.gate_up_b, gub, 2 * I, n, st);
      kc::silu_mul(gub, n, I, actb, st);
      run_group(L.down, actb, I, L.down_b, db, H, n, st);
    }
    kc::add_rms_norm(xf, db, final_norm, eps, n, H, hb, st);
  }

  // logits rows [r0, r0 + rows) of h -> device logits [rows, vocab]
  void lm_head_rows(int64_t r0, int64_t rows) {
    const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
    if (!lm_head_q.empty()) {
      lm_head_q.front().lin.forward(linear_context(), h.get<bf16>() + r0 * H, H, nullptr,
                                    logits.get<float>(), V, kc::OutType::kF32, rows, stream.get());
      return;
    }
    gemm.linear(h.get<bf16>() + r0 * H, H, lm_head, nullptr, logits.get<float>(), V,
                kc::OutType::kF32, rows, V, H, stream.get());
  }

  void copy_logits(int64_t rows, float* dst) {
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(dst, logits.get(), size_t(rows * cfg.vocab_size) * 4,
                                      cudaMemcpyDeviceToHost, stream.get()));
    stream.synchronize();
  }

  int32_t splits_for(int64_t n, int64_t max_ctx) const {
    return kc::attention_splits(n, cfg.num_heads, cfg.num_kv_heads, max_ctx, sms);
  }
};

CudaLlamaModel::CudaLlamaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CudaLlamaModel::CudaLlamaModel(const ModelConfig& config, const WeightSource& source,
                               const quant::QuantConfig& quant, const CudaOptions& options) {
  impl_ = std::make_unique<Impl>();
  Impl& m = *impl_;
  m.init_shapes(config, options);
  const int cc = m.linear_options.capability;
  if (quant.min_capability() > cc)
    fail(
        "{}: quantization method '{}' needs a GPU of compute capability {}.{} or newer; this "
        "one has {}.{}",
        source.path(), quant.name(), quant.min_capability() / 10, quant.min_capability() % 10,
        cc / 10, cc % 10);
  std::optional<engine::KvScales> ckpt_scales =
      read_checkpoint_kv_scales(source, config.num_layers, config.num_kv_heads);
  m.kv_dtype = parse_kv_dtype(options.kv_cache_dtype, ckpt_scales.has_value());
  m.kv_granularity = ckpt_scales ? ckpt_scales->granularity
                                 : engine::kv_scale_granularity(options.kv_cache_scales);
  m.kv_scales_from_checkpoint = ckpt_scales.has_value();
  m.alloc_weights();
  m.load(source, quant);
  m.alloc_runtime(ckpt_scales);
}

CudaLlamaModel::CudaLlamaModel(const ModelConfig& config, const WeightSource& source,
                               const std::string& quant_method, const CudaOptions& options)
    : CudaLlamaModel(config, source,
                     *quant::MethodRegistry::builtin().make(quant_method, nlohmann::json::object()),
                     options) {}

std::unique_ptr<CudaLlamaModel> CudaLlamaModel::random(const ModelConfig& config, uint64_t seed,
                                                       const CudaOptions& options,
                                                       const std::string& weights) {
  if (weights != "bf16" && weights != "int4" && weights != "int8" && weights != "fp8")
    fail("random weights '{}': expected bf16, int4, int8 or fp8", weights);
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.init_shapes(config, options);
  m.kv_dtype = parse_kv_dtype(options.kv_cache_dtype, false);
  m.kv_granularity = engine::kv_scale_granularity(options.kv_cache_scales);
  m.alloc_weights();
  // Uniform weights with the variance of a trained layer (±sqrt(3/in)); norms near 1.
  cudaStream_t st = m.stream.get();
  const int64_t H = config.hidden_size, I = config.intermediate_size;
  uint64_t s = seed * 1000003;
  auto fill = [&](bf16* w, int64_t out, int64_t in) {
    kc::fill_uniform(w, out * in, ++s, std::sqrt(3.0f / float(in)), st);
  };
  auto fill_vec = [&](float* v, int64_t n, float scale, float offset) {
    if (v) kc::fill_uniform(v, n, ++s, scale, offset, st);
  };
  // Random codes: one set per shape (generating 8B codes per layer on the host would take
  // minutes), packed into separate device memory for every layer.
  std::map<std::pair<int64_t, int64_t>, quant::DecodedWeight> codes;
  auto make = [&](int64_t l, const char* name, int64_t out, int64_t in) {
    const std::string what = layer_name(l, name);
    Impl::Group g;
    if (weights == "bf16") {
      bf16* w = m.alloc<bf16>(out * in, what + " weights");
      fill(w, out, in);
      g.push_back({kc::GpuLinear::bf16(w, out, in, what, m.linear_options), 0});
    } else if (weights == "fp8") {
      DeviceBuffer staging(size_t(out * in) * 2, what + " (bf16 before fp8 quantization)");
      fill(staging.get<bf16>(), out, in);
      m.add_owned(g,
                  kc::GpuLinear::fp8(staging.get<bf16>(), out, in, kc::Fp8Scaling::kRowwise, what,
                                     m.linear_options, st),
                  0);
      m.stream.synchronize();
    } else {
      auto kind = weights == "int4" ? kernels::cpu::WqKind::kInt4 : kernels::cpu::WqKind::kInt8;
      auto it = codes.find({out, in});
      if (it == codes.end())
        it = codes.emplace(std::pair{out, in}, random_codes(kind, out, in, seed + uint64_t(out)))
                 .first;
      m.add_owned(g, kc::GpuLinear::wq(it->second.source(), what, m.linear_options, st), 0);
    }
    return g;
  };
  for (int64_t l = 0; l < config.num_layers; ++l) {
    auto& L = m.layers[size_t(l)];
    L.qkv = make(l, "self_attn.qkv_proj", m.qkv_width, H);
    L.o = make(l, "self_attn.o_proj", H, m.q_width);
    L.gate_up = make(l, "mlp.gate_up_proj", 2 * I, H);
    L.down = make(l, "mlp.down_proj", H, I);
    fill_vec(L.attn_norm, H, 0.1f, 1.0f);
    fill_vec(L.ffn_norm, H, 0.1f, 1.0f);
    fill_vec(L.q_norm, config.head_dim, 0.1f, 1.0f);
    fill_vec(L.k_norm, config.head_dim, 0.1f, 1.0f);
    fill_vec(L.qkv_b, m.qkv_width, 0.1f, 0.0f);
    fill_vec(L.o_b, H, 0.1f, 0.0f);
    fill_vec(L.gate_up_b, 2 * I, 0.1f, 0.0f);
    fill_vec(L.down_b, H, 0.1f, 0.0f);
  }
  kc::fill_uniform(m.embedding, config.vocab_size * H, ++s, 1.0f, st);
  fill_vec(m.final_norm, H, 0.1f, 1.0f);
  if (weights == "int4" || weights == "int8") {
    // As from a checkpoint: the online methods keep lm_head at int8 per channel.
    const quant::DecodedWeight head =
        random_codes(kernels::cpu::WqKind::kInt8, config.vocab_size, H, seed + 7);
    m.add_owned(m.lm_head_q, kc::GpuLinear::wq(head.source(), "lm_head", m.linear_options, st), 0);
  } else if (config.tie_word_embeddings) {
    m.lm_head = m.embedding;
  } else {
    m.lm_head = m.alloc<bf16>(config.vocab_size * H, "lm_head");
    fill(m.lm_head, config.vocab_size, H);
  }
  m.stream.synchronize();
  m.upload_inv_freq({});
  m.count_bytes_per_token();
  m.alloc_runtime(std::nullopt);
  return std::unique_ptr<CudaLlamaModel>(new CudaLlamaModel(std::move(impl)));
}

CudaLlamaModel::~CudaLlamaModel() = default;

const ModelConfig& CudaLlamaModel::config() const { return impl_->cfg; }
std::string CudaLlamaModel::kv_cache_dtype() const { return kc::kv_dtype_name(impl_->kv_dtype); }
int64_t CudaLlamaModel::kv_cache_blocks() const { return impl_->num_blocks; }
int64_t CudaLlamaModel::kv_block_size() const { return kBlockSize; }
uint64_t CudaLlamaModel::kv_bytes_per_token() const {
  return uint64_t(impl_->kv_width) * 2 * uint64_t(kc::kv_dtype_bytes(impl_->kv_dtype)) *
         uint64_t(impl_->cfg.num_layers);
}
uint64_t CudaLlamaModel::weight_bytes() const { return impl_->weight_bytes; }
uint64_t CudaLlamaModel::weight_bytes_per_token() const { return impl_->weight_bytes_per_token; }

std::string CudaLlamaModel::describe() const {
  const Impl& m = *impl_;
  std::string formats;
  if (!m.layers.empty())
    for (const auto& part : m.layers.front().gate_up) {
      const std::string f = kernels::gpu_weight_format_name(part.lin.format());
      if (formats.find(f) == std::string::npos) formats += (formats.empty() ? "" : "+") + f;
    }
  std::string kv = kv_cache_dtype();
  if (m.kv_dtype != kc::KvDtype::kBf16)
    kv += fmt::format(" with per-{} scales from {}",
                      engine::kv_scale_granularity_name(m.kv_granularity),
                      m.kv_scales_from_checkpoint ? "the checkpoint" : "the first prompt");
  return fmt::format(
      "CUDA: {:.1f} MiB of weights (linear layers {}); KV cache {} blocks × {} tokens ({}, "
      "{:.1f} MiB), max context {}",
      double(m.weight_bytes) / 1048576.0, formats.empty() ? "none" : formats, m.num_blocks,
      kBlockSize, kv, double(m.layer_pool_bytes) * 2 * double(m.cfg.num_layers) / 1048576.0,
      m.max_context);
}

std::vector<std::pair<std::string, std::string>> CudaLlamaModel::linear_kernels(
    int64_t rows) const {
  std::vector<std::pair<std::string, std::string>> out;
  if (impl_->layers.empty()) return out;
  const auto& L = impl_->layers.front();
  const std::pair<const char*, const Impl::Group*> groups[] = {
      {"qkv_proj", &L.qkv}, {"o_proj", &L.o}, {"gate_up_proj", &L.gate_up}, {"down_proj", &L.down}};
  for (const auto& [name, g] : groups) {
    std::string kernels;
    for (const auto& p : *g)
      kernels += (kernels.empty() ? "" : ",") + std::string(p.lin.kernel_for(rows));
    out.emplace_back(std::string("layers.*.") + name, kernels);
  }
  return out;
}

void CudaLlamaModel::reset_sequence(int s) {
  Impl& m = *impl_;
  m.check_seq(s);
  auto& q = m.seqs[size_t(s)];
  for (auto it = q.blocks.rbegin(); it != q.blocks.rend(); ++it) m.free_blocks.push_back(*it);
  q.blocks.clear();
  q.length = 0;
}

int64_t CudaLlamaModel::sequence_length(int s) const {
  impl_->check_seq(s);
  return impl_->seqs[size_t(s)].length;
}

void CudaLlamaModel::forward(int s, std::span<const int32_t> tokens, bool all_logits,
                             std::vector<float>& logits) {
  Impl& m = *impl_;
  m.check_seq(s);
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("forward: no tokens");
  auto& q = m.seqs[size_t(s)];
  const int64_t pos0 = q.length;
  m.reserve(s, pos0 + n);
  const int64_t V = m.cfg.vocab_size;
  logits.resize(size_t((all_logits ? n : 1) * V));
  for (int64_t c0 = 0; c0 < n; c0 += m.max_step) {
    const int64_t cn = std::min(m.max_step, n - c0);
    for (int64_t i = 0; i < cn; ++i) m.set_token(i, s, pos0 + c0 + i, tokens[size_t(c0 + i)]);
    m.upload_step();
    m.run_layers(cn, m.splits_for(cn, pos0 + c0 + cn));
    m.scales_ready = true;  // the first step calibrated FP8 scales where needed
    if (all_logits) {
      for (int64_t r0 = 0; r0 < cn; r0 += m.logit_rows) {
        const int64_t rows = std::min(m.logit_rows, cn - r0);
        m.lm_head_rows(r0, rows);
        m.copy_logits(rows, logits.data() + (c0 + r0) * V);
      }
    } else if (c0 + cn == n) {
      m.lm_head_rows(cn - 1, 1);
      m.copy_logits(1, logits.data());
    }
  }
  q.length = pos0 + n;
}

void CudaLlamaModel::decode_greedy(std::span<const int> seq_ids, std::span<const int32_t> tokens,
                                   std::span<int32_t> next) {
  decode_step(seq_ids, tokens, next, nullptr, {});
}

void CudaLlamaModel::decode_sample(std::span<const int> seq_ids, std::span<const int32_t> tokens,
                                   const GpuSampling& sampling, std::span<const float> uniforms,
                                   std::span<int32_t> next) {
  if (uniforms.size() != seq_ids.size())
    fail("decode_sample: {} uniforms for {} sequences", uniforms.size(), seq_ids.size());
  decode_step(seq_ids, tokens, next, &sampling, uniforms);
}

void CudaLlamaModel::decode_step(std::span<const int> seq_ids, std::span<const int32_t> tokens,
                                 std::span<int32_t> next, const GpuSampling* sampling,
                                 std::span<const float> uniforms) {
  Impl& m = *impl_;
  const int64_t B = int64_t(seq_ids.size());
  if (B == 0 || int64_t(tokens.size()) != B || int64_t(next.size()) != B)
    fail("decode step: {} sequences, {} tokens and {} outputs; expected equal and > 0", B,
         tokens.size(), next.size());
  if (B > m.opt.max_sequences) fail("decode step: {} sequences > max {}", B, m.opt.max_sequences);
  for (int64_t i = 0; i < B; ++i) {
    const int s = seq_ids[size_t(i)];
    m.check_seq(s);
    for (int64_t j = 0; j < i; ++j)
      if (seq_ids[size_t(j)] == s) fail("decode step: sequence {} appears twice", s);
    m.reserve(s, m.seqs[size_t(s)].length + 1);
    m.set_token(i, s, m.seqs[size_t(s)].length, tokens[size_t(i)]);
  }
  m.upload_step();
  cudaStream_t st = m.stream.get();
  auto record = [&] {
    m.run_layers(B, m.splits_for(B, m.max_context));
    m.lm_head_rows(0, B);
    kc::argmax_rows(m.logits.get<float>(), B, m.cfg.vocab_size, m.ids.get<int32_t>(),
                    m.argmax_scratch.get(), st);
  };
  if (m.opt.cuda_graphs && m.scales_ready) {
    auto it = m.graphs.find(B);
    if (it == m.graphs.end()) {
      Impl::Graph g;
      LOWBIT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      try {
        record();
      } catch (...) {
        cudaGraph_t broken = nullptr;
        cudaStreamEndCapture(st, &broken);
        if (broken) cudaGraphDestroy(broken);
        throw;
      }
      LOWBIT_CUDA_CHECK(cudaStreamEndCapture(st, &g.graph));
      LOWBIT_CUDA_CHECK(cudaGraphInstantiate(&g.exec, g.graph, 0));
      it = m.graphs.emplace(B, g).first;
    }
    LOWBIT_CUDA_CHECK(cudaGraphLaunch(it->second.exec, st));
  } else {
    record();
    m.scales_ready = true;
  }
  if (sampling) {
    // The step's graph ends in argmax (kept: greedy is the common case); sampling overwrites ids
    // from the logits it left on the device, so only B token ids travel back.
    std::copy(uniforms.begin(), uniforms.end(), m.h_uniforms.get<float>());
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(m.uniforms.get(), m.h_uniforms.get(), size_t(B) * 4,
                                      cudaMemcpyHostToDevice, st));
    kc::sample_rows(m.logits.get<float>(), m.cfg.vocab_size, B, m.cfg.vocab_size,
                    {sampling->temperature, sampling->top_k, sampling->top_p},
                    m.uniforms.get<float>(), m.ids.get<int32_t>(), st);
  }
  LOWBIT_CUDA_CHECK(
      cudaMemcpyAsync(m.h_ids.get(), m.ids.get(), size_t(B) * 4, cudaMemcpyDeviceToHost, st));
  m.stream.synchronize();
  for (int64_t i = 0; i < B; ++i) {
    next[size_t(i)] = m.h_ids.get<int32_t>()[i];
    m.seqs[size_t(seq_ids[size_t(i)])].length += 1;
  }
}

void CudaLlamaModel::fill_kv_cache_random(uint64_t seed) {
  Impl& m = *impl_;
  cudaStream_t st = m.stream.get();
  const int64_t bytes = int64_t(m.k_pool.bytes());
  if (m.kv_dtype == kc::KvDtype::kBf16) {
    kc::fill_uniform(m.k_pool.get<bf16>(), bytes / 2, seed, 1.0f, st);
    kc::fill_uniform(m.v_pool.get<bf16>(), bytes / 2, seed + 1, 1.0f, st);
  } else {
    kc::fill_random_fp8(m.k_pool.get<uint8_t>(), bytes, seed, st);
    kc::fill_random_fp8(m.v_pool.get<uint8_t>(), bytes, seed + 1, st);
    std::vector<float> scales(size_t(2 * m.cfg.num_layers * m.cfg.num_kv_heads), 1.0f / 64);
    LOWBIT_CUDA_CHECK(cudaMemcpyAsync(m.kv_scales.get(), scales.data(), scales.size() * 4,
                                      cudaMemcpyHostToDevice, st));
    m.stream.synchronize();
    m.scales_ready = true;
  }
  m.stream.synchronize();
}

void CudaLlamaModel::assume_cached_context(int s, int64_t length) {
  Impl& m = *impl_;
  m.check_seq(s);
  m.reserve(s, length);
  m.seqs[size_t(s)].length = length;
}

std::pair<std::vector<float>, std::vector<float>> CudaLlamaModel::kv_scales(int64_t layer) const {
  const Impl& m = *impl_;
  if (layer < 0 || layer >= m.cfg.num_layers)
    fail("layer {} is outside 0..{}", layer, m.cfg.num_layers - 1);
  const int64_t H = m.cfg.num_kv_heads;
  std::vector<float> k(static_cast<size_t>(H)), v(static_cast<size_t>(H));
  m.stream.synchronize();
  kc::copy_to_host(k.data(), m.kv_scales.get<float>() + layer * H, size_t(H) * 4);
  kc::copy_to_host(v.data(), m.kv_scales.get<float>() + (m.cfg.num_layers + layer) * H,
                   size_t(H) * 4);
  return {k, v};
}

}  // namespace lowbit::models
