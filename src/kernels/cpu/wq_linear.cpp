// Weight-only integer linear layers: validation, packing, the bnb tables, the scalar kernel,
// dequantization and the float64 reference (wq_linear.h; layout in wq_linear_kernels.h).
#include "kernels/cpu/wq_linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/q8_activation.h"
#include "kernels/cpu/wq_linear_kernels.h"

namespace lowbit::kernels::cpu {
namespace {

// bitsandbytes functional.get_4bit_type("nf4"): the normal-float quantiles, already in [-1, 1].
constexpr float kNf4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// bitsandbytes functional.get_4bit_type("fp4"): sign in bit 3, magnitudes in code order
// 0, 0.0625, 8, 12, 4, 6, 2, 3, divided (in fp32) by the largest, 12 (FORMATS.md §7.2).
struct Fp4Table {
  float v[16];
  Fp4Table() {
    const float mag[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
    for (int i = 0; i < 8; ++i) {
      v[i] = mag[i] / 12.0f;
      v[i + 8] = -(mag[i] / 12.0f);
    }
  }
};

float default_zero(WqKind kind) { return kind == WqKind::kInt4 ? 8.0f : 128.0f; }

// Every check pack_wq_weight() and wq_linear_reference() rely on; errors name `what`, the
// field, what was found and what was expected.
void validate(const WqSource& s, const std::string& what) {
  if (s.kind != WqKind::kInt4 && s.kind != WqKind::kInt8 && s.kind != WqKind::kNf4 &&
      s.kind != WqKind::kFp4)
    fail("{}: weight kind {} is unknown (expected int4, int8, nf4 or fp4)", what, int(s.kind));
  const char* kind = wq_kind_name(s.kind);
  if (s.n <= 0 || s.k <= 0)
    fail("{}: {} weight shape [n={}, k={}], expected both > 0", what, kind, s.n, s.k);
  if (s.k > std::numeric_limits<int32_t>::max() ||
      s.n > std::numeric_limits<int64_t>::max() / 2 / s.k)
    fail("{}: {} weight shape [n={}, k={}] is too large (k must fit int32, n·k int64)", what, kind,
         s.n, s.k);
  if (s.group_size <= 0 || s.k % s.group_size != 0)
    fail(
        "{}: {} group_size={} does not divide k={} (expected a divisor of k; k for "
        "per-channel)",
        what, kind, s.group_size, s.k);
  if (!s.codes) fail("{}: {} weight [{}, {}]: codes is null", what, kind, s.n, s.k);
  if (!s.scales) fail("{}: {} weight [{}, {}]: scales is null", what, kind, s.n, s.k);
  const int64_t groups = s.k / s.group_size;
  if (wq_is_4bit(s.kind))
    for (int64_t i = 0; i < s.n * s.k; ++i)
      if (s.codes[i] >= 16)
        fail("{}: {} codes[{}, {}] = {}, expected 0..15", what, kind, i / s.k, i % s.k,
             int(s.codes[i]));
  for (int64_t i = 0; i < s.n * groups; ++i)
    if (!std::isfinite(s.scales[i]))
      fail("{}: {} scales[{}, {}] = {}, expected a finite value", what, kind, i / groups,
           i % groups, s.scales[i]);
  if (s.zeros && !wq_is_lut(s.kind))
    for (int64_t i = 0; i < s.n * groups; ++i)
      if (!std::isfinite(s.zeros[i]))
        fail("{}: {} zeros[{}, {}] = {}, expected a finite value", what, kind, i / groups,
             i % groups, s.zeros[i]);
  if (s.perm) {
    std::vector<uint8_t> seen(size_t(s.k), 0);
    for (int64_t c = 0; c < s.k; ++c) {
      const int32_t p = s.perm[c];
      if (p < 0 || p >= s.k)
        fail("{}: {} perm[{}] = {}, expected a column index in [0, {})", what, kind, c, p, s.k);
      if (seen[size_t(p)])
        fail(
            "{}: {} perm[{}] = {} repeats an earlier entry; perm must be a permutation of "
            "0..{}",
            what, kind, c, p, s.k - 1);
      seen[size_t(p)] = 1;
    }
  }
}

void validate_call(const WqWeight& w, const float* x, int64_t m, const float* y) {
  if (m < 0)
    fail("wq_linear: {} weight [{}, {}]: m={}, expected >= 0", wq_kind_name(w.kind), w.n, w.k, m);
  if (m > 0 && (!x || !y))
    fail("wq_linear: {} weight [{}, {}]: {} is null with m={}", wq_kind_name(w.kind), w.n, w.k,
         !x ? "x" : "y", m);
}

// Activations [m, k] in packed column order: x itself, or gathered through perm into scratch.
const float* gathered(const WqWeight& w, const float* x, int64_t m, std::vector<float>* scratch) {
  if (w.perm.empty()) return x;
  scratch->resize(size_t(m * w.k));
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * w.k;
    float* gi = scratch->data() + i * w.k;
    for (int64_t c = 0; c < w.k; ++c) gi[c] = xi[w.perm[size_t(c)]];
  }
  return scratch->data();
}

// Int8 activations in the layout of WqQ8Activations, blocks quantized by the shared llama.cpp
// Q8 quantizer of q8_activation.h one block at a time (a lone block is stored in natural
// order, and every SIMD level gives the same bytes).
void quantize_wq_activations(Isa isa, const float* xg, int64_t m, int64_t k, int64_t group_size,
                             WqQ8Activations* out) {
  WqQ8Activations& a = *out;
  a.m = m;
  a.k = k;
  a.kp = (k + 63) / 64 * 64;
  a.groups = k / group_size;
  a.q.assign(size_t(m * a.kp), 0);
  a.d.assign(size_t(m * a.kp / 32), 0.0f);
  a.xs.resize(size_t(m * a.groups));
  const int64_t per_group = group_size / 32;
#pragma omp parallel for schedule(static) if (m > 1 && m * k > (int64_t(1) << 15))
  for (int64_t i = 0; i < m; ++i) {
    int8_t* q = a.q.data() + i * a.kp;
    float* d = a.d.data() + i * a.kp / 32;
    float* xs = a.xs.data() + i * a.groups;
    for (int64_t g = 0; g < a.groups; ++g) {
      float sum = 0.0f;
      for (int64_t b = g * per_group; b < (g + 1) * per_group; ++b) {
        int32_t s;
        const float* xb = xg + i * k + 32 * b;
        if (isa == Isa::kAvx512)
          avx512::quantize_blocks(xb, 1, q + 32 * b, &d[b], &s);
        else
          avx2::quantize_blocks(xb, 1, q + 32 * b, &d[b], &s);
        sum += d[b] * float(s);
      }
      xs[g] = sum;
    }
  }
}

// Scalar kernel: decode one weight row to fp32 and dot it with every activation row (four
// fp32 lanes); rows of W are split across threads.
void linear_scalar(const WqWeight& w, const float* xg, int64_t m, float* y) {
#pragma omp parallel if (w.n * w.k * (m + 1) > (int64_t(1) << 18))
  {
    std::vector<float> row(size_t(w.k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < w.n; ++j) {
      wq_decode_row(w, j, row.data());
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = xg + i * w.k;
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

// Calls f(offset, unit) for the 4-bit units of a row of k columns (layout in the header).
template <typename F>
void for_each_unit(int64_t k, F f) {
  int64_t c = 0;
  for (; k - c >= 128; c += 128) f(c, int64_t(128));
  for (int64_t u : {64, 32})
    if (k - c >= u) {
      f(c, u);
      c += u;
    }
  if (c < k) f(c, (k - c) + ((k - c) & 1));
}

}  // namespace

const char* wq_kind_name(WqKind kind) {
  switch (kind) {
    case WqKind::kInt4:
      return "int4";
    case WqKind::kInt8:
      return "int8";
    case WqKind::kNf4:
      return "nf4";
    case WqKind::kFp4:
      return "fp4";
  }
  return "unknown";
}

const float* wq_lut(WqKind kind) {
  static const Fp4Table fp4;
  switch (kind) {
    case WqKind::kNf4:
      return kNf4;
    case WqKind::kFp4:
      return fp4.v;
    default:
      fail("wq_lut: {} has no value table (only nf4 and fp4 do)", wq_kind_name(kind));
  }
}

void wq_pack_nibbles(const uint8_t* codes, int64_t k, uint8_t* packed) {
  for_each_unit(k, [&](int64_t c0, int64_t u) {
    const int64_t half = u / 2;
    uint8_t* p = packed + c0 / 2;
    for (int64_t t = 0; t < half; ++t) {
      const uint8_t lo = codes[c0 + t];
      const uint8_t hi = c0 + half + t < k ? codes[c0 + half + t] : 0;
      p[t] = uint8_t(lo | (hi << 4));
    }
  });
}

void wq_unpack_nibbles(const uint8_t* packed, int64_t k, uint8_t* codes) {
  for_each_unit(k, [&](int64_t c0, int64_t u) {
    const int64_t half = u / 2;
    const uint8_t* p = packed + c0 / 2;
    for (int64_t t = 0; t < half; ++t) {
      codes[c0 + t] = p[t] & 15;
      if (c0 + half + t < k) codes[c0 + half + t] = p[t] >> 4;
    }
  });
}

void wq_decode_row(const WqWeight& w, int64_t j, float* out) {
  const uint8_t* p = w.codes.data() + j * w.row_bytes;
  const float* scale = w.scale.data() + j * w.groups;
  thread_local std::vector<uint8_t> codes;
  const uint8_t* q = p;
  if (wq_is_4bit(w.kind)) {
    codes.resize(size_t(w.k));
    wq_unpack_nibbles(p, w.k, codes.data());
    q = codes.data();
  }
  if (wq_is_lut(w.kind)) {
    const float* lut = wq_lut(w.kind);
    for (int64_t c = 0; c < w.k; ++c) out[c] = scale[c / w.group_size] * lut[q[c]];
  } else {
    for (int64_t c = 0; c < w.k; ++c) {
      const int64_t g = c / w.group_size;
      out[c] = scale[g] * (float(q[c]) - w.zero[size_t(j * w.groups + g)]);
    }
  }
}

std::shared_ptr<const WqWeight> pack_wq_weight(const WqSource& src, const std::string& what) {
  validate(src, what);
  auto w = std::make_shared<WqWeight>();
  w->kind = src.kind;
  w->n = src.n;
  w->k = src.k;
  w->group_size = src.group_size;
  w->groups = src.k / src.group_size;
  w->has_zeros = src.zeros != nullptr && !wq_is_lut(src.kind);
  bool identity = true;
  if (src.perm)
    for (int64_t c = 0; c < src.k && identity; ++c) identity = src.perm[c] == c;
  if (!identity) w->perm.assign(src.perm, src.perm + src.k);
  w->row_bytes = wq_is_4bit(src.kind) ? (src.k + 1) / 2 : src.k;
  w->codes.resize(size_t(src.n * w->row_bytes));
  w->scale.assign(src.scales, src.scales + src.n * w->groups);
  if (!wq_is_lut(src.kind)) {
    if (src.zeros)
      w->zero.assign(src.zeros, src.zeros + src.n * w->groups);
    else
      w->zero.assign(size_t(src.n * w->groups), default_zero(src.kind));
  }
#pragma omp parallel if (src.n * src.k > (int64_t(1) << 20))
  {
    std::vector<uint8_t> row(size_t(src.k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < src.n; ++j) {
      const uint8_t* cj = src.codes + j * src.k;
      if (!w->perm.empty()) {
        for (int64_t c = 0; c < src.k; ++c) row[size_t(c)] = cj[w->perm[size_t(c)]];
        cj = row.data();
      }
      uint8_t* out = w->codes.data() + j * w->row_bytes;
      if (wq_is_4bit(src.kind))
        wq_pack_nibbles(cj, src.k, out);
      else
        std::memcpy(out, cj, size_t(src.k));
    }
  }
  return w;
}

int64_t wq_rows(const WqWeight& w) { return w.n; }
int64_t wq_cols(const WqWeight& w) { return w.k; }

uint64_t wq_bytes(const WqWeight& w) {
  const uint64_t per_group = wq_is_lut(w.kind) ? 4 : 8;  // scale (+ zero)
  return uint64_t(w.codes.size()) + uint64_t(w.n * w.groups) * per_group;
}

void wq_linear_isa(Isa isa, bool exact, const WqWeight& w, const float* x, int64_t m, float* y) {
  require_isa(isa);
  validate_call(w, x, m, y);
  if (m == 0) return;
  // One scratch per calling thread: generation calls this for every layer and token.
  thread_local std::vector<float> scratch;
  const float* xg = gathered(w, x, m, &scratch);
  if (isa == Isa::kScalar || !wq_simd_layout(w)) return linear_scalar(w, xg, m, y);
  if (!exact && !wq_is_lut(w.kind)) {
    thread_local WqQ8Activations a;
    quantize_wq_activations(isa, xg, m, w.k, w.group_size, &a);
    return isa == Isa::kAvx512 ? avx512::wq_linear_q8(w, a, y) : avx2::wq_linear_q8(w, a, y);
  }
  return isa == Isa::kAvx512 ? avx512::wq_linear_exact(w, xg, m, y)
                             : avx2::wq_linear_exact(w, xg, m, y);
}

void wq_linear(const WqWeight& w, const float* x, int64_t m, float* y) {
  wq_linear_isa(active_isa(), exact_activations(), w, x, m, y);
}

std::vector<float> wq_dequantize(const WqWeight& w) {
  std::vector<float> out(size_t(w.n * w.k));
  std::vector<float> row(size_t(w.k));
  for (int64_t j = 0; j < w.n; ++j) {
    wq_decode_row(w, j, row.data());
    float* oj = out.data() + j * w.k;
    if (w.perm.empty())
      std::copy(row.begin(), row.end(), oj);
    else
      for (int64_t c = 0; c < w.k; ++c) oj[w.perm[size_t(c)]] = row[size_t(c)];
  }
  return out;
}

void wq_linear_reference(const WqSource& src, const float* x, int64_t m, float* y) {
  validate(src, "wq_linear_reference");
  if (m < 0 || (m > 0 && (!x || !y)))
    fail("wq_linear_reference: m={} with x={} y={}, expected m >= 0 and non-null arrays", m,
         x ? "set" : "null", y ? "set" : "null");
  const int64_t groups = src.k / src.group_size;
  const float* lut = wq_is_lut(src.kind) ? wq_lut(src.kind) : nullptr;
  std::vector<double> row(size_t(src.k));
  for (int64_t j = 0; j < src.n; ++j) {
    // Logical row in input order: column s = perm[c] sits in group c / group_size.
    for (int64_t c = 0; c < src.k; ++c) {
      const int64_t s = src.perm ? src.perm[c] : c;
      const int64_t g = j * groups + c / src.group_size;
      const uint8_t q = src.codes[j * src.k + s];
      const double scale = src.scales[g];
      if (lut) {
        row[size_t(s)] = double(lut[q]) * scale;
      } else {
        const double zero = src.zeros ? double(src.zeros[g]) : double(default_zero(src.kind));
        row[size_t(s)] = (double(q) - zero) * scale;
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      double acc = 0;
      for (int64_t s = 0; s < src.k; ++s) acc += row[size_t(s)] * double(x[i * src.k + s]);
      y[i * src.n + j] = float(acc);
    }
  }
}

}  // namespace lowbit::kernels::cpu
