// FP8 (per-tensor, rowwise, 128×128 block) and INT8 W8A8 linear layers against CPU references:
// the quantizers bit for bit (e4m3 round-to-nearest-even, saturating; int8 round-to-even,
// clamped to ±127), the products against a float64 matmul of the dequantized operands, on
// random data, odd and real shapes, m from 1 to 4096.
#include "kernels/cuda/gemm/w8a8_gemm.h"

#include <cublasLt.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "cuda_test_util.h"
#include "kernels/cuda/gemm/w8a8_internal.h"

namespace lowbit::test {
namespace {

using bf16 = __nv_bfloat16;
using kc::Fp8Scaling;

// ---- CPU reference quantization ----

float e4m3_value(int code) {  // code in [0, 0x7E], positive
  const int e = code >> 3, mant = code & 7;
  if (e == 0) return std::ldexp(float(mant), -9);
  return std::ldexp(1.0f + float(mant) / 8.0f, e - 7);
}

float e4m3_decode(uint8_t b) {
  const float v = e4m3_value(b & 0x7F);
  return (b & 0x80) ? -v : v;
}

// Round to nearest, ties to even, saturating to ±448.
uint8_t e4m3_encode(float v) {
  const uint8_t sign = v < 0 ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a >= 448.0f) return sign | 0x7E;
  int lo = 0, hi = 0x7E;  // largest code with value <= a
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (e4m3_value(mid) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  const float below = e4m3_value(lo), above = e4m3_value(lo + 1);
  int code = lo;
  if (a - below > above - a)
    code = lo + 1;
  else if (a - below == above - a)
    code = (lo % 2 == 0) ? lo : lo + 1;
  return sign | uint8_t(code);
}

float scale_of(float amax, float qmax) { return amax > 0 ? amax / qmax : 1.0f; }

int8_t int8_encode(float v) { return int8_t(std::clamp(std::nearbyint(v), -127.0f, 127.0f)); }

// Quantizes rows [m, k] (row stride ld) with one scale per `gr` rows × `gc` columns block
// (gr = 0: all rows; gc = 0: all columns); returns dequantized values [m, k] and the scales.
struct Quantized {
  std::vector<float> deq;  // [m, k]
  std::vector<float> scales;
  std::vector<float> q;  // the 8-bit values decoded (before scaling)
};

Quantized quantize_cpu(const std::vector<float>& x, int64_t m, int64_t k, int64_t ld, int64_t gr,
                       int64_t gc, bool fp8) {
  if (gr == 0) gr = m;
  if (gc == 0) gc = k;
  const int64_t br = (m + gr - 1) / gr, bc = (k + gc - 1) / gc;
  Quantized out;
  out.deq.resize(size_t(m * k));
  out.q.resize(size_t(m * k));
  out.scales.resize(size_t(br * bc));
  for (int64_t bi = 0; bi < br; ++bi)
    for (int64_t bj = 0; bj < bc; ++bj) {
      float amax = 0;
      for (int64_t i = bi * gr; i < std::min(m, (bi + 1) * gr); ++i)
        for (int64_t j = bj * gc; j < std::min(k, (bj + 1) * gc); ++j)
          amax = std::max(amax, std::fabs(x[size_t(i * ld + j)]));
      const float s = scale_of(amax, fp8 ? 448.0f : 127.0f);
      out.scales[size_t(bi * bc + bj)] = s;
      for (int64_t i = bi * gr; i < std::min(m, (bi + 1) * gr); ++i)
        for (int64_t j = bj * gc; j < std::min(k, (bj + 1) * gc); ++j) {
          const float t = x[size_t(i * ld + j)] / s;
          const float qv = fp8 ? e4m3_decode(e4m3_encode(t)) : float(int8_encode(t));
          out.q[size_t(i * k + j)] = qv;
          out.deq[size_t(i * k + j)] = qv * s;
        }
    }
  return out;
}

// Random bf16-representable values whose magnitude varies by row (so scales differ).
std::vector<float> random_rows(int64_t rows, int64_t cols, std::mt19937& rng) {
  auto v = random_floats(size_t(rows * cols), rng);
  std::uniform_real_distribution<float> mag(-3.0f, 3.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float s = std::exp2(mag(rng));
    for (int64_t c = 0; c < cols; ++c) v[size_t(r * cols + c)] *= s;
  }
  return round_bf16(v);
}

std::vector<float> decode_fp8(const std::vector<uint8_t>& b) {
  std::vector<float> out(b.size());
  for (size_t i = 0; i < b.size(); ++i) out[i] = e4m3_decode(b[i]);
  return out;
}

std::vector<float> decode_int8(const std::vector<int8_t>& b) {
  return std::vector<float>(b.begin(), b.end());
}

int64_t count_diff(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += !(a[i] == b[i]);
  return d;
}

// ---- quantizers ----

TEST(CudaW8A8, Fp8WeightQuantizeMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(11);
  const int64_t n = 208, k = 384;  // n: one full and one partial 128-row block
  for (Fp8Scaling sc : {Fp8Scaling::kPerTensor, Fp8Scaling::kRowwise, Fp8Scaling::kBlock128}) {
    auto w = random_rows(n, k, rng);
    auto dw = upload(to_bf16(w));
    auto gw = kc::fp8_quantize_weight(dw.get<bf16>(), n, k, sc, nullptr);
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint8_t> q(size_t(n * k));
    std::vector<float> s(size_t(gw->scale_count()));
    kc::copy_to_host(q.data(), gw->data(), q.size());
    kc::copy_to_host(s.data(), gw->scales(), s.size() * 4);
    const int64_t gr = sc == Fp8Scaling::kPerTensor ? 0 : sc == Fp8Scaling::kRowwise ? 1 : 128;
    const int64_t gc = sc == Fp8Scaling::kBlock128 ? 128 : 0;
    auto ref = quantize_cpu(w, n, k, k, gr, gc, true);
    ASSERT_EQ(s.size(), ref.scales.size());
    EXPECT_EQ(count_diff(s, ref.scales), 0) << kc::fp8_scaling_name(sc);
    EXPECT_EQ(count_diff(decode_fp8(q), ref.q), 0) << kc::fp8_scaling_name(sc);
  }
}

TEST(CudaW8A8, Int8WeightQuantizeMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(12);
  const int64_t n = 144, k = 336;
  auto w = random_rows(n, k, rng);
  auto dw = upload(to_bf16(w));
  auto gw = kc::int8_quantize_weight(dw.get<bf16>(), n, k, nullptr);
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int8_t> q(size_t(n * k));
  std::vector<float> s(static_cast<size_t>(n));
  kc::copy_to_host(q.data(), gw->data(), q.size());
  kc::copy_to_host(s.data(), gw->scales(), s.size() * 4);
  auto ref = quantize_cpu(w, n, k, k, 1, 0, false);
  EXPECT_EQ(count_diff(s, ref.scales), 0);
  EXPECT_EQ(count_diff(decode_int8(q), ref.q), 0);
}

TEST(CudaW8A8, ActivationQuantizeMatchesCpu) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(13);
  const int64_t m = 37, k = 384, ldx = 400;  // strided rows
  auto x = random_rows(m, ldx, rng);
  auto dx = upload(to_bf16(x));
  kc::DeviceBuffer dq(size_t(m * k), "q");
  kc::DeviceBuffer ds(size_t((m + 4) * 8) * 4, "scales");
  for (int variant = 0; variant < 4; ++variant) {
    const bool fp8 = variant < 3;
    const auto sc = Fp8Scaling(std::min(variant, 2));
    if (fp8)
      kc::fp8_quantize_activations(dx.get<bf16>(), ldx, m, k, sc, dq.get<uint8_t>(),
                                   ds.get<float>(), nullptr);
    else
      kc::int8_quantize_activations(dx.get<bf16>(), ldx, m, k, dq.get<int8_t>(), ds.get<float>(),
                                    nullptr);
    const int64_t gr = (fp8 && sc == Fp8Scaling::kPerTensor) ? 0 : 1;
    const int64_t gc = (fp8 && sc == Fp8Scaling::kBlock128) ? 128 : 0;
    auto ref = quantize_cpu(x, m, k, ldx, gr, gc, fp8);
    auto s = download<float>(ds, ref.scales.size());
    if (fp8 && sc == Fp8Scaling::kBlock128) {  // → [m, k/128] from the cuBLASLt layout
      const auto layout = kc::w8a8::block_scale_layout();
      auto raw = download<float>(ds, size_t(kc::w8a8::act_scale_count(m, k / 128, layout)));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t g = 0; g < k / 128; ++g)
          s[size_t(i * (k / 128) + g)] =
              raw[size_t(kc::w8a8::act_scale_index(i, g, m, k / 128, layout))];
    }
    std::vector<float> q;
    if (fp8)
      q = decode_fp8(download<uint8_t>(dq, size_t(m * k)));
    else
      q = decode_int8(download<int8_t>(dq, size_t(m * k)));
    EXPECT_EQ(count_diff(s, ref.scales), 0) << "variant " << variant;
    EXPECT_EQ(count_diff(q, ref.q), 0) << "variant " << variant;
  }
}

// ---- linear layers ----

struct Case {
  int64_t m, n, k;
};

// Reference rows: all of them, or an evenly spread sample of 64 for large m.
std::vector<int64_t> reference_rows(int64_t m) {
  std::vector<int64_t> rows;
  const int64_t step = m > 128 ? m / 64 : 1;
  for (int64_t i = 0; i < m; i += step) rows.push_back(i);
  if (rows.back() != m - 1) rows.push_back(m - 1);
  return rows;
}

// Dequantized weight [n, k] from what the GPU holds.
std::vector<float> gpu_weight_fp8(const kc::Fp8GpuWeight& w) {
  const int64_t n = w.n(), k = w.k();
  std::vector<uint8_t> q(size_t(n * k));
  std::vector<float> s(size_t(w.scale_count()));
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  kc::copy_to_host(q.data(), w.data(), q.size());
  kc::copy_to_host(s.data(), w.scales(), s.size() * 4);
  std::vector<float> out(size_t(n * k));
  const int64_t kb = (k + 127) / 128;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      float sc = s[0];
      if (w.scaling() == Fp8Scaling::kRowwise) sc = s[size_t(i)];
      if (w.scaling() == Fp8Scaling::kBlock128) sc = s[size_t((i / 128) * kb + j / 128)];
      out[size_t(i * k + j)] = e4m3_decode(q[size_t(i * k + j)]) * sc;
    }
  return out;
}

std::vector<float> gpu_weight_int8(const kc::Int8GpuWeight& w) {
  const int64_t n = w.n(), k = w.k();
  std::vector<int8_t> q(size_t(n * k));
  std::vector<float> s(static_cast<size_t>(n));
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  kc::copy_to_host(q.data(), w.data(), q.size());
  kc::copy_to_host(s.data(), w.scales(), s.size() * 4);
  std::vector<float> out(size_t(n * k));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j)
      out[size_t(i * k + j)] = float(q[size_t(i * k + j)]) * s[size_t(i)];
  return out;
}

// variant: 0..2 fp8 scalings, 3 int8. Returns the relative error on the reference rows.
double run_linear(kc::W8A8Runner& runner, int variant, const Case& c, bool force_gemm, bool f32_out,
                  std::mt19937& rng, std::string* path) {
  const auto [m, n, k] = c;
  const bool fp8 = variant < 3;
  const auto sc = Fp8Scaling(std::min(variant, 2));
  const int64_t ldx = k + 8, ldy = n + 4;
  auto w = random_rows(n, k, rng);
  auto x = random_rows(m, ldx, rng);
  auto bias = random_floats(size_t(n), rng);
  auto dw = upload(to_bf16(w));
  auto dx = upload(to_bf16(x));
  auto db = upload(bias);
  const size_t ysize = f32_out ? 4 : 2;
  auto dy = poisoned(size_t(m * ldy) * ysize);
  const auto out_type = f32_out ? kc::OutType::kF32 : kc::OutType::kBf16;
  const float* bias_ptr = f32_out ? nullptr : db.get<float>();
  std::vector<float> wd;
  if (fp8) {
    auto gw = kc::fp8_quantize_weight(dw.get<bf16>(), n, k, sc, nullptr);
    wd = gpu_weight_fp8(*gw);
    runner.fp8_linear(*gw, dx.get<bf16>(), ldx, bias_ptr, dy.get(), ldy, out_type, m, nullptr,
                      force_gemm);
  } else {
    auto gw = kc::int8_quantize_weight(dw.get<bf16>(), n, k, nullptr);
    runner.int8_linear(*gw, dx.get<bf16>(), ldx, bias_ptr, dy.get(), ldy, out_type, m, nullptr,
                       force_gemm);
    wd = gpu_weight_int8(*gw);
  }
  *path = runner.last_path();
  std::vector<float> y;
  if (f32_out)
    y = download<float>(dy, size_t(m * ldy));
  else
    y = from_bf16(download<uint16_t>(dy, size_t(m * ldy)));
  // Activations as the kernel saw them: bf16 for the GEMV, quantized for the GEMMs.
  std::vector<float> xd;
  if (*path == "gemv" || *path == "dequant+bf16-gemm") {  // weight-only paths
    xd.resize(size_t(m * k));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < k; ++j) xd[size_t(i * k + j)] = x[size_t(i * ldx + j)];
  } else {
    const int64_t gr = (fp8 && sc == Fp8Scaling::kPerTensor) ? 0 : 1;
    const int64_t gc = (fp8 && sc == Fp8Scaling::kBlock128) ? 128 : 0;
    xd = quantize_cpu(x, m, k, ldx, gr, gc, fp8).deq;
  }
  std::vector<float> got;
  std::vector<double> ref;
  for (int64_t i : reference_rows(m))
    for (int64_t o = 0; o < n; ++o) {
      double s = bias_ptr ? bias[size_t(o)] : 0.0;
      const float* xr = &xd[size_t(i * k)];
      const float* wr = &wd[size_t(o * k)];
      for (int64_t j = 0; j < k; ++j) s += double(xr[j]) * wr[j];
      ref.push_back(s);
      got.push_back(y[size_t(i * ldy + o)]);
    }
  return rel_error(got, ref);
}

const char* variant_name(int v) {
  static const char* names[] = {"fp8 per-tensor", "fp8 rowwise", "fp8 block128", "int8"};
  return names[v];
}

// Which block-scale layouts does cuBLASLt read (w8a8::BlockScaleLayout)? Runs the
// block-scaled GEMM with all 16 layouts on shapes where order and padding show (3 and 5 blocks
// of 128 in k, 3 in n; m % 4 == 0, the only m that use cuBLASLt) and prints every error; the best
// layout that matches the reference is kept for the rest of this process (printed as
// BLOCK_LAYOUT_BEST=abcd, the value of LOWBIT_W8A8_BLOCK_LAYOUT); the default must match too.
TEST(CudaW8A8, BlockScaleLayoutProbe) {
  LOWBIT_REQUIRE_GPU();
  kc::W8A8Runner runner;
  const auto initial = kc::w8a8::block_scale_layout();
  std::mt19937 rng(31);
  double best = 1e9, initial_err = 1e9;
  kc::w8a8::BlockScaleLayout best_layout = initial;
  for (int bits = 0; bits < 16; ++bits) {
    kc::w8a8::BlockScaleLayout l;
    l.act_group_major = bits & 8;
    l.act_pad4 = bits & 4;
    l.w_n_major = bits & 2;
    l.w_pad4 = bits & 1;
    kc::w8a8::set_block_scale_layout(l);
    double worst = 0;
    std::string paths;
    for (const Case& c : {Case{64, 384, 384}, Case{128, 384, 640}}) {
      std::string path;
      worst = std::max(worst, run_linear(runner, 2, c, true, true, rng, &path));
      paths += path + " ";
    }
    std::printf("block128 layout %d%d%d%d: worst rel_err=%.3e (%s)\n", int(l.act_group_major),
                int(l.act_pad4), int(l.w_n_major), int(l.w_pad4), worst, paths.c_str());
    if (paths.find("cublaslt-scaled") == std::string::npos) continue;  // cuBLASLt not used
    if (worst < best) best = worst, best_layout = l;
    if (l.act_group_major == initial.act_group_major && l.act_pad4 == initial.act_pad4 &&
        l.w_n_major == initial.w_n_major && l.w_pad4 == initial.w_pad4)
      initial_err = worst;
  }
  kc::w8a8::set_block_scale_layout(best < 3e-3 ? best_layout : initial);
  std::printf("BLOCK_LAYOUT_BEST=%d%d%d%d (rel_err %.3e)\n", int(best_layout.act_group_major),
              int(best_layout.act_pad4), int(best_layout.w_n_major), int(best_layout.w_pad4), best);
  EXPECT_LT(initial_err, 3e-3) << "the default block-scale layout does not match cuBLASLt";
}

TEST(CudaW8A8, LinearMatchesReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(21);
  kc::W8A8Runner runner;
  const Case cases[] = {{1, 208, 384},    {2, 64, 128},    {3, 208, 384},    {8, 272, 640},
                        {9, 208, 384},    {37, 272, 640},  {256, 128, 256},  {1000, 96, 512},
                        {4096, 128, 256}, {1, 6144, 4096}, {16, 4096, 4096}, {4096, 1024, 4096}};
  for (int variant = 0; variant < 4; ++variant)
    for (const Case& c : cases)
      for (int force = 0; force < (c.m <= kc::kW8GemvMaxRows ? 2 : 1); ++force) {
        const bool f32_out = (c.m + variant + force) % 2 == 0;
        std::string path;
        const double err = run_linear(runner, variant, c, force != 0, f32_out, rng, &path);
        const double tol = f32_out ? 3e-3 : 1e-2;
        EXPECT_LT(err, tol) << variant_name(variant) << " m=" << c.m << " n=" << c.n << " k=" << c.k
                            << " path=" << path << " f32=" << f32_out;
        std::printf("%-15s m=%-5lld n=%-5lld k=%-5lld %-18s %s rel_err=%.2e\n",
                    variant_name(variant), (long long)c.m, (long long)c.n, (long long)c.k,
                    path.c_str(), f32_out ? "f32 " : "bf16+bias", err);
      }
}

// Which fp8 scale modes does this cuBLASLt offer algorithms for (TN, m = n = k = 512)? Prints
// one line per combination; informational (the runner falls back where none is offered).
TEST(CudaW8A8, CublasLtScaleModeSupport) {
  LOWBIT_REQUIRE_GPU();
  cublasLtHandle_t h = nullptr;
  ASSERT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
  kc::DeviceBuffer dummy(1 << 20, "dummy scales");
  const int64_t d = 512;
  struct Combo {
    const char* name;
    int32_t a, b;
  };
  const Combo combos[] = {{"scalar/scalar", CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F,
                           CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F},
                          {"outer/outer", CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
                           CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F},
                          {"blk128x128/vec128", CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
                           CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F},
                          {"vec128/blk128x128", CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F,
                           CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F},
                          {"vec128/vec128", CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F,
                           CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F}};
  for (const Combo& c : combos)
    for (cudaDataType_t dt : {CUDA_R_16BF, CUDA_R_32F})
      for (int ptrs = 0; ptrs < 2; ++ptrs) {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t));
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn));
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &c.a, sizeof(c.a));
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &c.b, sizeof(c.b));
        if (ptrs) {
          const void* p = dummy.get();
          cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p, sizeof(p));
          cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p, sizeof(p));
        }
        cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, d, d, d);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, d, d, d);
        cublasLtMatrixLayoutCreate(&ld, dt, d, d, d);
        cublasLtMatmulPreference_t pref = nullptr;
        cublasLtMatmulPreferenceCreate(&pref);
        size_t ws = 32 << 20;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof(ws));
        cublasLtMatmulHeuristicResult_t res{};
        int found = 0;
        const cublasStatus_t st =
            cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, ld, ld, pref, 1, &res, &found);
        std::printf("cuBLASLt fp8 %-18s D=%s scale ptrs %s: status %d, %d algorithm(s)\n", c.name,
                    dt == CUDA_R_16BF ? "bf16" : "fp32", ptrs ? "set " : "null", int(st), found);
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(op);
      }
  cublasLtDestroy(h);
}

TEST(CudaW8A8, GraphCaptureReplaysSameResult) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(41);
  const int64_t m = 64, n = 256, k = 512;
  auto x = random_rows(m, k, rng);
  auto w = random_rows(n, k, rng);
  auto dx = upload(to_bf16(x));
  auto dw = upload(to_bf16(w));
  kc::Stream stream;
  kc::W8A8Runner runner;
  runner.reserve(m, k, n);
  for (int variant = 0; variant < 4; ++variant) {
    std::unique_ptr<kc::Fp8GpuWeight> f;
    std::unique_ptr<kc::Int8GpuWeight> i8;
    if (variant < 3)
      f = kc::fp8_quantize_weight(dw.get<bf16>(), n, k, Fp8Scaling(variant), stream.get());
    else
      i8 = kc::int8_quantize_weight(dw.get<bf16>(), n, k, stream.get());
    auto y1 = poisoned(size_t(m * n) * 4), y2 = poisoned(size_t(m * n) * 4);
    auto call = [&](void* y) {
      if (f)
        runner.fp8_linear(*f, dx.get<bf16>(), k, nullptr, y, n, kc::OutType::kF32, m, stream.get());
      else
        runner.int8_linear(*i8, dx.get<bf16>(), k, nullptr, y, n, kc::OutType::kF32, m,
                           stream.get());
    };
    call(y1.get());  // plans chosen outside capture
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    LOWBIT_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal));
    call(y2.get());
    LOWBIT_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
    LOWBIT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    LOWBIT_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    auto a = download<float>(y1, size_t(m * n));
    auto b = download<float>(y2, size_t(m * n));
    EXPECT_EQ(count_diff(a, b), 0) << variant_name(variant);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
}

TEST(CudaW8A8, UploadedCheckpointWeightMatchesOnlineQuantization) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(51);
  const int64_t n = 208, k = 384;
  auto w = random_rows(n, k, rng);
  auto x = random_rows(40, k, rng);
  auto dw = upload(to_bf16(w));
  auto dx = upload(to_bf16(x));
  kc::W8A8Runner runner;
  for (int64_t m : {int64_t(3), int64_t(40)})  // GEMV and GEMM paths
    for (Fp8Scaling sc : {Fp8Scaling::kPerTensor, Fp8Scaling::kRowwise, Fp8Scaling::kBlock128}) {
      auto online = kc::fp8_quantize_weight(dw.get<bf16>(), n, k, sc, nullptr);
      LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint8_t> q(size_t(n * k));
      std::vector<float> s(size_t(online->scale_count()));
      kc::copy_to_host(q.data(), online->data(), q.size());
      kc::copy_to_host(s.data(), online->scales(), s.size() * 4);
      auto loaded = kc::fp8_upload_weight(q.data(), s.data(), int64_t(s.size()), n, k, sc,
                                          "layers.0.mlp.up_proj.weight", nullptr);
      auto y1 = poisoned(size_t(m * n) * 4), y2 = poisoned(size_t(m * n) * 4);
      runner.fp8_linear(*online, dx.get<bf16>(), k, nullptr, y1.get(), n, kc::OutType::kF32, m,
                        nullptr);
      runner.fp8_linear(*loaded, dx.get<bf16>(), k, nullptr, y2.get(), n, kc::OutType::kF32, m,
                        nullptr);
      EXPECT_EQ(count_diff(download<float>(y1, size_t(m * n)), download<float>(y2, size_t(m * n))),
                0);
      // Bad input names the tensor.
      try {
        kc::fp8_upload_weight(q.data(), s.data(), int64_t(s.size()) + 1, n, k, sc,
                              "layers.0.mlp.up_proj.weight", nullptr);
        ADD_FAILURE() << "scale count mismatch accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("layers.0.mlp.up_proj.weight"), std::string::npos);
      }
    }
  std::vector<int8_t> q8(size_t(n * k), 3);
  std::vector<float> s8(size_t(n), 0.01f);
  s8[5] = -1.0f;
  try {
    kc::int8_upload_weight(q8.data(), s8.data(), n, n, k, "layers.1.self_attn.o_proj.weight",
                           nullptr);
    ADD_FAILURE() << "negative scale accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scale[5]"), std::string::npos) << e.what();
  }
}

TEST(CudaW8A8, UnsupportedReasons) {
  EXPECT_EQ(kc::fp8_unsupported_reason(4096, 4096, Fp8Scaling::kRowwise, 90), "");
  EXPECT_EQ(kc::fp8_unsupported_reason(4096, 4096, Fp8Scaling::kBlock128, 89), "");
  EXPECT_NE(kc::fp8_unsupported_reason(4096, 4100, Fp8Scaling::kPerTensor, 90).find("16"),
            std::string::npos);
  EXPECT_NE(kc::fp8_unsupported_reason(4096, 4112, Fp8Scaling::kBlock128, 90).find("128"),
            std::string::npos);
  EXPECT_NE(
      kc::fp8_unsupported_reason(4096, 4096, Fp8Scaling::kPerTensor, 75).find("compute capability"),
      std::string::npos);
  EXPECT_NE(kc::int8_unsupported_reason(4090, 4096, 90).find("out_features"), std::string::npos);
}

}  // namespace
}  // namespace lowbit::test
