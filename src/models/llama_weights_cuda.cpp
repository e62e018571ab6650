#include "models/llama_weights_cuda.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cuda/common/device_buffer.h"
#include "nn/linear.h"
#include "quant/dense_weight_method.h"
#include "quant/fp8_online.h"
#include "quant/weight_only_method.h"

namespace lowbit::models::llama_weights {

namespace kc = kernels::cuda;

std::string layer_name(int64_t i, const char* rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

// Values of a checkpoint tensor as fp32, after checking its shape.
std::vector<float> tensor_floats(const WeightSource& src, const std::string& hf_name,
                                 const std::vector<int64_t>& shape) {
  const TensorView* t = src.find(hf_name);
  if (!t) fail("{}: tensor '{}' is missing", src.path(), src.stored_name(hf_name));
  if (t->shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {}", src.path(), src.stored_name(hf_name),
         shape_string(t->shape), shape_string(shape));
  if (auto v = float_values(*t)) return std::move(*v);
  if (traits(t->dtype).block_elems > 1 && kernels::cpu::cpu_kernel_supports(t->dtype)) {
    std::vector<float> out(size_t(t->numel()));
    kernels::cpu::dequantize_ref(t->dtype, t->data, t->numel(), out.data());
    return out;
  }
  fail(
      "{}: tensor '{}' is {}; the CUDA backend reads F32, F16, BF16 and the GGUF formats {} "
      "(uploaded as bf16) for now",
      src.path(), src.stored_name(hf_name), name(t->dtype),
      kernels::cpu::cpu_kernel_supported_list());
}

void upload_bf16(__nv_bfloat16* dst, const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = f32_to_bf16(v[i]);
  kc::copy_to_device(dst, bits.data(), bits.size() * 2);
}

void upload_f32(float* dst, const std::vector<float>& v) {
  kc::copy_to_device(dst, v.data(), v.size() * 4);
}

// `tensor_prefix` names the stored tensors when they differ from the layer (a tied lm_head reads
// model.embed_tokens.weight); empty = `prefix`.
Projection read_projection(const WeightSource& src, const quant::QuantConfig& qc,
                           const std::string& prefix, int64_t n, int64_t k, bool has_bias,
                           W8Notices& notices, const std::string& tensor_prefix) {
  std::shared_ptr<const quant::LinearMethod> method;
  quant::LinearLayer layer = nn::load_linear_tensors(
      prefix, tensor_prefix.empty() ? prefix : tensor_prefix, k, n, has_bias, qc, src, &method);
  Projection p;
  p.prefix = prefix;
  p.n = n;
  p.k = k;
  if ((p.w8 = read_w8_checkpoint(layer, *method, notices))) {
    p.kind = Projection::kW8;
  } else if (auto* w = dynamic_cast<const quant::WeightOnlyIntMethod*>(method.get())) {
    p.kind = Projection::kWq;
    p.wq = w->decode(layer);
  } else if (dynamic_cast<const quant::OnlineFp8Method*>(method.get())) {
    p.kind = Projection::kFp8;
  } else if (!dynamic_cast<const quant::DenseWeightMethod*>(method.get())) {
    fail(
        "{}: layer {} uses quantization method '{}', which has no CUDA path (the CUDA backend "
        "runs unquantized, gguf, awq, gptq, compressed-tensors int, bitsandbytes int8, int4, "
        "int8 and fp8); use --device cpu",
        src.path(), prefix, qc.name());
  }
  return p;
}

// The symmetric default zero of a weight-only kind (what a missing zeros array means).
float default_zero(kernels::cpu::WqKind kind) {
  return kind == kernels::cpu::WqKind::kInt4 ? 8.0f : 128.0f;
}

// Zeros that all equal the symmetric default are dropped (as the CPU's finish() does): the
// symmetric kernels read no zeros.
void drop_default_zeros(quant::DecodedWeight& w) {
  const float z = default_zero(w.kind);
  if (std::all_of(w.zeros.begin(), w.zeros.end(), [&](float v) { return v == z; })) w.zeros.clear();
}

// Whether the weight-only projections can be stacked into one weight [Σn, k]: same kind,
// k, group size and act-order permutation (their codes / scales / zeros rows then concatenate).
bool stackable(const std::vector<Projection>& ps) {
  for (const Projection& p : ps) {
    if (p.kind != Projection::kWq) return false;
    const auto &a = p.wq, &b = ps.front().wq;
    if (a.kind != b.kind || a.k != b.k || a.group_size != b.group_size || a.perm != b.perm)
      return false;
  }
  return true;
}

quant::DecodedWeight stack_rows(const std::vector<Projection>& ps) {
  quant::DecodedWeight out;
  const auto& first = ps.front().wq;
  out.kind = first.kind;
  out.k = first.k;
  out.group_size = first.group_size;
  out.perm = first.perm;
  const bool any_zeros =
      std::any_of(ps.begin(), ps.end(), [](const Projection& p) { return !p.wq.zeros.empty(); });
  for (const Projection& p : ps) {
    const auto& q = p.wq;
    out.n += q.n;
    out.codes.insert(out.codes.end(), q.codes.begin(), q.codes.end());
    out.scales.insert(out.scales.end(), q.scales.begin(), q.scales.end());
    if (any_zeros) {
      if (q.zeros.empty()) {
        out.zeros.resize(out.zeros.size() + q.scales.size(), default_zero(q.kind));
      } else {
        out.zeros.insert(out.zeros.end(), q.zeros.begin(), q.zeros.end());
      }
    }
  }
  return out;
}

// Random codes for benchmarks: int4 in groups of 128 (or per channel when 128 does not divide
// k), int8 per channel; scales such that weights span about ±sqrt(3/k), like the bf16 model.
quant::DecodedWeight random_codes(kernels::cpu::WqKind kind, int64_t n, int64_t k, uint64_t seed) {
  quant::DecodedWeight q;
  q.kind = kind;
  q.n = n;
  q.k = k;
  const bool int4 = kind == kernels::cpu::WqKind::kInt4;
  q.group_size = int4 && k % 128 == 0 ? 128 : k;
  q.codes.resize(size_t(n * k));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  const uint8_t mask = int4 ? 15 : 255;
  for (size_t i = 0; i < q.codes.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (size_t j = 0; j < 8 && i + j < q.codes.size(); ++j)
      q.codes[i + j] = uint8_t(x >> (8 * j)) & mask;
  }
  const float scale = std::sqrt(3.0f / float(k)) / (int4 ? 7.5f : 127.5f);
  q.scales.resize(size_t(n * (k / q.group_size)));
  for (size_t i = 0; i < q.scales.size(); ++i)
    q.scales[i] = scale * (0.75f + 0.5f * float(i % 7) / 7);
  return q;  // symmetric: zero 8 / 128
}

}  // namespace lowbit::models::llama_weights
