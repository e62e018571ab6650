#include "core/tensor.h"

#include "core/half.h"

namespace lowbit {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::optional<std::vector<float>> float_values(const TensorView& t) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) return std::nullopt;
  std::vector<float> out(static_cast<size_t>(t.numel()));
  const auto* half_bits = reinterpret_cast<const uint16_t*>(t.data);
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::F32)
      out[i] = reinterpret_cast<const float*>(t.data)[i];
    else
      out[i] = t.dtype == DType::F16 ? f16_to_f32(half_bits[i]) : bf16_to_f32(half_bits[i]);
  }
  return out;
}

}  // namespace lowbit
