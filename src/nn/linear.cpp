#include "nn/linear.h"

#include <algorithm>

#include "core/error.h"
#include "core/half.h"
#include "models/weight_source.h"
#include "quant/registry.h"

namespace lowbit::nn {
namespace {

// Equal rank and lengths, where quant::kAnyLength in `expected` accepts any length. An expected
// [1] also accepts a scalar []: per-tensor scales are stored either way (FORMATS.md §4.1).
bool shape_matches(const std::vector<int64_t>& found, const std::vector<int64_t>& expected) {
  if (found.empty() && expected == std::vector<int64_t>{1}) return true;
  if (found.size() != expected.size()) return false;
  for (size_t i = 0; i < found.size(); ++i)
    if (expected[i] != quant::kAnyLength && found[i] != expected[i]) return false;
  return true;
}

}  // namespace

quant::LinearLayer load_linear_tensors(const std::string& prefix, const std::string& tensor_prefix,
                                       int64_t in_features, int64_t out_features, bool has_bias,
                                       const quant::QuantConfig& config,
                                       const models::WeightSource& source,
                                       std::shared_ptr<const quant::LinearMethod>* method_out) {
  quant::LinearLayer layer;
  layer.prefix = prefix;
  layer.in_features = in_features;
  layer.out_features = out_features;
  layer.has_bias = has_bias;
  auto method = config.get_quant_method(layer, prefix);
  if (!method) {
    static const auto unquantized =
        quant::unquantized_method_info().from_config(nlohmann::json::object());
    method = unquantized->get_quant_method(layer, prefix);
  }
  for (const quant::TensorSpec& spec : method->create_weights(layer)) {
    std::string name = tensor_prefix + "." + spec.suffix;
    const TensorView* t = source.find(name);
    if (!t) {
      if (spec.optional) continue;
      fail("{}: tensor '{}' is missing (layer {}, method {})", source.path(),
           source.stored_name(name), prefix, config.name());
    }
    if (std::find(spec.dtypes.begin(), spec.dtypes.end(), t->dtype) == spec.dtypes.end()) {
      std::string accepted;
      for (DType d : spec.dtypes)
        accepted += (accepted.empty() ? "" : "/") + std::string(::lowbit::name(d));
      fail("{}: tensor '{}' has dtype {}, expected {} (method {})", source.path(),
           source.stored_name(name), ::lowbit::name(t->dtype), accepted, config.name());
    }
    if (!shape_matches(t->shape, spec.shape))
      fail("{}: tensor '{}' has shape {}, expected {}", source.path(), source.stored_name(name),
           shape_string(t->shape), shape_string(spec.shape));
    layer.tensors[spec.suffix] = *t;
  }
  *method_out = std::move(method);
  return layer;
}

Linear load_linear(const std::string& prefix, const std::string& tensor_prefix, int64_t in_features,
                   int64_t out_features, bool has_bias, const quant::QuantConfig& config,
                   const models::WeightSource& source) {
  std::shared_ptr<const quant::LinearMethod> method;
  quant::LinearLayer layer = load_linear_tensors(prefix, tensor_prefix, in_features, out_features,
                                                 has_bias, config, source, &method);
  method->process_weights_after_loading(layer);
  return Linear(std::move(layer), std::move(method));
}

std::vector<float> load_vector(const std::string& name, int64_t length,
                               const models::WeightSource& source) {
  const TensorView* t = source.find(name);
  if (!t) fail("{}: tensor '{}' is missing", source.path(), source.stored_name(name));
  if (t->shape != std::vector<int64_t>{length})
    fail("{}: tensor '{}' has shape {}, expected [{}]", source.path(), source.stored_name(name),
         shape_string(t->shape), length);
  auto values = float_values(*t);
  if (!values)
    fail("{}: tensor '{}' has dtype {}, expected F32/F16/BF16", source.path(),
         source.stored_name(name), ::lowbit::name(t->dtype));
  return std::move(*values);
}

}  // namespace lowbit::nn
