#include "kernels/cpu/q8_activation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa_kernels.h"

namespace lowbit::kernels::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// One block of 32. Returns d = amax/127 in fp32 (before fp16 rounding), NaN when the block
// holds a NaN/Inf (then q = 0). Two roundings of x·id:
//   ggml_cpu (what llama.cpp computes with on x86: quantize_row_q8_{0,1} in
//     ggml-cpu/arch/x86/quants.c, AVX2 path): id = 127/amax, round to nearest even;
//   ref (ggml-quants.c quantize_row_q8_{0,1}_ref, gguf-py): id = 1/d, roundf (ties away).
// They differ where x·id lands within an ulp of a half. The clamp and the id guard only matter
// where llama.cpp is undefined (amax subnormal).
float quantize_block_scalar(const float* x, int8_t* q, int32_t* sum, bool ggml_cpu) {
  float amax = 0.0f;
  bool finite = true;
  for (int j = 0; j < 32; ++j) {
    finite = finite && std::isfinite(x[j]);
    amax = std::max(amax, std::fabs(x[j]));
  }
  *sum = 0;
  if (!finite) {
    std::memset(q, 0, 32);
    return kNaN;
  }
  const float d = amax / 127.0f;
  float id = ggml_cpu ? (amax != 0.0f ? 127.0f / amax : 0.0f) : (d != 0.0f ? 1.0f / d : 0.0f);
  if (!std::isfinite(id)) id = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float r = ggml_cpu ? std::nearbyint(x[j] * id) : std::roundf(x[j] * id);
    const float v = std::min(127.0f, std::max(-127.0f, r));
    q[j] = int8_t(v);
    *sum += q[j];
  }
  return d;
}

uint16_t f16_of(float d) { return std::isnan(d) ? uint16_t(0x7E00) : f32_to_f16(d); }

int32_t weight_offset(DType t) { return t == DType::Q4_0 ? 8 : t == DType::Q5_0 ? 16 : 0; }

void quantize_blocks_scalar(const float* x, int64_t nb, int8_t* qs, float* d, int32_t* sums) {
  int8_t q[32];
  for (int64_t b = 0; b < nb; ++b) {
    d[b] = quantize_block_scalar(x + 32 * b, q, &sums[b], /*ggml_cpu=*/true);
    int64_t lo, hi;
    q8_half_offsets(b, nb, &lo, &hi);
    std::memcpy(qs + lo, q, 16);
    std::memcpy(qs + hi, q + 16, 16);
  }
}

// ---- Scalar reference dot (ggml_vec_dot_q*_q8_*_generic, one weight row, one x row) -------

float load_h(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Integer weight values of one block, element order, with the format's offset subtracted.
void weight_ints(DType t, const uint8_t* p, int32_t* v) {
  switch (t) {
    case DType::Q8_0:
      for (int j = 0; j < 32; ++j) v[j] = int8_t(p[2 + j]);
      return;
    case DType::Q4_0:
    case DType::Q4_1: {
      const uint8_t* qs = p + (t == DType::Q4_0 ? 2 : 4);
      const int32_t off = t == DType::Q4_0 ? 8 : 0;
      for (int j = 0; j < 16; ++j) {
        v[j] = (qs[j] & 15) - off;
        v[j + 16] = (qs[j] >> 4) - off;
      }
      return;
    }
    default: {  // Q5_0, Q5_1
      const uint8_t* qhp = p + (t == DType::Q5_0 ? 2 : 4);
      uint32_t qh;
      std::memcpy(&qh, qhp, 4);
      const uint8_t* qs = qhp + 4;
      const int32_t off = t == DType::Q5_0 ? 16 : 0;
      for (int j = 0; j < 16; ++j) {
        v[j] = ((qs[j] & 15) | int32_t((qh >> j) & 1) << 4) - off;
        v[j + 16] = ((qs[j] >> 4) | int32_t((qh >> (j + 16)) & 1) << 4) - off;
      }
      return;
    }
  }
}

void q8_linear_scalar(const WeightMatrix& w, const Q8Activations& a, float* y) {
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const size_t block_bytes = traits(w.dtype).block_bytes;
  const bool has_min = w.dtype == DType::Q4_1 || w.dtype == DType::Q5_1;
  const auto* base = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for schedule(static) if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t j = 0; j < w.n; ++j) {
    for (int64_t i = 0; i < a.m; ++i) {
      const int8_t* xq = a.qs.data() + i * a.k;
      const float* ds = a.ds.data() + i * a.pairs * 4;
      float sumf = 0.0f;
      for (int64_t b = 0; b < a.nb; ++b) {
        const uint8_t* blk = base + size_t(j) * row_bytes + size_t(b) * block_bytes;
        int32_t v[32];
        weight_ints(w.dtype, blk, v);
        int64_t lo, hi;
        q8_half_offsets(b, a.nb, &lo, &hi);
        int32_t sumi0 = 0, sumi1 = 0;
        for (int t = 0; t < 16; ++t) {
          sumi0 += v[t] * xq[lo + t];
          sumi1 += v[t + 16] * xq[hi + t];
        }
        const float dx = ds[4 * (b / 2) + (b & 1)], sx = ds[4 * (b / 2) + 2 + (b & 1)];
        const float d = load_h(blk) * dx;
        if (has_min) {
          sumf += d * float(sumi0 + sumi1) + load_h(blk + 2) * sx;
        } else {
          sumf += d * float(sumi0 + sumi1);
        }
      }
      y[i * w.n + j] = sumf;
    }
  }
}

void validate(const WeightMatrix& w, int64_t m) {
  if (!q8_activation_supports(w.dtype))
    fail(
        "linear_q8: weight dtype {} has no int8-activation kernel (expected Q4_0, Q4_1, Q5_0, "
        "Q5_1 or Q8_0)",
        name(w.dtype));
  check_weight_matrix(w, m, "linear_q8");
}

}  // namespace

namespace {

void quantize_row_q8_0_as(const float* x, int64_t k, BlockQ8_0* y, bool ggml_cpu) {
  for (int64_t b = 0; b < k / 32; ++b) {
    int32_t sum;
    y[b].d = f16_of(quantize_block_scalar(x + 32 * b, y[b].qs, &sum, ggml_cpu));
  }
}

void quantize_row_q8_1_as(const float* x, int64_t k, BlockQ8_1* y, bool ggml_cpu) {
  for (int64_t b = 0; b < k / 32; ++b) {
    int32_t sum;
    const float d = quantize_block_scalar(x + 32 * b, y[b].qs, &sum, ggml_cpu);
    y[b].d = f16_of(d);
    y[b].s = f16_of(float(sum) * d);
  }
}

}  // namespace

void quantize_row_q8_0_ref(const float* x, int64_t k, BlockQ8_0* y) {
  quantize_row_q8_0_as(x, k, y, false);
}
void quantize_row_q8_1_ref(const float* x, int64_t k, BlockQ8_1* y) {
  quantize_row_q8_1_as(x, k, y, false);
}
void quantize_row_q8_0_ggml_cpu(const float* x, int64_t k, BlockQ8_0* y) {
  quantize_row_q8_0_as(x, k, y, true);
}
void quantize_row_q8_1_ggml_cpu(const float* x, int64_t k, BlockQ8_1* y) {
  quantize_row_q8_1_as(x, k, y, true);
}

bool q8_activation_supports(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 ||
         t == DType::Q8_0;
}

DType q8_activation_format(DType t) {
  return (t == DType::Q4_1 || t == DType::Q5_1) ? DType::Q8_1 : DType::Q8_0;
}

void quantize_activations(Isa isa, DType weight, const float* x, int64_t m, int64_t k,
                          Q8Activations* out) {
  require_isa(isa);
  if (!q8_activation_supports(weight) || k % 32 != 0 || m < 0)
    fail(
        "quantize_activations: {} activations [{}, {}]: expected a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 "
        "weight and k a multiple of 32",
        name(weight), m, k);
  Q8Activations& a = *out;
  a.weight = weight;
  a.m = m;
  a.k = k;
  a.nb = k / 32;
  a.pairs = (a.nb + 1) / 2;
  a.qs.resize(size_t(m * k));
  a.ds.assign(size_t(m * a.pairs * 4), 0.0f);
  a.bias.assign(size_t(m * a.pairs * 16), 0);
  a.sums.resize(size_t(m * a.nb));
  a.lanes.assign(size_t(m * a.pairs * 32), 0.0f);
  const bool q8_1 = q8_activation_format(weight) == DType::Q8_1;
  const int32_t offset = weight_offset(weight);
#pragma omp parallel for schedule(static) if (m > 1 && m * k > (int64_t(1) << 15))
  for (int64_t i = 0; i < m; ++i) {
    thread_local std::vector<float> d;
    d.resize(size_t(a.nb));
    int8_t* qs = a.qs.data() + i * k;
    int32_t* sums = a.sums.data() + i * a.nb;
    switch (isa) {
      case Isa::kAvx512:
        avx512::quantize_blocks(x + i * k, a.nb, qs, d.data(), sums);
        break;
      case Isa::kAvx2:
        avx2::quantize_blocks(x + i * k, a.nb, qs, d.data(), sums);
        break;
      default:
        quantize_blocks_scalar(x + i * k, a.nb, qs, d.data(), sums);
        break;
    }
    float* ds = a.ds.data() + i * a.pairs * 4;
    int32_t* bias = a.bias.data() + i * a.pairs * 16;
    for (int64_t b = 0; b < a.nb; ++b) {
      const int64_t p = b / 2, h = b & 1;
      ds[4 * p + h] = f16_to_f32(f16_of(d[size_t(b)]));
      ds[4 * p + 2 + h] = q8_1 ? f16_to_f32(f16_of(float(sums[b]) * d[size_t(b)])) : 0.0f;
      float* lanes = a.lanes.data() + (i * a.pairs + p) * 32;
      for (int l = 0; l < 4; ++l) lanes[4 * h + l] = lanes[8 + 4 * h + l] = ds[4 * p + h];
      lanes[16 + 4 * h] = ds[4 * p + 2 + h];
    }
    // Bias lane l of a pair covers activation bytes 4l..4l+3 of the pair's 64 (32 for a lone
    // block): the kernels' per-lane integer sums are then Σ (q_w − offset)·q_x exactly.
    if (offset != 0)
      for (int64_t l = 0; l < a.nb * 8; ++l) {
        const int8_t* q4 = qs + 4 * l;
        bias[l] = -offset * (int32_t(q4[0]) + q4[1] + q4[2] + q4[3]);
      }
  }
}

void linear_q8_prequantized(Isa isa, const WeightMatrix& w, const Q8Activations& a, float* y) {
  require_isa(isa);
  validate(w, a.m);
  if (a.weight != w.dtype || a.k != w.k)
    fail("linear_q8: activations quantized for {} with k={}, weight is {} with k={}",
         name(a.weight), a.k, name(w.dtype), w.k);
  if (a.m == 0 || w.n == 0) return;
  if (w.k == 0) {
    std::fill(y, y + a.m * w.n, 0.0f);
    return;
  }
  switch (isa) {
    case Isa::kAvx512:
      return avx512::q8_linear(w, a, y);
    case Isa::kAvx2:
      return avx2::q8_linear(w, a, y);
    default:
      return q8_linear_scalar(w, a, y);
  }
}

void linear_q8_isa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y) {
  require_isa(isa);
  validate(w, m);
  // One scratch per calling thread: generation calls this hundreds of times per token.
  thread_local Q8Activations a;
  quantize_activations(isa, w.dtype, x, m, w.k, &a);
  linear_q8_prequantized(isa, w, a, y);
}

}  // namespace lowbit::kernels::cpu
