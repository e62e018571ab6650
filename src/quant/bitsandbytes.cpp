// `bitsandbytes` (FORMATS.md §7): transformers checkpoints saved with BitsAndBytesConfig —
// 4-bit NF4/FP4 (flat blocks of `blocksize` elements with one absmax each, optionally
// double-quantized) and 8-bit LLM.int8 (int8 rows with one absmax per row) — and, forced with
// `--quantization bitsandbytes` on an unquantized checkpoint, online NF4 with blocksize 64 as
// bitsandbytes' quantize_4bit does it. All of them repack into the shared weight-only kernels
// (kernels/cpu/wq_linear.h): bnb blocks run along the flattened weight and may straddle rows,
// so each row is cut into groups of gcd(in_features, blocksize) columns that each lie inside
// one block (rtn.h: bnb_blocks_to_groups).
//
// LLM.int8's outlier decomposition (activation columns above llm_int8_threshold in fp16) is a
// run-time trick for int8 activations; with fp32 activations every column is computed exactly
// against the stored int8 weights, so nothing is lost by ignoring it.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quant/config_fields.h"
#include "quant/registry.h"
#include "quant/rtn.h"
#include "quant/weight_only_method.h"

namespace lowbit::quant {
namespace {
namespace kc = kernels::cpu;
using nlohmann::json;

constexpr int64_t kOnlineBlocksize = 64;
constexpr int64_t kMaxQuantStateBytes = 1 << 16;

enum class BnbMode { kOnlineNf4, kFourBit, kEightBit };

const float* as_f32(const TensorView& t) { return reinterpret_cast<const float*>(t.data); }

bool is_pow2_in(int64_t v, int64_t lo, int64_t hi) {
  return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

int64_t blocks_of(int64_t numel, int64_t blocksize) { return (numel + blocksize - 1) / blocksize; }

// ---- 4-bit checkpoints -----------------------------------------------------------------------

struct QuantState {
  kc::WqKind kind = kc::WqKind::kNf4;
  int64_t blocksize = 64;
  bool nested = false;
  int64_t nested_blocksize = 256;
  float nested_offset = 0;
};

// Parses weight.quant_state.bitsandbytes__{nf4,fp4} (UTF-8 JSON, FORMATS.md §7.2).
QuantState parse_quant_state(const LinearLayer& layer) {
  const auto nf4 = layer.tensors.find("weight.quant_state.bitsandbytes__nf4");
  const auto fp4 = layer.tensors.find("weight.quant_state.bitsandbytes__fp4");
  const bool has_nf4 = nf4 != layer.tensors.end(), has_fp4 = fp4 != layer.tensors.end();
  if (has_nf4 == has_fp4)
    fail("{}: expected exactly one of weight.quant_state.bitsandbytes__nf4 / __fp4, found {}",
         layer.prefix, has_nf4 ? "both" : "neither");
  const TensorView& t = has_nf4 ? nf4->second : fp4->second;
  const std::string where = layer.prefix + "." + (has_nf4 ? nf4->first : fp4->first);
  if (t.nbytes > uint64_t(kMaxQuantStateBytes))
    fail("{}: {} bytes of JSON, expected at most {}", where, t.nbytes, kMaxQuantStateBytes);
  json j;
  try {
    j = json::parse(t.data, t.data + t.nbytes);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", where, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object, found {}", where, j.type_name());
  ConfigFields f(j, where);
  QuantState s;
  s.kind = has_nf4 ? kc::WqKind::kNf4 : kc::WqKind::kFp4;
  const std::string type = f.get_string({"quant_type"}, "");
  if (type != (has_nf4 ? "nf4" : "fp4"))
    fail("{}: quant_type '{}' does not match the tensor name (expected '{}')", where, type,
         has_nf4 ? "nf4" : "fp4");
  s.blocksize = f.get_int({"blocksize"}, -1);
  if (!is_pow2_in(s.blocksize, 32, 4096))
    fail("{}: blocksize {}, expected a power of two in 32..4096", where, s.blocksize);
  if (f.has({"shape"})) {
    const json& shape = j["shape"];
    if (shape != json::array({layer.out_features, layer.in_features}))
      fail("{}: shape {}, expected [{}, {}]", where, shape.dump(), layer.out_features,
           layer.in_features);
  }
  s.nested = f.has({"nested_offset"}) || f.has({"nested_blocksize"});
  if (s.nested) {
    s.nested_blocksize = f.get_int({"nested_blocksize"}, -1);
    if (!is_pow2_in(s.nested_blocksize, 32, 4096))
      fail("{}: nested_blocksize {}, expected a power of two in 32..4096", where,
           s.nested_blocksize);
    if (!j.contains("nested_offset") || !j["nested_offset"].is_number())
      fail("{}: nested quantization without a numeric nested_offset", where);
    s.nested_offset = j["nested_offset"].get<float>();
    if (!std::isfinite(s.nested_offset))
      fail("{}: nested_offset {}, expected a finite value", where, s.nested_offset);
    const std::string nested_dtype = f.get_string({"nested_dtype"}, "float32");
    if (nested_dtype != "float32")
      fail("{}: nested_dtype '{}', expected 'float32'", where, nested_dtype);
  }
  return s;
}

// The tensor at `suffix`, with its element count checked (its shape is declared kAnyLength).
const TensorView& tensor_with_length(const LinearLayer& layer, const std::string& suffix,
                                     int64_t expected) {
  auto it = layer.tensors.find(suffix);
  if (it == layer.tensors.end()) fail("{}.{} is missing", layer.prefix, suffix);
  if (it->second.numel() != expected)
    fail("{}.{}: {} elements, expected {}", layer.prefix, suffix, it->second.numel(), expected);
  return it->second;
}

void check_finite(const float* v, int64_t count, const std::string& what) {
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(v[i])) fail("{}[{}] = {}, expected a finite value", what, i, v[i]);
}

// Per-block absmax in fp32: stored directly, or double-quantized as
// nested_quant_map[absmax_u8[i]] · nested_absmax[i / nested_blocksize] + nested_offset.
std::vector<float> block_absmax(const LinearLayer& layer, const QuantState& s, int64_t blocks) {
  const TensorView& absmax = tensor_with_length(layer, "weight.absmax", blocks);
  const bool has_nested_tensors =
      layer.tensors.count("weight.nested_absmax") || layer.tensors.count("weight.nested_quant_map");
  std::vector<float> out(static_cast<size_t>(blocks));
  if (!s.nested) {
    if (absmax.dtype != DType::F32 || has_nested_tensors)
      fail(
          "{}.weight.absmax: {} with{} nested tensors, but the quant_state has no nested "
          "quantization (expected F32 absmax and no nested_absmax / nested_quant_map)",
          layer.prefix, name(absmax.dtype), has_nested_tensors ? "" : "out");
    std::copy_n(as_f32(absmax), blocks, out.begin());
    check_finite(out.data(), blocks, layer.prefix + ".weight.absmax");
    return out;
  }
  if (absmax.dtype != DType::U8)
    fail("{}.weight.absmax: dtype {}, expected U8 (the quant_state says nested quantization)",
         layer.prefix, name(absmax.dtype));
  const TensorView& nested_absmax =
      tensor_with_length(layer, "weight.nested_absmax", blocks_of(blocks, s.nested_blocksize));
  const TensorView& nested_map = tensor_with_length(layer, "weight.nested_quant_map", 256);
  check_finite(as_f32(nested_absmax), nested_absmax.numel(),
               layer.prefix + ".weight.nested_absmax");
  check_finite(as_f32(nested_map), 256, layer.prefix + ".weight.nested_quant_map");
  for (int64_t i = 0; i < blocks; ++i)
    out[size_t(i)] =
        as_f32(nested_map)[absmax.data[i]] * as_f32(nested_absmax)[i / s.nested_blocksize] +
        s.nested_offset;
  return out;
}

// The stored quant_map must be the standard table the kernels use (bnb only ever writes it).
void check_quant_map(const LinearLayer& layer, kc::WqKind kind) {
  const float* stored = as_f32(layer.tensors.at("weight.quant_map"));
  const float* expected = kc::wq_lut(kind);
  for (int i = 0; i < 16; ++i)
    if (!(std::abs(stored[i] - expected[i]) <= 1e-6f))
      fail(
          "{}.weight.quant_map[{}] = {}, expected {} (the standard bitsandbytes {} table; "
          "custom code books are not supported)",
          layer.prefix, i, stored[i], expected[i], kc::wq_kind_name(kind));
}

QuantizedWeight decode_4bit(const LinearLayer& layer) {
  const QuantState s = parse_quant_state(layer);
  const int64_t n = layer.out_features, k = layer.in_features, numel = n * k;
  check_quant_map(layer, s.kind);
  std::vector<float> absmax = block_absmax(layer, s, blocks_of(numel, s.blocksize));
  // Two codes per byte, flat element e in the high nibble when e is even.
  const uint8_t* packed = layer.tensors.at("weight").data;
  std::vector<uint8_t> codes(static_cast<size_t>(numel));
  for (int64_t e = 0; e < numel; ++e)
    codes[size_t(e)] = (e % 2 == 0) ? packed[e / 2] >> 4 : packed[e / 2] & 0xF;
  return bnb_blocks_to_groups(s.kind, std::move(codes), absmax, n, k, s.blocksize);
}

// ---- 8-bit (LLM.int8) checkpoints ------------------------------------------------------------

QuantizedWeight decode_8bit(const LinearLayer& layer) {
  const int64_t n = layer.out_features, k = layer.in_features;
  if (auto it = layer.tensors.find("weight_format"); it != layer.tensors.end()) {
    if (it->second.nbytes != 1)
      fail("{}.weight_format: {} bytes, expected one U8", layer.prefix, it->second.nbytes);
    if (it->second.data[0] != 0)
      fail(
          "{}.weight_format = {}, expected 0 (\"row\"; the col32/turing/ampere layouts are "
          "legacy and not loadable)",
          layer.prefix, int(it->second.data[0]));
  }
  const float* scb = as_f32(layer.tensors.at("SCB"));
  check_finite(scb, n, layer.prefix + ".SCB");
  // W = CB · SCB / 127 = (code − 128) · scale with code = CB + 128 (the symmetric int8 zero).
  QuantizedWeight q;
  q.kind = kc::WqKind::kInt8;
  q.n = n;
  q.k = k;
  q.group_size = k;
  q.codes.resize(size_t(n * k));
  const auto* cb = reinterpret_cast<const int8_t*>(layer.tensors.at("weight").data);
  for (int64_t i = 0; i < n * k; ++i) q.codes[size_t(i)] = uint8_t(int(cb[i]) + 128);
  q.scales.resize(size_t(n));
  for (int64_t j = 0; j < n; ++j) q.scales[size_t(j)] = scb[j] / 127.0f;
  return q;
}

// ---- the method ------------------------------------------------------------------------------

class BnbMethod : public WeightOnlyIntMethod {
 public:
  explicit BnbMethod(BnbMode mode) : WeightOnlyIntMethod("bitsandbytes"), mode_(mode) {}

  std::vector<TensorSpec> create_weights(const LinearLayer& layer) const override {
    const int64_t n = layer.out_features, k = layer.in_features;
    std::vector<TensorSpec> specs;
    switch (mode_) {
      case BnbMode::kOnlineNf4:
        specs = {{"weight", {n, k}, {DType::F32, DType::F16, DType::BF16}, false}};
        break;
      case BnbMode::kFourBit:
        specs = {
            {"weight", {(n * k + 1) / 2, 1}, {DType::U8}, false},
            {"weight.absmax", {kAnyLength}, {DType::F32, DType::U8}, false},
            {"weight.quant_map", {16}, {DType::F32}, false},
            {"weight.nested_absmax", {kAnyLength}, {DType::F32}, true},
            {"weight.nested_quant_map", {256}, {DType::F32}, true},
            {"weight.quant_state.bitsandbytes__nf4", {kAnyLength}, {DType::U8}, true},
            {"weight.quant_state.bitsandbytes__fp4", {kAnyLength}, {DType::U8}, true},
        };
        break;
      case BnbMode::kEightBit:
        specs = {{"weight", {n, k}, {DType::I8}, false},
                 {"SCB", {n}, {DType::F32}, false},
                 {"weight_format", {}, {DType::U8}, true}};
        break;
    }
    add_bias_spec(layer, specs);
    return specs;
  }

  DecodedWeight decode(const LinearLayer& layer) const override {
    QuantizedWeight q;
    switch (mode_) {
      case BnbMode::kOnlineNf4: {
        std::vector<float> w = finite_weight_values(layer, "bitsandbytes");
        const int64_t n = layer.out_features, k = layer.in_features;
        Bnb4bitBlocks b = bnb_quantize_4bit(kc::WqKind::kNf4, w.data(), n * k, kOnlineBlocksize);
        q = bnb_blocks_to_groups(kc::WqKind::kNf4, std::move(b.codes), b.absmax, n, k,
                                 kOnlineBlocksize);
        break;
      }
      case BnbMode::kFourBit:
        q = decode_4bit(layer);
        break;
      case BnbMode::kEightBit:
        q = decode_8bit(layer);
        break;
    }
    return {std::move(q)};
  }

 private:
  BnbMode mode_;
};

class BnbConfig : public QuantConfig {
 public:
  BnbConfig(BnbMode mode, std::vector<std::string> skip_modules)
      : method_(std::make_shared<BnbMethod>(mode)), skip_modules_(std::move(skip_modules)) {}

  std::string name() const override { return "bitsandbytes"; }
  std::vector<std::string> supported_act_dtypes() const override { return {"f32"}; }
  int min_capability() const override { return -1; }
  std::vector<std::string> config_filenames() const override { return {}; }
  // transformers leaves lm_head (and the tied embedding) unquantized, plus every module whose
  // name contains an llm_int8_skip_modules entry.
  std::shared_ptr<const LinearMethod> get_quant_method(const LinearLayer&,
                                                       const std::string& prefix) const override {
    if (prefix == "lm_head") return nullptr;
    for (const std::string& skip : skip_modules_)
      if (!skip.empty() && prefix.find(skip) != std::string::npos) return nullptr;
    return method_;
  }

 private:
  std::shared_ptr<const BnbMethod> method_;
  std::vector<std::string> skip_modules_;
};

std::unique_ptr<QuantConfig> bnb_from_config(const json& config) {
  if (config.is_object() && config.empty())
    return std::make_unique<BnbConfig>(BnbMode::kOnlineNf4, std::vector<std::string>{});
  ConfigFields f(config, "bitsandbytes quantization_config");
  const bool four = f.get_bool({"load_in_4bit", "_load_in_4bit"}, false);
  const bool eight = f.get_bool({"load_in_8bit", "_load_in_8bit"}, false);
  if (four == eight)
    fail(
        "bitsandbytes quantization_config: load_in_4bit={} and load_in_8bit={}, expected "
        "exactly one to be true",
        four, eight);
  if (four) {
    const std::string storage = f.get_string({"bnb_4bit_quant_storage"}, "uint8");
    if (storage != "uint8")
      fail("bitsandbytes quantization_config: bnb_4bit_quant_storage '{}', expected 'uint8'",
           storage);
    const std::string type = f.get_string({"bnb_4bit_quant_type"}, "fp4");
    if (type != "nf4" && type != "fp4")
      fail("bitsandbytes quantization_config: bnb_4bit_quant_type '{}', expected nf4 or fp4", type);
  } else if (f.get_bool({"llm_int8_has_fp16_weight"}, false)) {
    fail(
        "bitsandbytes quantization_config: llm_int8_has_fp16_weight=true (the weights are not "
        "int8 in the checkpoint); expected false");
  }
  return std::make_unique<BnbConfig>(four ? BnbMode::kFourBit : BnbMode::kEightBit,
                                     f.get_strings({"llm_int8_skip_modules"}));
}

}  // namespace

MethodInfo bitsandbytes_method_info() {
  MethodInfo info;
  info.name = "bitsandbytes";
  info.description =
      "bitsandbytes checkpoints: 4-bit NF4/FP4 (double quantization too) and 8-bit LLM.int8; "
      "online: NF4 with blocksize 64; CUDA: 8-bit only (W8A16 kernels)";
  info.backends = {"cpu", "cuda"};
  info.from_config = bnb_from_config;
  info.quantizes_online = true;
  return info;
}

}  // namespace lowbit::quant
