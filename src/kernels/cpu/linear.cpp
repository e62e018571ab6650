#include "kernels/cpu/linear.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/kquant_dot.h"     // K-quant int8-activation path
#include "kernels/cpu/q8_activation.h"  // q8act: int8-activation path
#include "kernels/cpu/vec.h"

namespace lowbit::kernels::cpu {

void check_weight_matrix(const WeightMatrix& w, int64_t m, const char* op) {
  if (w.n < 0 || w.k < 0 || m < 0)
    fail("{}: negative size (n={}, k={}, m={}), expected sizes >= 0", op, w.n, w.k, m);
  const uint32_t be = traits(w.dtype).block_elems;
  if (w.k % be != 0)
    fail("{}: {} weight row length k={} is not a multiple of the block size {}", op, name(w.dtype),
         w.k, be);
  if (w.n > 0 && w.k > 0 && !w.data)
    fail("{}: {} weight [{}, {}] has no data", op, name(w.dtype), w.n, w.k);
  if (!dtype_bytes(w.dtype, uint64_t(w.k)))
    fail("{}: {} row of {} elements overflows the byte size", op, name(w.dtype), w.k);
}

namespace {

// Checks what every entry point relies on; one line naming what was found and expected.
void validate(const WeightMatrix& w, int64_t m) {
  if (!cpu_kernel_supports(w.dtype))
    fail("linear: weight dtype {} has no CPU kernel (supported: {})", name(w.dtype),
         cpu_kernel_supported_list());
  check_weight_matrix(w, m, "linear");
}

const uint8_t* row_ptr(const WeightMatrix& w, int64_t row) {
  return static_cast<const uint8_t*>(w.data) + uint64_t(row) * *dtype_bytes(w.dtype, uint64_t(w.k));
}

// Scalar fast-path stand-in: dequantize one row at a time and accumulate in fp32 with four
// lanes. Rows are independent, so a NaN in one activation row stays in its output row.
void linear_scalar(const WeightMatrix& w, const float* x, int64_t m, float* y) {
#pragma omp parallel if (w.n * w.k * (m + 1) > (int64_t(1) << 18))
  {
    std::vector<float> row(size_t(w.k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < w.n; ++j) {
      dequantize_ref(w.dtype, row_ptr(w, j), w.k, row.data());
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * w.k;
        float s[4] = {0, 0, 0, 0};
        int64_t t = 0;
        for (; t + 4 <= w.k; t += 4)
          for (int l = 0; l < 4; ++l) s[l] += row[size_t(t + l)] * xi[t + l];
        for (; t < w.k; ++t) s[0] += row[size_t(t)] * xi[t];
        y[i * w.n + j] = (s[0] + s[1]) + (s[2] + s[3]);
      }
    }
  }
}

// Formats with fp32-activation SIMD kernels in x86/linear_avx*.cpp. Every other supported
// format (K / IQ / TQ / MXFP4 / Q8_1 / Q8_K) runs linear_decoded_rows at any SIMD level:
// correct for all formats, about as fast as the weights decode. Add a format here when its
// x86 kernels learn it.
bool has_isa_kernel(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
      return true;
    default:
      return false;
  }
}

// Generic fallback: each weight row is decoded once per call into fp32 (reference decoder,
// bit-exact with llama.cpp's dequantization) and dotted with all m activation rows using the
// SIMD dot product of `isa`. Weight rows are split over OpenMP threads.
void linear_decoded_rows(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y) {
#pragma omp parallel if (w.n * w.k * (m + 1) > (int64_t(1) << 18))
  {
    std::vector<float> row(size_t(w.k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < w.n; ++j) {
      dequantize_ref(w.dtype, row_ptr(w, j), w.k, row.data());
      for (int64_t i = 0; i < m; ++i)
        y[i * w.n + j] = dot_f32_isa(isa, row.data(), x + i * w.k, w.k);
    }
  }
}

// q8act: the process-wide activation-precision setting, defaulted from the environment once.
std::atomic<bool>& exact_flag() {
  static std::atomic<bool> flag = [] {
    const char* env = std::getenv("LOWBIT_EXACT_ACTIVATIONS");
    return env != nullptr && std::strcmp(env, "1") == 0;
  }();
  return flag;
}

}  // namespace

void set_exact_activations(bool exact) { exact_flag().store(exact, std::memory_order_relaxed); }

bool exact_activations() { return exact_flag().load(std::memory_order_relaxed); }

std::string cannot_implement(DType dtype) {
  if (cpu_kernel_supports(dtype)) return "";
  return std::string(name(dtype)) + ": no CPU kernel yet (CPU kernels support " +
         cpu_kernel_supported_list() + ")";
}

void linear_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y) {
  require_isa(isa);
  validate(w, m);
  if (m == 0 || w.n == 0) return;
  if (w.k == 0) {
    for (int64_t i = 0; i < m * w.n; ++i) y[i] = 0.0f;
    return;
  }
  if (!has_isa_kernel(w.dtype)) return linear_decoded_rows(isa, w, x, m, y);
  switch (isa) {
    case Isa::kAvx512:
      return avx512::linear(w, x, m, y);
    case Isa::kAvx2:
      return avx2::linear(w, x, m, y);
    default:
      return linear_scalar(w, x, m, y);
  }
}

void linear(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  // q8act: 32-element block weights default to llama.cpp-style int8 activations
  // (q8_activation.h); exact_activations() keeps the fp32-activation kernels.
  if (!exact_activations() && q8_activation_supports(w.dtype))
    return linear_q8_isa(active_isa(), w, x, m, y);
  // K-quants, IQ4_XS/IQ4_NL, MXFP4: the same with Q8_K / Q8_0 activations (kquant_dot.h).
  if (!exact_activations() && kquant_supports(w.dtype))
    return linear_kquant_isa(active_isa(), w, x, m, y);
  linear_isa(active_isa(), w, x, m, y);
}

void dequantize_row_isa(Isa isa, const WeightMatrix& w, int64_t row, float* out) {
  require_isa(isa);
  validate(w, 1);
  if (row < 0 || row >= w.n)
    fail("dequantize_row: row {} out of range for a {} weight with {} rows", row, name(w.dtype),
         w.n);
  if (w.k == 0) return;
  if (!has_isa_kernel(w.dtype)) return dequantize_ref(w.dtype, row_ptr(w, row), w.k, out);
  switch (isa) {
    case Isa::kAvx512:
      return avx512::dequantize_row(w, row, out);
    case Isa::kAvx2:
      return avx2::dequantize_row(w, row, out);
    default:
      return dequantize_ref(w.dtype, row_ptr(w, row), w.k, out);
  }
}

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  dequantize_row_isa(active_isa(), w, row, out);
}

void linear_reference(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  validate(w, m);
  std::vector<float> row(size_t(w.k));
  for (int64_t j = 0; j < w.n; ++j) {
    dequantize_ref(w.dtype, row_ptr(w, j), w.k, row.data());
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t t = 0; t < w.k; ++t) s += double(row[size_t(t)]) * double(x[i * w.k + t]);
      y[i * w.n + j] = float(s);
    }
  }
}

}  // namespace lowbit::kernels::cpu
