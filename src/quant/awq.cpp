// `awq`: AutoAWQ GEMM checkpoints (FORMATS.md §1). Per quantized linear [N = out, K = in]:
//   qweight I32 [K, N/8]    4-bit codes packed along N in the AWQ interleave (§1.3)
//   qzeros  I32 [K/G, N/8]  4-bit zero points, same packing
//   scales  F16 [K/G, N]    (BF16/F32 accepted too)
//   W[n, k] = (q[k, n] - z[k/G, n]) · s[k/G, n]
// Only version "gemm" (the de-facto standard) with zero points is accepted; gemv / gemv_fast /
// marlin layouts and llm-awq packing are refused by name. lm_head, and modules whose name
// contains an entry of modules_to_not_convert, stay unquantized.
#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "quant/config_fields.h"
#include "quant/int_packing.h"
#include "quant/registry.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {
namespace kc = kernels::cpu;

// Column 8c + j of a packed word lives in slot kAwqSlot[j] (slot s = bits [4s, 4s + 4)); the
// packer wrote slot i from column 8c + [0, 2, 4, 6, 1, 3, 5, 7][i].
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// Unpacks an AWQ-interleaved I32 [rows, N/8] tensor into codes [N, rows] (transposed: the
// kernels want one row per output feature). Rows are taken in blocks so that the 8 output rows
// a word feeds are written in runs and the block's words stay in cache.
std::vector<uint8_t> unpack_awq_transposed(const TensorView& t, int64_t n) {
  const int64_t rows = t.dim(0), words = n / 8;
  std::vector<uint8_t> out(size_t(rows * n));
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    const int64_t r1 = std::min(rows, r0 + kBlock);
    for (int64_t w = 0; w < words; ++w)
      for (int64_t r = r0; r < r1; ++r) {
        const uint32_t word = load_u32(t.data, r * words + w);
        for (int j = 0; j < 8; ++j)
          out[size_t((8 * w + j) * rows + r)] = uint8_t((word >> (4 * kAwqSlot[j])) & 0xF);
      }
  }
  return out;
}

class AwqLinearMethod : public WeightOnlyIntMethod {
 public:
  explicit AwqLinearMethod(int64_t group_size)
      : WeightOnlyIntMethod("awq"), group_size_(group_size) {}

  int64_t group(const LinearLayer& layer) const {
    return group_size_ < 0 ? layer.in_features : group_size_;
  }

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    if (K % G != 0)
      fail("{}: in_features {} is not a multiple of group_size {}", what(layer), K, G);
    if (N % 8 != 0)
      fail("{}: out_features {} is not a multiple of 8 (AWQ packs 8 output columns per int32)",
           what(layer), N);
    std::vector<TensorSpec> specs = {{"qweight", {K, N / 8}, {DType::I32}},
                                     {"qzeros", {K / G, N / 8}, {DType::I32}},
                                     {"scales", {K / G, N}, float_dtypes()}};
    add_bias_spec(layer, specs);
    return specs;
  }

  DecodedWeight decode(const LinearLayer& layer) const override {
    const int64_t K = layer.in_features, N = layer.out_features, G = group(layer);
    // Checkpoint order is [K, N] / [K/G, N]; the kernel wants rows = output features.
    DecodedWeight q;
    q.kind = kc::WqKind::kInt4;
    q.n = N;
    q.k = K;
    q.group_size = G;
    q.codes = unpack_awq_transposed(layer.tensors.at("qweight"), N);
    std::vector<uint8_t> z = unpack_awq_transposed(layer.tensors.at("qzeros"), N);
    q.scales = transposed(float_tensor(layer.tensors.at("scales"), what(layer)), K / G, N);
    q.zeros.assign(z.begin(), z.end());
    return q;
  }

 private:
  int64_t group_size_;
};

class AwqConfig : public QuantConfig {
 public:
  explicit AwqConfig(const nlohmann::json& j) {
    ConfigFields f(j, "awq quantization_config");
    const int64_t bits = f.get_int({"bits", "w_bit"}, 4);
    if (bits != 4)
      fail("{}: bits {} is not supported (AutoAWQ GEMM checkpoints are 4-bit)", f.where(), bits);
    group_size_ = f.get_int({"group_size", "q_group_size"}, 128);
    if (group_size_ == 0 || group_size_ < -1)
      fail(
          "{}: group_size {} is not supported (expected -1 or a positive group size such as "
          "32, 64, 128)",
          f.where(), group_size_);
    std::string version = f.get_string({"version"}, "gemm");
    std::transform(version.begin(), version.end(), version.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    if (version != "gemm")
      fail(
          "{}: version '{}' is not supported; only 'gemm' checkpoints load (gemv, gemv_fast and "
          "marlin use other tensor layouts)",
          f.where(), version);
    const std::string backend = f.get_string({"backend"}, "autoawq");
    if (backend != "autoawq")
      fail("{}: backend '{}' is not supported; only AutoAWQ ('autoawq') GEMM packing loads",
           f.where(), backend);
    if (!f.get_bool({"zero_point"}, true))
      fail(
          "{}: zero_point false (symmetric AWQ, written only by the marlin version) is not "
          "supported; GEMM checkpoints carry zero points",
          f.where());
    not_convert_ = f.get_strings({"modules_to_not_convert"});
    method_ = std::make_shared<AwqLinearMethod>(group_size_);
  }

  std::string name() const override { return "awq"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override {
    return {"quant_config.json", "quantize_config.json"};
  }
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    // AutoAWQ quantizes the linears inside decoder blocks only.
    if (prefix == "lm_head" || prefix.ends_with(".lm_head")) return nullptr;
    for (const std::string& m : not_convert_)
      if (!m.empty() && prefix.find(m) != std::string::npos) return nullptr;
    return method_;
  }

 private:
  int64_t group_size_ = 128;
  std::vector<std::string> not_convert_;
  std::shared_ptr<const AwqLinearMethod> method_;
};

}  // namespace

MethodInfo awq_method_info() {
  return {"awq",
          "AutoAWQ GEMM checkpoints: 4-bit weights with zero points, per-group fp16 scales; CUDA: "
          "W4A16 kernels",
          {"cpu", "cuda"},
          [](const nlohmann::json& j) { return std::make_unique<AwqConfig>(j); }};
}

}  // namespace lowbit::quant
