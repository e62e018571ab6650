#include "models/w8_checkpoint_cuda.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "quant/fp8_checkpoint.h"
#include "quant/weight_only_method.h"

namespace lowbit::models {
namespace {

namespace kc = kernels::cuda;
using Kind = W8StoredWeight::Kind;
using Scales = quant::Fp8Scheme::Scales;

void notice(W8Notices& printed, const std::string& line) {
  if (printed.insert(line).second) std::fprintf(stderr, "lowbit: %s\n", line.c_str());
}

// The one line for an FP8 scheme whose activations the GPU quantizes otherwise than the
// checkpoint declares ("" when they agree).
std::string fp8_activation_notice(const quant::Fp8CheckpointMethod& m, bool block128) {
  const quant::ActQuant& a = m.scheme().act;
  const std::string head = m.method_name() + " (" + m.scheme().label + ")";
  const std::string gpu =
      block128 ? "dynamically per 1x128 group of each token" : "dynamically per token";
  if (a.kind == quant::ActQuant::Kind::kStatic)
    return head + ": the GPU's FP8 kernels take no static activation scale: activations are " +
           "quantized " + gpu + " on the GPU (the checkpoint's input_scale is not used)";
  if (a.kind == quant::ActQuant::Kind::kNone)
    return head + ": the checkpoint leaves activations unquantized (FP8 W8A16); the GPU's FP8 " +
           "GEMM quantizes them " + gpu + " (decode steps of up to 2 tokens keep them bf16)";
  if (block128 ? a.group != 128 : a.group != 0)
    return head + ": activations are declared " + a.label() + "; the GPU quantizes them " + gpu;
  return "";
}

W8StoredWeight read_fp8(const quant::LinearLayer& layer, const quant::Fp8CheckpointMethod& m,
                        W8Notices& notices) {
  const quant::Fp8Scheme& s = m.scheme();
  quant::Fp8StoredWeight d = m.decode(layer);
  W8StoredWeight w;
  w.n = d.n;
  w.k = d.k;
  const bool block = s.scales == Scales::kBlock;
  if (block && (s.block_n != 128 || s.block_k != 128)) {
    // No kernel has these blocks: the CPU's bf16 weight, activations unquantized.
    notice(notices, fmt::format("{} ({}): the GPU's FP8 kernels take 128x128 blocks only: weights "
                                "are dequantized to bf16 (as on the CPU) and run unquantized",
                                m.method_name(), s.label));
    w.kind = Kind::kBf16;
    w.bf16 = m.dequantize_bf16(d);
    return w;
  }
  if (const std::string line = fp8_activation_notice(m, block); !line.empty())
    notice(notices, line);
  w.kind = Kind::kFp8;
  w.codes.assign(d.codes, d.codes + d.n * d.k);
  if (block) {
    w.scaling = kc::Fp8Scaling::kBlock128;
    w.scales = std::move(d.scales);  // [ceil(n/128), ceil(k/128)] row-major, as stored
  } else {
    w.scaling = kc::Fp8Scaling::kRowwise;
    w.scales = s.scales == Scales::kTensor ? std::vector<float>(size_t(d.n), d.scales[0])
                                           : std::move(d.scales);
  }
  return w;
}

// Why an int W8A8 / W4A8 weight cannot run on the int8 W8A8 kernel ("" when it can).
std::string int8_w8a8_refusal(const quant::DecodedWeight& d, const quant::ActQuant& a) {
  if (d.kind != kernels::cpu::WqKind::kInt8) return "4-bit weights";
  if (a.fp8 || a.kind != quant::ActQuant::Kind::kDynamic || a.group != 0)
    return "activations " + a.label() + " (the kernel quantizes int8 per token)";
  if (d.group_size != d.k) return fmt::format("group-{} weight scales", d.group_size);
  if (!d.perm.empty()) return "act-order weights";
  if (std::any_of(d.zeros.begin(), d.zeros.end(), [](float z) { return z != 128.0f; }))
    return "asymmetric weights";
  return "";
}

std::optional<W8StoredWeight> read_int8(const quant::LinearLayer& layer,
                                        const quant::WeightOnlyIntMethod& m, W8Notices& notices) {
  const quant::ActQuant a = m.activations();
  if (!a.active()) return std::nullopt;  // weight-only: the wq kernels
  quant::DecodedWeight d = m.decode(layer);
  if (const std::string why = int8_w8a8_refusal(d, a); !why.empty()) {
    notice(notices, fmt::format("{}: the int8 W8A8 kernel does not take {}: these layers run "
                                "weight-only (activations not quantized on the GPU)",
                                m.method_name(), why));
    return std::nullopt;
  }
  W8StoredWeight w;
  w.kind = Kind::kInt8;
  w.n = d.n;
  w.k = d.k;
  w.codes.resize(d.codes.size());
  for (size_t i = 0; i < d.codes.size(); ++i)  // code = q + 128: back to the stored int8 byte
    w.codes[i] = uint8_t(d.codes[i] ^ 0x80);
  w.scales = std::move(d.scales);  // [n]: one group spans k
  return w;
}

}  // namespace

std::optional<W8StoredWeight> read_w8_checkpoint(const quant::LinearLayer& layer,
                                                 const quant::LinearMethod& method,
                                                 W8Notices& notices) {
  if (auto* f = dynamic_cast<const quant::Fp8CheckpointMethod*>(&method))
    return read_fp8(layer, *f, notices);
  if (auto* w = dynamic_cast<const quant::WeightOnlyIntMethod*>(&method))
    return read_int8(layer, *w, notices);
  return std::nullopt;
}

bool w8_stackable(const std::vector<const W8StoredWeight*>& ws) {
  const W8StoredWeight& a = *ws.front();
  for (size_t i = 0; i < ws.size(); ++i) {
    const W8StoredWeight& b = *ws[i];
    if (b.kind != a.kind || b.k != a.k || (a.kind == Kind::kFp8 && b.scaling != a.scaling))
      return false;
    // Block rows of one projection must not spill into the next one's.
    if (b.kind == Kind::kFp8 && b.scaling == kc::Fp8Scaling::kBlock128 && i + 1 < ws.size() &&
        b.n % 128 != 0)
      return false;
  }
  return true;
}

kc::GpuLinear make_w8_linear(const std::vector<const W8StoredWeight*>& ws, const std::string& what,
                             const kc::GpuLinearOptions& options, cudaStream_t stream) {
  LOWBIT_CHECK(!ws.empty() && w8_stackable(ws), "{}: 8-bit weights that do not stack", what);
  const W8StoredWeight* w = ws.front();
  W8StoredWeight stacked;
  if (ws.size() > 1) {
    stacked.kind = w->kind;
    stacked.scaling = w->scaling;
    stacked.k = w->k;
    for (const W8StoredWeight* p : ws) {
      stacked.n += p->n;
      stacked.codes.insert(stacked.codes.end(), p->codes.begin(), p->codes.end());
      stacked.scales.insert(stacked.scales.end(), p->scales.begin(), p->scales.end());
      stacked.bf16.insert(stacked.bf16.end(), p->bf16.begin(), p->bf16.end());
    }
    w = &stacked;
  }
  switch (w->kind) {
    case Kind::kFp8:
      return kc::GpuLinear::fp8_stored(w->codes.data(), w->scales, w->n, w->k, w->scaling, what,
                                       options, stream);
    case Kind::kInt8:
      return kc::GpuLinear::int8_stored(reinterpret_cast<const int8_t*>(w->codes.data()), w->scales,
                                        w->n, w->k, what, options, stream);
    case Kind::kBf16:
      break;
  }
  return kc::GpuLinear::bf16_copy(w->bf16.data(), w->n, w->k, what, options);
}

}  // namespace lowbit::models
