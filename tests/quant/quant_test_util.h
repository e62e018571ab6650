// Helpers for the method tests: an in-memory WeightSource, independent packers that write
// checkpoint tensors bit by bit from FORMATS.md (not sharing code with src/quant's unpackers),
// and a float64 reference forward of a dequantized weight.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/linear.h"
#include "models/weight_source.h"
#include "nn/linear.h"
#include "quant/registry.h"

namespace lowbit::quant::testing {

using Rng = std::mt19937_64;
using nlohmann::json;

// Tensors held in memory under their HF names.
class FakeSource : public models::WeightSource {
 public:
  void add_bytes(const std::string& name, DType dtype, std::vector<int64_t> shape,
                 std::vector<uint8_t> bytes) {
    auto& e = tensors_[name];
    e.bytes = std::make_unique<std::vector<uint8_t>>(std::move(bytes));
    e.view = TensorView{name, dtype, std::move(shape), e.bytes->data(), e.bytes->size()};
  }
  template <typename T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           const std::vector<T>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    add_bytes(name, dtype, std::move(shape), std::move(bytes));
  }
  // Float values stored as F32, F16 or BF16.
  void add_float(const std::string& name, DType dtype, std::vector<int64_t> shape,
                 const std::vector<float>& v) {
    if (dtype == DType::F32) return add(name, dtype, std::move(shape), v);
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      h[i] = dtype == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
    add(name, dtype, std::move(shape), h);
  }
  void remove(const std::string& name) { tensors_.erase(name); }

  const TensorView* find(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.view;
  }
  std::string stored_name(const std::string& name) const override { return name; }
  std::string path() const override { return "fake.safetensors"; }

 private:
  struct Entry {
    std::unique_ptr<std::vector<uint8_t>> bytes;
    TensorView view;
  };
  std::map<std::string, Entry> tensors_;
};

// The value a float takes after a round trip through `dtype` (so references use stored values).
inline float stored_float(float v, DType dtype) {
  if (dtype == DType::F16) return f16_to_f32(f32_to_f16(v));
  if (dtype == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  return v;
}

// Random scales of varied magnitude, exactly representable in `dtype`.
inline std::vector<float> random_scales(size_t count, DType dtype, Rng& rng) {
  std::uniform_real_distribution<float> u(0.25f, 1.0f);
  std::uniform_int_distribution<int> e(-9, -4);
  std::vector<float> s(count);
  for (auto& v : s) v = stored_float(std::ldexp(u(rng), e(rng)), dtype);
  return s;
}

inline std::vector<float> random_floats(size_t count, Rng& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (auto& x : v) x = u(rng);
  return v;
}

// Sets bit `bit` of a little-endian bitstream of int32 words at words[w · stride].
inline void set_stream_bit(std::vector<int32_t>& words, int64_t base, int64_t stride, int64_t bit) {
  uint32_t& w = reinterpret_cast<uint32_t&>(words[size_t(base + (bit / 32) * stride)]);
  w |= 1u << (bit % 32);
}

// values [rows, n] -> int32 [rows, words]: every row one LSB-first bitstream of `bits`-bit
// values (FORMATS.md §2.2 / §3.4); unused tail bits stay zero.
inline std::vector<int32_t> pack_rows(const std::vector<uint32_t>& values, int64_t rows, int64_t n,
                                      int bits, int64_t words) {
  std::vector<int32_t> out(size_t(rows * words), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      for (int t = 0; t < bits; ++t)
        if ((values[size_t(r * n + j)] >> t) & 1u) set_stream_bit(out, r * words, 1, j * bits + t);
  return out;
}

// values [n, cols] -> int32 [words, cols]: every column one bitstream.
inline std::vector<int32_t> pack_cols(const std::vector<uint32_t>& values, int64_t n, int64_t cols,
                                      int bits, int64_t words) {
  std::vector<int32_t> out(size_t(words * cols), 0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < cols; ++c)
      for (int t = 0; t < bits; ++t)
        if ((values[size_t(j * cols + c)] >> t) & 1u) set_stream_bit(out, c, cols, j * bits + t);
  return out;
}

// y [m, n] = x [m, k] · Wᵀ in float64, W [n, k].
inline std::vector<double> reference_forward(const std::vector<double>& w, int64_t n, int64_t k,
                                             const std::vector<float>& x, int64_t m) {
  std::vector<double> y(size_t(m * n), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < k; ++c) acc += double(x[size_t(r * k + c)]) * w[size_t(j * k + c)];
      y[size_t(r * n + j)] = acc;
    }
  return y;
}

// max |y - ref| / max |ref|.
inline double relative_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double diff = 0, mag = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(y[i]) - ref[i]));
    mag = std::max(mag, std::abs(ref[i]));
  }
  return diff / std::max(mag, 1e-30);
}

inline const MethodRegistry& registry() {
  static const MethodRegistry r = MethodRegistry::builtin();
  return r;
}

// Loads the layer at `prefix` with `config` and checks forward() against W (+ bias) in float64
// for a few batch sizes, with exact fp32 activations and with the default activation mode.
inline void expect_layer_matches(const std::string& prefix, const QuantConfig& config,
                                 const FakeSource& src, const std::vector<double>& w, int64_t n,
                                 int64_t k, const std::vector<float>& bias, Rng& rng,
                                 const std::string& label) {
  nn::Linear lin = nn::load_linear(prefix, prefix, k, n, !bias.empty(), config, src);
  ASSERT_EQ(lin.in_features(), k);
  ASSERT_EQ(lin.out_features(), n);
  EXPECT_GT(lin.weight_bytes(), 0u);
  for (int64_t m : {int64_t(1), int64_t(3)}) {
    std::vector<float> x = random_floats(size_t(m * k), rng);
    std::vector<double> ref = reference_forward(w, n, k, x, m);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < n; ++j) ref[size_t(r * n + j)] += bias.empty() ? 0.0 : bias[j];
    std::vector<float> y(size_t(m * n));
    const bool was_exact = kernels::cpu::exact_activations();
    kernels::cpu::set_exact_activations(true);
    lin.forward(x.data(), m, y.data());
    EXPECT_LT(relative_error(y, ref), 2e-6) << label << " m=" << m << " exact activations";
    kernels::cpu::set_exact_activations(false);
    lin.forward(x.data(), m, y.data());
    // int8 activation blocks (when the kernel uses them) cost up to a few percent here.
    EXPECT_LT(relative_error(y, ref), 4e-2) << label << " m=" << m << " default activations";
    kernels::cpu::set_exact_activations(was_exact);
  }
}

// Runs `f` and expects a lowbit::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (std::getenv("LOWBIT_PRINT_ERRORS")) std::printf("  error: %s\n", msg.c_str());
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

}  // namespace lowbit::quant::testing
