// wq_gemm (W4A16 / W8A16 tensor-core GEMM) and wq_gemv (its decode GEMV) against the CPU reference
// kernels::cpu::wq_linear_reference (float64 on the unpacked source) on random data: int4 and
// int8, group sizes 32/64/128/per-channel, with and without zeros, act-order, bf16 and fp16
// activations, odd m and real shapes; wq_dequantize (+ cuBLASLt for large m); bad input.
//
// Tolerance: the GPU rounds each scale to bf16/f16 and each decoded weight (q − z)·s once
// (unit roundoff 2^-8 for bf16 each, so ≤ 2^-7 relative per weight), accumulates in fp32 and
// rounds the output once: |y − ref| ≤ 2^-7·Σ|w·x| + 2^-8·|ref| (bf16; fp16 is tighter), with a
// 1.5× margin; the norm-wise error must also stay under 6e-3.
#include "kernels/cuda/gemm/wq_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "cuda_test_util.h"
#include "kernels/cpu/wq_linear.h"
#include "kernels/cuda/gemm/linear.h"

namespace lowbit::test {
namespace {

using kernels::cpu::WqKind;
using kernels::cpu::WqSource;

// A random weight as a method would hand it over (owning the arrays WqSource points into).
struct RandomWeight {
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros;
  std::vector<int32_t> perm;
  WqSource src;

  RandomWeight(WqKind kind, int64_t n, int64_t k, int64_t group, bool with_zeros, bool act_order,
               std::mt19937& rng, bool fractional_zeros = false) {
    const int levels = kind == WqKind::kInt4 ? 16 : 256;
    const int64_t groups = k / group;
    codes.resize(size_t(n * k));
    std::uniform_int_distribution<int> code(0, levels - 1);
    for (auto& c : codes) c = uint8_t(code(rng));
    std::uniform_real_distribution<float> mag(0.5f, 1.5f);
    scales.resize(size_t(n * groups));
    for (auto& s : scales) s = mag(rng) * (rng() % 2 ? 1.0f : -1.0f) / float(levels);
    if (with_zeros) {
      zeros.resize(size_t(n * groups));
      std::uniform_real_distribution<float> frac(-0.5f, 0.5f);
      for (auto& z : zeros)
        z = fractional_zeros ? std::clamp(float(code(rng)) + frac(rng), 0.0f, float(levels - 1))
                             : float(code(rng));
    }
    if (act_order) {
      perm.resize(size_t(k));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
    }
    src.kind = kind;
    src.n = n;
    src.k = k;
    src.group_size = group;
    src.codes = codes.data();
    src.scales = scales.data();
    src.zeros = with_zeros ? zeros.data() : nullptr;
    src.perm = act_order ? perm.data() : nullptr;
  }

  // Σ_c |W[j, c]·x[i, c]| for the tolerance, double.
  std::vector<double> abs_products(const std::vector<float>& x, int64_t m) const {
    const int64_t n = src.n, k = src.k, groups = k / src.group_size;
    const float zdef = src.kind == WqKind::kInt4 ? 8.0f : 128.0f;
    std::vector<double> w(size_t(n * k));
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < k; ++c) {
        const int64_t col = perm.empty() ? c : perm[size_t(c)];
        const int64_t g = j * groups + c / src.group_size;
        const double z = zeros.empty() ? zdef : zeros[size_t(g)];
        w[size_t(j * k + col)] = std::abs((codes[size_t(j * k + col)] - z) * scales[size_t(g)]);
      }
    std::vector<double> out(size_t(m * n), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c) s += w[size_t(j * k + c)] * std::abs(x[size_t(i * k + c)]);
        out[size_t(i * n + j)] = s;
      }
    return out;
  }
};

std::vector<uint16_t> to_16(const std::vector<float>& v, kc::ActType act) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = act == kc::ActType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
  return out;
}
std::vector<float> from_16(const std::vector<uint16_t>& v, kc::ActType act) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = act == kc::ActType::kF16 ? f16_to_f32(v[i]) : bf16_to_f32(v[i]);
  return out;
}

// Checks y (m rows, row stride ldy) against the reference for rows `rows` of x.
void expect_close(const RandomWeight& rw, const std::vector<float>& x, int64_t m,
                  const std::vector<float>& bias, const std::vector<float>& y, int64_t ldy,
                  const std::string& what) {
  const int64_t n = rw.src.n;
  std::vector<float> ref(size_t(m * n));
  kernels::cpu::wq_linear_reference(rw.src, x.data(), m, ref.data());
  const std::vector<double> absp = rw.abs_products(x, m);
  double num = 0, den = 0;
  int bad = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double r = double(ref[size_t(i * n + j)]) + (bias.empty() ? 0.0 : bias[size_t(j)]);
      const double v = y[size_t(i * ldy + j)];
      const double tol =
          1.5 * (std::ldexp(absp[size_t(i * n + j)], -7) + std::ldexp(std::abs(r), -8)) + 1e-5;
      if (!(std::abs(v - r) <= tol) && bad++ < 5)
        ADD_FAILURE() << what << ": y[" << i << ", " << j << "] = " << v << ", reference " << r
                      << ", tolerance " << tol;
      num += (v - r) * (v - r);
      den += r * r;
    }
  EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 6e-3) << what;
}

struct RunOptions {
  kc::ActType act = kc::ActType::kBf16;
  kc::OutType out = kc::OutType::kBf16;
  bool bias = false;
  int64_t pad_x = 0, pad_y = 0;  // extra row stride
  bool gemv = false;             // wq_gemv (the decode GEMV) instead of wq_gemm
};

// Runs wq_gemm on random x and returns (x as the GPU saw it, y [m, ldy] as float).
void run_and_check(const RandomWeight& rw, const kc::WqGpuWeight& w, int64_t m, const RunOptions& o,
                   std::mt19937& rng, const std::string& what) {
  const int64_t n = rw.src.n, k = rw.src.k, ldx = k + o.pad_x, ldy = n + o.pad_y;
  std::vector<float> xs = random_floats(size_t(m * ldx), rng);
  auto x16 = to_16(xs, o.act);
  std::vector<float> x(size_t(m * k));  // dense [m, k], rounded
  const auto xr = from_16(x16, o.act);
  for (int64_t i = 0; i < m; ++i) std::copy_n(xr.begin() + i * ldx, k, x.begin() + i * k);
  std::vector<float> bias = o.bias ? random_floats(size_t(n), rng) : std::vector<float>();
  auto dx = upload(x16);
  auto db = upload(o.bias ? bias : std::vector<float>(1));
  const bool f32 = o.out == kc::OutType::kF32;
  auto dy = poisoned(size_t(m * ldy) * (f32 ? 4 : 2));
  (o.gemv ? kc::wq_gemv : kc::wq_gemm)(w, o.act, dx.get(), ldx, o.bias ? db.get<float>() : nullptr,
                                       dy.get(), ldy, o.out, m, nullptr);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  std::vector<float> y = f32 ? download<float>(dy, size_t(m * ldy))
                             : from_16(download<uint16_t>(dy, size_t(m * ldy)), o.act);
  expect_close(rw, x, m, bias, y, ldy, what);
}

const char* act_name(kc::ActType a) { return a == kc::ActType::kF16 ? "f16" : "bf16"; }

// Every layout the methods produce, on a small shape, over odd m.
TEST(CudaWqGemm, AllLayoutsMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(11);
  const int64_t n = 192, k = 512;
  int variant = 0;
  for (WqKind kind : {WqKind::kInt4, WqKind::kInt8})
    for (int64_t group : {int64_t(32), int64_t(64), int64_t(128), k})
      for (int zeros : {0, 1, 2})  // none, integer, fractional (online int4's refit)
        for (bool act_order : {false, true}) {
          if (act_order && group == k) continue;  // act-order needs groups
          RandomWeight rw(kind, n, k, group, zeros > 0, act_order, rng, zeros == 2);
          auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
          for (int64_t m : {1, 3, 16, 17, 33, 64, 67, 130}) {
            RunOptions o;
            o.act = variant % 2 ? kc::ActType::kF16 : kc::ActType::kBf16;
            o.out = variant % 3 == 0 ? kc::OutType::kF32 : kc::OutType::kBf16;
            o.bias = variant % 4 == 1;
            o.pad_x = variant % 5 == 2 ? 24 : 0;
            o.pad_y = variant % 5 == 3 ? 3 : 0;
            ++variant;
            run_and_check(rw, *w, m, o, rng,
                          fmt::format("{} group {} zeros {} act-order {} m {} act {} out {}",
                                      kernels::cpu::wq_kind_name(kind), group, zeros, act_order, m,
                                      act_name(o.act), o.out == kc::OutType::kF32 ? "f32" : "16"));
          }
        }
}

// Llama-shaped weights, m from the decode kernel to the wide-tile kernel's split-k launches.
TEST(CudaWqGemm, RealShapes) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(12);
  struct Case {
    WqKind kind;
    int64_t n, k, group;
    bool zeros, act_order;
    int64_t m;
  };
  const Case cases[] = {{WqKind::kInt4, 4096, 4096, 128, true, false, 1},
                        {WqKind::kInt4, 4096, 4096, 128, false, true, 16},
                        {WqKind::kInt4, 1024, 14336, 128, false, false, 5},
                        {WqKind::kInt4, 6144, 4096, 4096, false, false, 33},
                        {WqKind::kInt8, 4096, 4096, 4096, false, false, 7},
                        {WqKind::kInt8, 2048, 4096, 128, true, true, 131},
                        {WqKind::kInt4, 4096, 4096, 128, false, false, 64},
                        {WqKind::kInt8, 1024, 14336, 14336, false, false, 96}};
  for (const Case& c : cases) {
    RandomWeight rw(c.kind, c.n, c.k, c.group, c.zeros, c.act_order, rng);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    RunOptions o;
    o.act = c.m % 2 ? kc::ActType::kBf16 : kc::ActType::kF16;
    run_and_check(rw, *w, c.m, o, rng,
                  fmt::format("{} [{}, {}] group {} m {}", kernels::cpu::wq_kind_name(c.kind), c.n,
                              c.k, c.group, c.m));
  }
}

void check_wide_tiles() {
  std::mt19937 rng(16);
  struct Case {
    WqKind kind;
    int64_t n, k, group;
    bool zeros, act_order;
  };
  const Case cases[] = {
      {WqKind::kInt4, 320, 544, 32, true, false},    {WqKind::kInt4, 448, 1024, 64, false, true},
      {WqKind::kInt4, 64, 2080, 2080, false, false}, {WqKind::kInt4, 768, 4096, 128, true, false},
      {WqKind::kInt8, 320, 544, 544, false, false},  {WqKind::kInt8, 512, 1056, 32, true, true}};
  int variant = 0;
  for (const Case& c : cases) {
    RandomWeight rw(c.kind, c.n, c.k, c.group, c.zeros, c.act_order, rng, c.zeros && variant % 2);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    for (int64_t m : {17, 31, 32, 48, 64, 65, 100, 128, 129, 256}) {
      RunOptions o;
      o.act = variant % 2 ? kc::ActType::kF16 : kc::ActType::kBf16;
      o.out = variant % 3 == 0 ? kc::OutType::kF32 : kc::OutType::kBf16;
      o.bias = variant % 4 == 1;
      o.pad_x = variant % 5 == 2 ? 8 : 0;
      o.pad_y = variant % 5 == 3 ? 5 : 0;
      ++variant;
      run_and_check(rw, *w, m, o, rng,
                    fmt::format("{} [{}, {}] group {} zeros {} act-order {} m {} act {}",
                                kernels::cpu::wq_kind_name(c.kind), c.n, c.k, c.group, c.zeros,
                                c.act_order, m, act_name(o.act)));
    }
  }
}

// The m > 16 wide-tile kernel (256 columns × 32/64/128 rows, k split over a cluster): n not a
// multiple of 256 (partial last column block, half-used warpgroups), k-step counts that split
// unevenly, m at and around each tile height and past one 128-row pass, every group size and
// layout option; on Hopper both product paths (wgmma, and mma.sync with LOWBIT_WQ_WGMMA=0).
TEST(CudaWqGemm, WideTilesSplitKMatchReference) {
  LOWBIT_REQUIRE_GPU();
  for (const char* wgmma : {"1", "0"}) {
    SCOPED_TRACE(fmt::format("LOWBIT_WQ_WGMMA={}", wgmma));
    setenv("LOWBIT_WQ_WGMMA", wgmma, 1);
    check_wide_tiles();
  }
  unsetenv("LOWBIT_WQ_WGMMA");
}

// Large m through wq_gemm (several 128-row passes with a short last one), n with a half-used
// last column block, odd k-step counts.
TEST(CudaWqGemm, LargeRowsMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(18);
  int variant = 0;
  for (WqKind kind : {WqKind::kInt4, WqKind::kInt8}) {
    RandomWeight rw(kind, 320, 1056, 32, kind == WqKind::kInt4, false, rng);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    for (int64_t m : {256, 700, 1100}) {
      RunOptions o;
      o.act = variant % 2 ? kc::ActType::kF16 : kc::ActType::kBf16;
      o.out = variant % 3 == 0 ? kc::OutType::kF32 : kc::OutType::kBf16;
      o.bias = variant % 2 == 0;
      o.pad_y = variant % 3 == 1 ? 3 : 0;
      ++variant;
      run_and_check(rw, *w, m, o, rng,
                    fmt::format("{} [320, 1056] m {}", kernels::cpu::wq_kind_name(kind), m));
    }
  }
}

// The decode kernel's two-blocks-per-SM pipeline (m 9..16 with more column groups than SMs).
TEST(CudaWqGemm, DecodeRowsWithManyColumnGroupsMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(17);
  int variant = 0;
  for (WqKind kind : {WqKind::kInt4, WqKind::kInt8}) {
    RandomWeight rw(kind, 8192, 320, 32, kind == WqKind::kInt4, false, rng);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    for (int64_t m : {8, 9, 16}) {
      RunOptions o;
      o.act = variant % 2 ? kc::ActType::kF16 : kc::ActType::kBf16;
      o.bias = variant++ % 3 == 1;
      run_and_check(rw, *w, m, o, rng,
                    fmt::format("{} [8192, 320] m {}", kernels::cpu::wq_kind_name(kind), m));
    }
  }
}

// wq_dequantize gives the same weights the kernel uses, in input order; with cuBLASLt it is
// the large-m path (m up to 4096).
TEST(CudaWqGemm, DequantizePlusCublasLargeM) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(13);
  kc::GemmRunner gemm;
  struct Case {
    WqKind kind;
    int64_t n, k, group;
    bool zeros, act_order;
    int64_t m;
  };
  const Case cases[] = {{WqKind::kInt4, 256, 512, 64, true, true, 4096},
                        {WqKind::kInt8, 192, 256, 32, false, false, 1000},
                        {WqKind::kInt4, 1024, 1024, 1024, false, false, 257},
                        // k-steps not a multiple of the dequantizer's 8 per block
                        {WqKind::kInt4, 128, 544, 32, true, false, 70},
                        {WqKind::kInt8, 64, 544, 544, false, false, 90}};
  for (const Case& c : cases) {
    RandomWeight rw(c.kind, c.n, c.k, c.group, c.zeros, c.act_order, rng);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    // Dequantized weights against the exact ones (one bf16 / f16 rounding of a rounded scale).
    for (kc::ActType act : {kc::ActType::kBf16, kc::ActType::kF16}) {
      auto dw = poisoned(size_t(c.n * c.k) * 2);
      kc::wq_dequantize(*w, act, dw.get(), nullptr);
      const auto wd = from_16(download<uint16_t>(dw, size_t(c.n * c.k)), act);
      // The exact weight through the reference: W = reference(identity rows).
      const int64_t groups = c.k / c.group;
      int bad = 0;
      for (int64_t j = 0; j < c.n; ++j)
        for (int64_t cc = 0; cc < c.k; ++cc) {
          const int64_t col = rw.perm.empty() ? cc : rw.perm[size_t(cc)];
          const int64_t g = j * groups + cc / c.group;
          const double z =
              rw.zeros.empty() ? (c.kind == WqKind::kInt4 ? 8 : 128) : rw.zeros[size_t(g)];
          const double exact = (rw.codes[size_t(j * c.k + col)] - z) * rw.scales[size_t(g)];
          const double got = wd[size_t(j * c.k + col)];
          if (!(std::abs(got - exact) <= std::ldexp(std::abs(exact), -7) * 1.01) && bad++ < 5)
            ADD_FAILURE() << act_name(act) << " W[" << j << ", " << col << "] = " << got
                          << ", exact " << exact;
        }
    }
    auto dw = poisoned(size_t(c.n * c.k) * 2);
    kc::wq_dequantize(*w, kc::ActType::kBf16, dw.get(), nullptr);
    auto xs = round_bf16(random_floats(size_t(c.m * c.k), rng));
    auto dx = upload(to_bf16(xs));
    auto dy = poisoned(size_t(c.m * c.n) * 4);
    gemm.linear(dx.get<__nv_bfloat16>(), c.k, dw.get<__nv_bfloat16>(), nullptr, dy.get(), c.n,
                kc::OutType::kF32, c.m, c.n, c.k, nullptr, true);
    auto y = download<float>(dy, size_t(c.m * c.n));
    // Reference on a sample of rows (the full product is slow in float64).
    std::vector<int64_t> rows = {0, 1, c.m / 2, c.m - 1};
    std::vector<float> xsub, ysub;
    for (int64_t r : rows) {
      xsub.insert(xsub.end(), xs.begin() + r * c.k, xs.begin() + (r + 1) * c.k);
      ysub.insert(ysub.end(), y.begin() + r * c.n, y.begin() + (r + 1) * c.n);
    }
    expect_close(rw, xsub, int64_t(rows.size()), {}, ysub, c.n,
                 fmt::format("dequantize + cuBLASLt m {}", c.m));
    // The same m straight through wq_gemm (several 64-row passes).
    if (c.m <= 1000) {
      RunOptions o;
      run_and_check(rw, *w, c.m, o, rng, fmt::format("wq_gemm m {}", c.m));
    }
  }
}

// wq_gemv (the decode GEMV on the same packed weights): every layout the methods produce
// (int4/int8, groups 32/64/128/k, no/integer/fractional zeros, act-order), every m it takes
// (1..kWqGemvMaxRows: the one- and two-row-half A fragments), odd column-group and k-step
// counts (n = 64·3, k = 544 = 17 int4 steps: warps with uneven step counts and partial batches).
TEST(CudaWqGemv, AllLayoutsAndRowsMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(21);
  int variant = 0;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{192, 512}, {64, 544}})
    for (WqKind kind : {WqKind::kInt4, WqKind::kInt8})
      for (int64_t group : {int64_t(32), int64_t(64), int64_t(128), k})
        for (int zeros : {0, 1, 2})
          for (bool act_order : {false, true}) {
            if (k % group != 0 || (act_order && group == k)) continue;
            RandomWeight rw(kind, n, k, group, zeros > 0, act_order, rng, zeros == 2);
            auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
            for (int64_t m = 1; m <= kc::kWqGemvMaxRows; ++m) {
              RunOptions o;
              o.gemv = true;
              o.act = variant % 2 ? kc::ActType::kF16 : kc::ActType::kBf16;
              o.out = variant % 3 == 0 ? kc::OutType::kF32 : kc::OutType::kBf16;
              o.bias = variant % 4 == 1;
              o.pad_x = variant % 5 == 2 ? 24 : 0;
              o.pad_y = variant % 5 == 3 ? 3 : 0;
              // Both GEMV kernels over every layout: stream-K (all) and per-group (0).
              const bool streamk = (variant / 2) % 2 == 0;
              setenv("LOWBIT_WQ_GEMV_STREAMK", streamk ? "all" : "0", 1);
              ++variant;
              run_and_check(
                  rw, *w, m, o, rng,
                  fmt::format("gemv {} [{}, {}] group {} zeros {} act-order {} m {} act {} "
                              "out {} {}",
                              kernels::cpu::wq_kind_name(kind), n, k, group, zeros, act_order, m,
                              act_name(o.act), o.out == kc::OutType::kF32 ? "f32" : "16",
                              streamk && m <= 8 ? "stream-K" : "per-group"));
              unsetenv("LOWBIT_WQ_GEMV_STREAMK");
            }
          }
}

// Llama-3-8B shapes at decode sizes, and an lm_head-like int8 per-channel weight with f32
// logits (the online int4/int8 methods' lm_head path).
TEST(CudaWqGemv, RealShapesMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(22);
  struct Case {
    WqKind kind;
    int64_t n, k, group;
    bool zeros;
    int64_t m;
    kc::OutType out;
  };
  const Case cases[] = {{WqKind::kInt4, 4096, 4096, 128, false, 1, kc::OutType::kBf16},
                        {WqKind::kInt4, 1024, 14336, 128, true, 4, kc::OutType::kBf16},
                        {WqKind::kInt8, 2048, 4096, 4096, false, 1, kc::OutType::kBf16},
                        {WqKind::kInt8, 32064, 4096, 4096, false, 1, kc::OutType::kF32},
                        {WqKind::kInt4, 6144, 4096, 128, false, 16, kc::OutType::kBf16}};
  for (const Case& c : cases) {
    RandomWeight rw(c.kind, c.n, c.k, c.group, c.zeros, false, rng, c.zeros);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    RunOptions o;
    o.gemv = true;
    o.out = c.out;
    run_and_check(rw, *w, c.m, o, rng,
                  fmt::format("gemv {} [{}, {}] group {} m {}", kernels::cpu::wq_kind_name(c.kind),
                              c.n, c.k, c.group, c.m));
  }
}

// The stream-K GEMV (LOWBIT_WQ_GEMV_STREAMK=all: every shape, m <= 8; by default int4 at
// m = 1, and at m = 2 on weights wider than 2 · SMs column groups) and the
// one-block-per-column-group GEMV (LOWBIT_WQ_GEMV_STREAMK=0) on shapes whose warp ranges end inside
// column groups, cover several whole groups, or both (k = 96: 3 int4 steps per group), against the
// reference; a repeated stream-K call gives the same bits (the per-group counters reset, summation
// order fixed).
TEST(CudaWqGemv, StreamKAndPerGroupKernelsMatchReferenceAndRepeat) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(24);
  struct Case {
    WqKind kind;
    int64_t n, k, group;
    bool zeros;
  };
  const Case cases[] = {{WqKind::kInt4, 32 * 600, 96, 32, false},
                        {WqKind::kInt4, 192, 512, 64, true},
                        {WqKind::kInt8, 64 * 37, 224, 224, false},
                        {WqKind::kInt4, 6144, 4096, 128, false},
                        {WqKind::kInt8, 4096, 14336, 14336, true}};
  for (const Case& c : cases) {
    RandomWeight rw(c.kind, c.n, c.k, c.group, c.zeros, false, rng, c.zeros);
    auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
    for (int64_t m : {int64_t(1), int64_t(3), int64_t(8)}) {
      const std::string what =
          fmt::format("gemv {} [{}, {}] group {} m {}", kernels::cpu::wq_kind_name(c.kind), c.n,
                      c.k, c.group, m);
      RunOptions o;
      o.gemv = true;
      o.out = kc::OutType::kF32;
      o.bias = m == 3;
      setenv("LOWBIT_WQ_GEMV_STREAMK", "0", 1);
      run_and_check(rw, *w, m, o, rng, what + " per-group kernel");
      setenv("LOWBIT_WQ_GEMV_STREAMK", "all", 1);  // stream-K up to its limit, m = 8 included
      run_and_check(rw, *w, m, o, rng, what + " stream-K");
      auto dx = upload(to_bf16(round_bf16(random_floats(size_t(m * c.k), rng))));
      std::vector<float> first;
      for (int rep = 0; rep < 3; ++rep) {
        auto dy = poisoned(size_t(m * c.n) * 4);
        kc::wq_gemv(*w, kc::ActType::kBf16, dx.get(), c.k, nullptr, dy.get(), c.n,
                    kc::OutType::kF32, m, nullptr);
        auto y = download<float>(dy, size_t(m * c.n));
        if (rep == 0)
          first = y;
        else
          EXPECT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * 4))
              << what << " repeat " << rep;
      }
      unsetenv("LOWBIT_WQ_GEMV_STREAMK");
    }
  }
}

// The stream-K GEMV's process-wide scratch can be released (so that leak checks of this binary
// see every allocation returned: the environment below releases it after the last test) and is
// allocated again by the next call, which still matches the reference.
class ReleaseDeviceScratch : public testing::Environment {
 public:
  void TearDown() override {
    if (!::lowbit::engine::cuda_devices().empty()) kc::wq_release_device_scratch();
  }
};
testing::Environment* const release_device_scratch =
    testing::AddGlobalTestEnvironment(new ReleaseDeviceScratch);

TEST(CudaWqGemv, StreamKScratchIsAllocatedAgainAfterRelease) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(25);
  RandomWeight rw(WqKind::kInt4, 4096, 1024, 128, false, false, rng);
  auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
  RunOptions o;
  o.gemv = true;
  o.out = kc::OutType::kF32;
  run_and_check(rw, *w, 1, o, rng, "stream-K before release");
  kc::wq_release_device_scratch();
  run_and_check(rw, *w, 1, o, rng, "stream-K after release");
}

// Rows past the GEMV's limit are refused with the limit in the message; graph capture works.
TEST(CudaWqGemv, RowLimitAndGraphCapture) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(23);
  RandomWeight rw(WqKind::kInt4, 256, 1024, 128, true, true, rng);
  auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
  const int64_t m = kc::kWqGemvMaxRows;
  auto xs = round_bf16(random_floats(size_t((m + 1) * 1024), rng));
  auto dx = upload(to_bf16(xs));
  auto dy = poisoned(size_t((m + 1) * 256) * 4);
  try {
    kc::wq_gemv(*w, kc::ActType::kBf16, dx.get(), 1024, nullptr, dy.get(), 256, kc::OutType::kF32,
                m + 1, nullptr);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("m = {}, expected 0..{}", m + 1, m)),
              std::string::npos)
        << e.what();
  }
  kc::Stream stream;
  kc::wq_gemv(*w, kc::ActType::kBf16, dx.get(), 1024, nullptr, dy.get(), 256, kc::OutType::kF32, m,
              stream.get());  // first call: act-order gather scratch
  stream.synchronize();
  LOWBIT_CUDA_CHECK(cudaMemset(dy.get(), 0xFF, dy.bytes()));
  cudaGraph_t graph;
  LOWBIT_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  kc::wq_gemv(*w, kc::ActType::kBf16, dx.get(), 1024, nullptr, dy.get(), 256, kc::OutType::kF32, m,
              stream.get());
  LOWBIT_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphExec_t exec;
  LOWBIT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  LOWBIT_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
  stream.synchronize();
  xs.resize(size_t(m * 1024));
  expect_close(rw, xs, m, {}, download<float>(dy, size_t(m * 256)), 256, "gemv graph replay");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// After a first call with the largest m, calls capture into a CUDA graph (act-order included).
TEST(CudaWqGemm, GraphCapture) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(14);
  RandomWeight rw(WqKind::kInt4, 256, 1024, 128, true, true, rng);
  auto w = kc::wq_gemm_pack(rw.src, "layer", nullptr);
  const int64_t m = 9;
  auto xs = round_bf16(random_floats(size_t(m * 1024), rng));
  auto dx = upload(to_bf16(xs));
  auto dy = poisoned(size_t(m * 256) * 4);
  kc::Stream stream;
  kc::wq_gemm(*w, kc::ActType::kBf16, dx.get(), 1024, nullptr, dy.get(), 256, kc::OutType::kF32, m,
              stream.get());
  stream.synchronize();
  LOWBIT_CUDA_CHECK(cudaMemset(dy.get(), 0xFF, dy.bytes()));
  cudaGraph_t graph;
  LOWBIT_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  kc::wq_gemm(*w, kc::ActType::kBf16, dx.get(), 1024, nullptr, dy.get(), 256, kc::OutType::kF32, m,
              stream.get());
  LOWBIT_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphExec_t exec;
  LOWBIT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  LOWBIT_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
  stream.synchronize();
  expect_close(rw, xs, m, {}, download<float>(dy, size_t(m * 256)), 256, "graph replay");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST(CudaWqGemm, UnsupportedShapesAndBadInput) {
  std::mt19937 rng(15);
  RandomWeight ok(WqKind::kInt4, 64, 128, 32, true, false, rng);
  EXPECT_EQ(kc::wq_gemm_unsupported_reason(ok.src), "");
  WqSource s = ok.src;
  s.k = 4100;
  s.group_size = 4100;
  EXPECT_NE(kc::wq_gemm_unsupported_reason(s).find("k = 4100"), std::string::npos);
  s = ok.src;
  s.n = 96;
  EXPECT_NE(kc::wq_gemm_unsupported_reason(s).find("n = 96"), std::string::npos);
  s = ok.src;
  s.kind = WqKind::kNf4;
  EXPECT_NE(kc::wq_gemm_unsupported_reason(s).find("nf4"), std::string::npos);
  RandomWeight frac(WqKind::kInt4, 64, 128, 32, true, false, rng, true);
  EXPECT_EQ(kc::wq_gemm_unsupported_reason(frac.src), "");
  frac.zeros[5] = 300.5f;
  EXPECT_NE(kc::wq_gemm_unsupported_reason(frac.src).find("300.5"), std::string::npos);
  try {
    kc::wq_gemm_pack(frac.src, "model.layers.3.mlp.up_proj", nullptr);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.3.mlp.up_proj"), std::string::npos)
        << e.what();
  }
  RandomWeight badcode(WqKind::kInt4, 64, 128, 32, false, false, rng);
  badcode.codes[7] = 16;
  LOWBIT_REQUIRE_GPU();
  EXPECT_THROW(kc::wq_gemm_pack(badcode.src, "layer", nullptr), Error);
}

}  // namespace
}  // namespace lowbit::test
