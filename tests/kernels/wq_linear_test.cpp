// Weight-only int4 / int8 / NF4 / FP4 linear layers (wq_linear.h): every kind × group layout ×
// zeros × act-order × SIMD level × activation mode against the float64 reference on the
// unpacked source (random data, odd shapes), dequantization against a restated logical
// weight, the bnb tables, packing round trips and the lowbit::Error cases.
#include "kernels/cpu/wq_linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/wq_linear_kernels.h"

namespace lowbit::kernels::cpu {
namespace {

using testing::available_isas;
using testing::random_floats;

const WqKind kKinds[] = {WqKind::kInt4, WqKind::kInt8, WqKind::kNf4, WqKind::kFp4};

// A random weight in unpacked form, owning its arrays.
struct Source {
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros;
  std::vector<int32_t> perm;
  WqSource src;
};

Source random_source(WqKind kind, int64_t n, int64_t k, int64_t group, bool zeros, bool perm,
                     std::mt19937_64& rng) {
  Source s;
  const int64_t groups = k / group;
  const int levels = kind == WqKind::kInt8 ? 256 : 16;
  s.codes.resize(size_t(n * k));
  for (auto& c : s.codes) c = uint8_t(rng() % levels);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-8, 0);
  s.scales.resize(size_t(n * groups));
  for (auto& v : s.scales) v = std::ldexp(mant(rng), ex(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
  if (zeros) {
    s.zeros.resize(size_t(n * groups));
    // Integer zero points as AWQ/GPTQ/compressed-tensors store them; every tenth one
    // fractional (HQQ-style float zeros are allowed by the contract).
    for (size_t i = 0; i < s.zeros.size(); ++i)
      s.zeros[i] = float(rng() % levels) + (i % 10 == 3 ? 0.375f : 0.0f);
  }
  if (perm) {
    s.perm.resize(size_t(k));
    std::iota(s.perm.begin(), s.perm.end(), 0);
    std::shuffle(s.perm.begin(), s.perm.end(), rng);
  }
  s.src.kind = kind;
  s.src.n = n;
  s.src.k = k;
  s.src.group_size = group;
  s.src.codes = s.codes.data();
  s.src.scales = s.scales.data();
  s.src.zeros = zeros ? s.zeros.data() : nullptr;
  s.src.perm = perm ? s.perm.data() : nullptr;
  return s;
}

// The logical weight [n, k] in input order, restated from the header's definition.
// magnitude (optional): |scale|·(|code| + |zero|) per element, the size of the terms the
// packed fp32 form scale·code + min (min = −scale·zero) rounds.
std::vector<double> logical_weight(const WqSource& s, std::vector<double>* magnitude = nullptr) {
  if (magnitude) magnitude->assign(size_t(s.n * s.k), 0.0);
  std::vector<double> w(size_t(s.n * s.k));
  const int64_t groups = s.k / s.group_size;
  for (int64_t j = 0; j < s.n; ++j)
    for (int64_t c = 0; c < s.k; ++c) {
      const int64_t col = s.perm ? s.perm[c] : c, g = j * groups + c / s.group_size;
      const int q = s.codes[j * s.k + col];
      double v;
      if (s.kind == WqKind::kNf4 || s.kind == WqKind::kFp4) {
        v = double(wq_lut(s.kind)[q]) * s.scales[g];
      } else {
        const double z = s.zeros ? s.zeros[g] : (s.kind == WqKind::kInt4 ? 8 : 128);
        v = (q - z) * s.scales[g];
        if (magnitude)
          (*magnitude)[size_t(j * s.k + col)] = std::fabs(s.scales[g]) * (q + std::fabs(z));
      }
      w[size_t(j * s.k + col)] = v;
    }
  return w;
}

struct Layout {
  int64_t k, group;
};

// 32·odd k, every group size the methods use (32, 64, 128, per-channel), groups that are not
// powers of two, 128-column units with 64/32 tails, and sizes the SIMD kernels do not take
// (group not a multiple of 32, odd k) that must still be right.
const Layout kLayouts[] = {{96, 32},  {288, 32},  {1056, 32}, {192, 64},  {576, 64},
                           {320, 64}, {384, 128}, {640, 128}, {288, 288}, {160, 160},
                           {288, 96}, {576, 576}, {50, 10},   {7, 7},     {45, 15}};

// |y - ref| allowed per output. Exact mode: fp32 rounding, 1e-5 of Σ|w·x|. Int8 activations:
// each activation block of 32 is rounded to steps of d = amax/127, so each x moves by at most
// d/2 and the output by at most Σ_c |w_c|·d(c)/2 (plus the fp32 term).
std::vector<double> allowed_error(const std::vector<double>& w, const std::vector<float>& x,
                                  int64_t n, int64_t k, int64_t m, bool exact) {
  std::vector<double> bound(size_t(m * n));
  std::vector<double> half_step(static_cast<size_t>(k));
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x.data() + i * k;
    for (int64_t b = 0; b < k; b += 32) {
      double amax = 0;
      for (int64_t c = b; c < std::min(k, b + 32); ++c)
        amax = std::max(amax, double(std::fabs(xi[c])));
      for (int64_t c = b; c < std::min(k, b + 32); ++c) half_step[size_t(c)] = amax / 127 / 2;
    }
    for (int64_t j = 0; j < n; ++j) {
      double abs_sum = 0, q8 = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double wc = std::fabs(w[size_t(j * k + c)]);
        abs_sum += wc * std::fabs(xi[c]);
        q8 += wc * half_step[size_t(c)];
      }
      bound[size_t(i * n + j)] = 1e-5 * abs_sum + (exact ? 0.0 : q8 * 1.001);
    }
  }
  return bound;
}

// Activations in packed (group) order need the permutation applied; the int8 bound above
// uses blocks of 32 in that order, so permute x for the bound the same way the kernel does.
std::vector<float> gathered_rows(const Source& s, const std::vector<float>& x, int64_t m) {
  if (s.perm.empty()) return x;
  std::vector<float> g(x.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < s.src.k; ++c)
      g[size_t(i * s.src.k + c)] = x[size_t(i * s.src.k + s.perm[size_t(c)])];
  return g;
}

std::vector<double> gathered_weight(const Source& s, const std::vector<double>& w) {
  if (s.perm.empty()) return w;
  std::vector<double> g(w.size());
  for (int64_t j = 0; j < s.src.n; ++j)
    for (int64_t c = 0; c < s.src.k; ++c)
      g[size_t(j * s.src.k + c)] = w[size_t(j * s.src.k + s.perm[size_t(c)])];
  return g;
}

std::string describe(const WqSource& s, int64_t m, Isa isa, bool exact) {
  return fmt::format("{} n={} k={} group={} zeros={} perm={} m={} isa={} exact={}",
                     wq_kind_name(s.kind), s.n, s.k, s.group_size, s.zeros != nullptr,
                     s.perm != nullptr, m, isa_name(isa), exact);
}

void check_products(const Source& s, const WqWeight& packed, std::mt19937_64& rng) {
  const int64_t n = s.src.n, k = s.src.k;
  const std::vector<double> w = logical_weight(s.src);
  for (int64_t m : {1, 3, 17}) {
    const std::vector<float> x = random_floats(size_t(m * k), rng);
    std::vector<float> ref(size_t(m * n));
    wq_linear_reference(s.src, x.data(), m, ref.data());
    const std::vector<float> xg = gathered_rows(s, x, m);
    const std::vector<double> wg = gathered_weight(s, w);
    for (bool exact : {true, false}) {
      const std::vector<double> bound = allowed_error(wg, xg, n, k, m, exact);
      for (Isa isa : available_isas()) {
        std::vector<float> y(size_t(m * n), std::nanf(""));
        wq_linear_isa(isa, exact, packed, x.data(), m, y.data());
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - double(ref[i])), bound[i])
              << describe(s.src, m, isa, exact) << " output " << i << " y=" << y[i]
              << " ref=" << ref[i];
      }
    }
  }
}

TEST(WqLinear, MatchesReferenceForEveryKindLayoutAndIsa) {
  std::mt19937_64 rng(1234);
  for (WqKind kind : kKinds)
    for (const Layout& l : kLayouts)
      for (bool zeros : {false, true}) {
        if (zeros && (kind == WqKind::kNf4 || kind == WqKind::kFp4)) continue;
        for (bool perm : {false, true}) {
          for (int64_t n : {1, 37}) {
            Source s = random_source(kind, n, l.k, l.group, zeros, perm, rng);
            auto packed = pack_wq_weight(s.src, "test");
            ASSERT_EQ(wq_rows(*packed), n);
            ASSERT_EQ(wq_cols(*packed), l.k);
            check_products(s, *packed, rng);
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
      }
}

TEST(WqLinear, LargeLayerAcrossThreads) {
  // Big enough for the OpenMP split and every unit/tile path; odd n.
  std::mt19937_64 rng(77);
  for (WqKind kind : kKinds) {
    Source s = random_source(kind, 301, 2112, kind == WqKind::kNf4 ? 64 : 32, kind == WqKind::kInt4,
                             kind == WqKind::kInt8, rng);
    auto packed = pack_wq_weight(s.src, "large");
    check_products(s, *packed, rng);
  }
}

// The SIMD levels quantize activations to the same int8 blocks, so their int8-activation
// results agree to fp32 rounding, and differ from the exact path (the int8 path really ran).
TEST(WqLinear, Int8ActivationLevelsAgree) {
  std::vector<Isa> simd;
  for (Isa isa : available_isas())
    if (isa != Isa::kScalar) simd.push_back(isa);
  if (simd.empty()) GTEST_SKIP() << "no SIMD level on this CPU";
  std::mt19937_64 rng(21);
  for (WqKind kind : {WqKind::kInt4, WqKind::kInt8}) {
    Source s = random_source(kind, 45, 1120, 32, true, false, rng);
    auto packed = pack_wq_weight(s.src, "agree");
    const int64_t m = 5, n = 45, k = 1120;
    const std::vector<float> x = random_floats(size_t(m * k), rng);
    const std::vector<double> w = logical_weight(s.src);
    std::vector<float> exact(size_t(m * n)), first(size_t(m * n)), y(size_t(m * n));
    wq_linear_isa(simd[0], true, *packed, x.data(), m, exact.data());
    wq_linear_isa(simd[0], false, *packed, x.data(), m, first.data());
    int differ = 0;
    for (size_t i = 0; i < y.size(); ++i) differ += first[i] != exact[i];
    EXPECT_GT(differ, int(y.size()) / 2) << wq_kind_name(kind);
    for (Isa isa : simd) {
      wq_linear_isa(isa, false, *packed, x.data(), m, y.data());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double abs_sum = 0;
          for (int64_t c = 0; c < k; ++c)
            abs_sum += std::fabs(w[size_t(j * k + c)] * x[size_t(i * k + c)]);
          ASSERT_NEAR(y[size_t(i * n + j)], first[size_t(i * n + j)], 1e-5 * abs_sum)
              << wq_kind_name(kind) << " " << isa_name(isa);
        }
    }
  }
}

TEST(WqLinear, NanInOneActivationRowStaysInThatRow) {
  std::mt19937_64 rng(31);
  for (WqKind kind : kKinds) {
    Source s = random_source(kind, 9, 320, 64, kind == WqKind::kInt4, true, rng);
    auto packed = pack_wq_weight(s.src, "nan");
    std::vector<float> x = random_floats(3 * 320, rng);
    x[320 + 77] = std::nanf("");
    for (Isa isa : available_isas())
      for (bool exact : {true, false}) {
        std::vector<float> y(3 * 9);
        wq_linear_isa(isa, exact, *packed, x.data(), 3, y.data());
        for (int64_t j = 0; j < 9; ++j) {
          EXPECT_TRUE(std::isfinite(y[size_t(j)])) << isa_name(isa) << " " << exact;
          EXPECT_TRUE(std::isnan(y[size_t(9 + j)])) << isa_name(isa) << " " << exact;
          EXPECT_TRUE(std::isfinite(y[size_t(18 + j)])) << isa_name(isa) << " " << exact;
        }
      }
  }
}

TEST(WqLinear, DefaultEntryPointFollowsExactActivations) {
  std::mt19937_64 rng(5);
  Source s = random_source(WqKind::kInt4, 19, 256, 128, true, false, rng);
  auto packed = pack_wq_weight(s.src, "default");
  const std::vector<float> x = random_floats(2 * 256, rng);
  const bool saved = exact_activations();
  for (bool exact : {true, false}) {
    set_exact_activations(exact);
    std::vector<float> y(2 * 19), y_isa(2 * 19);
    wq_linear(*packed, x.data(), 2, y.data());
    wq_linear_isa(active_isa(), exact, *packed, x.data(), 2, y_isa.data());
    EXPECT_EQ(y, y_isa) << "exact=" << exact;
  }
  set_exact_activations(saved);
}

TEST(WqLinear, DequantizeMatchesLogicalWeight) {
  std::mt19937_64 rng(99);
  for (WqKind kind : kKinds)
    for (const Layout& l : kLayouts)
      for (bool perm : {false, true}) {
        Source s = random_source(kind, 5, l.k, l.group, kind == WqKind::kInt8, perm, rng);
        auto packed = pack_wq_weight(s.src, "deq");
        const std::vector<float> got = wq_dequantize(*packed);
        std::vector<double> magnitude;
        const std::vector<double> want = logical_weight(s.src, &magnitude);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 2.5e-7 * std::max(std::fabs(want[i]), magnitude[i]))
              << wq_kind_name(kind) << " k=" << l.k << " group=" << l.group << " i=" << i;
      }
}

TEST(WqLinear, NibblePackingRoundTrips) {
  std::mt19937_64 rng(3);
  for (int64_t k = 1; k <= 300; ++k) {
    std::vector<uint8_t> codes(static_cast<size_t>(k)), back(static_cast<size_t>(k));
    for (auto& c : codes) c = uint8_t(rng() % 16);
    std::vector<uint8_t> packed(size_t((k + 1) / 2));
    wq_pack_nibbles(codes.data(), k, packed.data());
    wq_unpack_nibbles(packed.data(), k, back.data());
    ASSERT_EQ(codes, back) << "k=" << k;
  }
  // The 128-column unit: byte t = column t | column 64 + t << 4.
  std::vector<uint8_t> codes(128), packed(64);
  for (int c = 0; c < 128; ++c) codes[size_t(c)] = uint8_t(c % 16);
  wq_pack_nibbles(codes.data(), 128, packed.data());
  EXPECT_EQ(packed[5], uint8_t(5 | (((64 + 5) % 16) << 4)));
}

TEST(WqLinear, BitsandbytesTables) {
  const float* nf4 = wq_lut(WqKind::kNf4);
  EXPECT_EQ(nf4[0], -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);
  EXPECT_EQ(nf4[15], 1.0f);
  EXPECT_FLOAT_EQ(nf4[1], -0.6961928009986877f);
  EXPECT_FLOAT_EQ(nf4[8], 0.07958029955625534f);
  for (int i = 1; i < 16; ++i) EXPECT_LT(nf4[i - 1], nf4[i]);
  // bnb fp4: magnitudes 0, 0.0625, 8, 12, 4, 6, 2, 3 over 12, sign in bit 3.
  const float* fp4 = wq_lut(WqKind::kFp4);
  const float mag[8] = {0, 0.0625f, 8, 12, 4, 6, 2, 3};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(fp4[i], mag[i] / 12.0f) << i;
    EXPECT_EQ(fp4[i + 8], -mag[i] / 12.0f) << i;
  }
  EXPECT_EQ(fp4[3], 1.0f);
  EXPECT_THROW(wq_lut(WqKind::kInt4), Error);
}

TEST(WqLinear, BytesCountCodesAndScales) {
  std::mt19937_64 rng(8);
  Source s = random_source(WqKind::kInt4, 6, 256, 128, true, false, rng);
  EXPECT_EQ(wq_bytes(*pack_wq_weight(s.src, "bytes")), uint64_t(6 * 128 + 6 * 2 * 8));
}

// Expects pack_wq_weight to throw a lowbit::Error whose message holds every `parts`.
void expect_error(const WqSource& src, std::initializer_list<const char*> parts) {
  try {
    pack_wq_weight(src, "model.layers.3.mlp.up_proj");
    FAIL() << "no error for " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.3.mlp.up_proj"), std::string::npos) << msg;
    for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

TEST(WqLinear, BadInputIsAnError) {
  std::mt19937_64 rng(11);
  Source s = random_source(WqKind::kInt4, 4, 64, 32, true, true, rng);
  {
    WqSource b = s.src;
    b.group_size = 24;
    expect_error(b, {"group_size=24", "k=64"});
    b.group_size = 0;
    expect_error(b, {"group_size=0"});
  }
  {
    Source c = s;
    c.codes[70] = 16;
    WqSource b = c.src;
    b.codes = c.codes.data();
    expect_error(b, {"codes[1, 6]", "16", "0..15"});
    b.kind = WqKind::kNf4;
    expect_error(b, {"nf4", "codes[1, 6]"});
    b.kind = WqKind::kInt8;  // 16 is a fine int8 code
    b.scales = s.scales.data();
    EXPECT_NO_THROW(pack_wq_weight(b, "int8"));
  }
  {
    Source c = s;
    c.perm[5] = c.perm[9];
    WqSource b = c.src;
    b.perm = c.perm.data();
    expect_error(b, {"perm[", "permutation"});
    c.perm[5] = 64;
    expect_error(b, {"perm[5] = 64", "[0, 64)"});
    c.perm[5] = -1;
    expect_error(b, {"perm[5] = -1"});
  }
  {
    WqSource b = s.src;
    b.codes = nullptr;
    expect_error(b, {"codes is null"});
    b = s.src;
    b.scales = nullptr;
    expect_error(b, {"scales is null"});
    b = s.src;
    b.n = 0;
    expect_error(b, {"n=0"});
    b = s.src;
    b.k = -32;
    expect_error(b, {"k=-32"});
  }
  {
    Source c = s;
    c.scales[3] = std::nanf("");
    WqSource b = c.src;
    b.scales = c.scales.data();
    expect_error(b, {"scales[1, 1]", "finite"});
    Source d = s;
    d.zeros[2] = INFINITY;
    b = d.src;
    b.zeros = d.zeros.data();
    expect_error(b, {"zeros[1, 0]", "finite"});
  }
  // Calls: null activations / outputs, negative m, a SIMD level the CPU lacks.
  auto packed = pack_wq_weight(s.src, "ok");
  std::vector<float> x(64), y(4);
  EXPECT_THROW(wq_linear(*packed, nullptr, 1, y.data()), Error);
  EXPECT_THROW(wq_linear(*packed, x.data(), 1, nullptr), Error);
  EXPECT_THROW(wq_linear(*packed, x.data(), -1, y.data()), Error);
  EXPECT_NO_THROW(wq_linear(*packed, nullptr, 0, nullptr));
  if (!isa_supported(Isa::kAvx512)) {
    EXPECT_THROW(wq_linear_isa(Isa::kAvx512, true, *packed, x.data(), 1, y.data()), Error);
  }
  EXPECT_THROW(wq_linear_reference(s.src, nullptr, 1, y.data()), Error);
}

}  // namespace
}  // namespace lowbit::kernels::cpu
