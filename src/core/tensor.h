// A read-only view of a tensor stored in a mapped file (or any buffer that outlives it).
// Shapes are in PyTorch order: shape.back() is the innermost (fastest-varying) dimension;
// GGUF's ne[] is reversed into this order by the reader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lowbit {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[576, 49152]"

// The values of an F32/F16/BF16 tensor as fp32; nullopt for any other dtype (callers name
// the tensor in their error).
std::optional<std::vector<float>> float_values(const TensorView& t);

}  // namespace lowbit
