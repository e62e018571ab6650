// GPU kernels against plain CPU references (double accumulation) on random data and odd
// shapes: bf16 GEMV / cuBLASLt GEMM, embedding, add + RMSNorm, SiLU·mul, RoPE + KV write
// (FP8 scales per layer or per kv head), FP8 KV scale calibration.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "cuda_test_util.h"
#include "engine/kv_cache.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/cuda/ops/elementwise.h"
#include "models/model_config.h"

namespace lowbit::test {
namespace {

using bf16 = __nv_bfloat16;

struct LinearCase {
  int64_t m, out, in;
};

TEST(CudaLinear, GemvAndCublasMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(7);
  kc::GemmRunner gemm;
  const LinearCase cases[] = {{1, 64, 64},    {1, 512, 64},    {1, 64, 172}, {3, 172, 64},
                              {8, 33, 200},   {5, 1000, 4096}, {9, 96, 64},  {17, 77, 40},
                              {64, 512, 344}, {1, 4096, 1024}};
  for (auto [m, out, in] : cases) {
    for (int f32_out = 0; f32_out < 2; ++f32_out)
      for (int force = 0; force < 2; ++force) {
        auto x = round_bf16(random_floats(size_t(m * in), rng));
        auto w = round_bf16(random_floats(size_t(out * in), rng));
        auto bias = random_floats(size_t(out), rng);
        const bool use_bias = !f32_out;  // cuBLASLt path supports bias with bf16 output only
        auto dx = upload(to_bf16(x));
        auto dw = upload(to_bf16(w));
        auto db = upload(bias);
        auto dy = poisoned(size_t(m * out) * 4);
        auto type = f32_out ? kc::OutType::kF32 : kc::OutType::kBf16;
        gemm.linear(dx.get<bf16>(), in, dw.get<bf16>(), use_bias ? db.get<float>() : nullptr,
                    dy.get(), out, type, m, out, in, nullptr, force != 0);
        std::vector<float> y;
        if (f32_out) {
          y = download<float>(dy, size_t(m * out));
        } else {
          y = from_bf16(download<uint16_t>(dy, size_t(m * out)));
        }
        std::vector<double> ref(static_cast<size_t>(m * out));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t o = 0; o < out; ++o) {
            double s = use_bias ? bias[size_t(o)] : 0.0;
            for (int64_t k = 0; k < in; ++k)
              s += double(x[size_t(i * in + k)]) * w[size_t(o * in + k)];
            ref[size_t(i * out + o)] = s;
          }
        double err = rel_error(y, ref);
        EXPECT_LT(err, f32_out ? 1e-5 : 6e-3) << "m=" << m << " out=" << out << " in=" << in
                                              << " f32=" << f32_out << " cublas=" << force;
      }
  }
}

TEST(CudaOps, EmbeddingAddRmsNormSiluMul) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(11);
  // 4096 / 8192 / 16384: 1, 2, 4 float4 vectors per thread; 10002: not a multiple of 4 (the
  // scalar kernel).
  for (int64_t width : {64, 172, 1000, 4096, 8192, 10002, 16384}) {
    const int64_t n = 5, vocab = 37;
    auto table = round_bf16(random_floats(size_t(vocab * width), rng));
    std::vector<int32_t> ids = {3, 0, 36, 3, 17};
    auto dt = upload(to_bf16(table));
    auto di = upload(ids);
    auto dx = poisoned(size_t(n * width) * 4);
    kc::embedding(dt.get<bf16>(), di.get<int32_t>(), n, width, dx.get<float>(), nullptr);
    auto x = download<float>(dx, size_t(n * width));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < width; ++i)
        ASSERT_EQ(x[size_t(t * width + i)], table[size_t(ids[size_t(t)] * width + i)]);

    auto delta = round_bf16(random_floats(size_t(n * width), rng));
    auto w = random_floats(size_t(width), rng, 0.5f, 1.5f);
    auto dd = upload(to_bf16(delta));
    auto dw = upload(w);
    auto dout = poisoned(size_t(n * width) * 2);
    kc::add_rms_norm(dx.get<float>(), dd.get<bf16>(), dw.get<float>(), 1e-5f, n, width,
                     dout.get<bf16>(), nullptr);
    auto xs = download<float>(dx, size_t(n * width));
    auto out = from_bf16(download<uint16_t>(dout, size_t(n * width)));
    std::vector<double> ref(static_cast<size_t>(n * width));
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < width; ++i) {
        double v = double(x[size_t(t * width + i)]) + delta[size_t(t * width + i)];
        ASSERT_NEAR(xs[size_t(t * width + i)], v, 1e-6 * (1 + std::abs(v)));
        ss += v * v;
      }
      double inv = 1 / std::sqrt(ss / double(width) + 1e-5);
      for (int64_t i = 0; i < width; ++i)
        ref[size_t(t * width + i)] =
            (double(x[size_t(t * width + i)]) + delta[size_t(t * width + i)]) * inv * w[size_t(i)];
    }
    EXPECT_LT(rel_error(out, ref), 4e-3) << "width " << width;

    // Without a delta (the first layer): x is left as it is.
    auto dout2 = poisoned(size_t(n * width) * 2);
    kc::add_rms_norm(dx.get<float>(), nullptr, dw.get<float>(), 1e-5f, n, width, dout2.get<bf16>(),
                     nullptr);
    ASSERT_EQ(download<float>(dx, size_t(n * width)), xs);
    auto out2 = from_bf16(download<uint16_t>(dout2, size_t(n * width)));
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < width; ++i)
        ss += double(xs[size_t(t * width + i)]) * xs[size_t(t * width + i)];
      double inv = 1 / std::sqrt(ss / double(width) + 1e-5);
      for (int64_t i = 0; i < width; ++i)
        ref[size_t(t * width + i)] = double(xs[size_t(t * width + i)]) * inv * w[size_t(i)];
    }
    EXPECT_LT(rel_error(out2, ref), 4e-3) << "width " << width << " without delta";

    // SiLU(gate) · up over [n, 2·width]
    auto gu = round_bf16(random_floats(size_t(n * 2 * width), rng, -4, 4));
    auto dgu = upload(to_bf16(gu));
    auto dact = poisoned(size_t(n * width) * 2);
    kc::silu_mul(dgu.get<bf16>(), n, width, dact.get<bf16>(), nullptr);
    auto act = from_bf16(download<uint16_t>(dact, size_t(n * width)));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < width; ++i) {
        double g = gu[size_t(t * 2 * width + i)], u = gu[size_t(t * 2 * width + width + i)];
        ref[size_t(t * width + i)] = g / (1 + std::exp(-g)) * u;
      }
    EXPECT_LT(rel_error(act, ref), 4e-3) << "width " << width;
  }
}

// CPU reference of RoPE on one head (values already bf16-rounded), as models/llama.cpp does.
void rope_ref(std::vector<double>& v, int64_t rope_dim, bool neox, int32_t pos,
              const std::vector<double>& inv_freq) {
  const int64_t half = rope_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float angle = float(pos) * float(inv_freq[size_t(i)]);
    double c = std::cos(angle), s = std::sin(angle);
    double x0 = v[size_t(a)], x1 = v[size_t(b)];
    v[size_t(a)] = x0 * c - x1 * s;
    v[size_t(b)] = x1 * c + x0 * s;
  }
}

struct RopeCase {
  int heads, kv_heads, head_dim, rope_dim;
  bool neox, llama3, qk_norm;
  kc::KvDtype dtype;
  bool per_head_scales = false;  // FP8 scale per kv head (scale_stride 1), else one per layer
};

TEST(CudaOps, RopeAndPagedKvWrite) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(13);
  const RopeCase cases[] = {
      {8, 4, 8, 8, true, false, false, kc::KvDtype::kBf16},
      {4, 2, 64, 64, false, true, false, kc::KvDtype::kBf16},
      {6, 2, 128, 128, true, true, true, kc::KvDtype::kFp8E4M3},
      {3, 1, 80, 40, true, false, false, kc::KvDtype::kFp8E5M2},
      {6, 3, 128, 128, true, true, true, kc::KvDtype::kFp8E4M3, true},
      {4, 2, 72, 36, false, false, false, kc::KvDtype::kFp8E5M2, true},
  };
  for (const auto& rc : cases) {
    models::ModelConfig cfg;
    cfg.rope_dim = rc.rope_dim;
    cfg.rope_theta = 500000;
    if (rc.llama3) {
      cfg.rope_scaling.type = models::RopeScaling::Type::kLlama3;
      cfg.rope_scaling.factor = 8;
    }
    std::vector<double> inv = models::rope_inv_freq(cfg, {});
    std::vector<float> inv_f(inv.begin(), inv.end());
    const int64_t n = 7, hd = rc.head_dim, total = rc.heads + 2 * rc.kv_heads;
    const int32_t bs = 16, num_blocks = 5;
    auto qkv = round_bf16(random_floats(size_t(n * total * hd), rng, -3, 3));
    std::vector<int32_t> positions = {0, 1, 2, 40, 41, 1000, 70000};
    std::vector<int32_t> slots = {3, 17, 18, 79, 40, 64, 5};
    auto qn = random_floats(size_t(hd), rng, 0.5f, 1.5f),
         kn = random_floats(size_t(hd), rng, 0.5f, 1.5f);
    auto d_qkv = upload(to_bf16(qkv));
    auto d_inv = upload(inv_f);
    auto d_pos = upload(positions);
    auto d_slots = upload(slots);
    auto d_qn = upload(qn), d_kn = upload(kn);
    const int eb = kc::kv_dtype_bytes(rc.dtype);
    const size_t cache_elems = size_t(num_blocks) * rc.kv_heads * bs * hd;
    auto d_k = poisoned(cache_elems * eb), d_v = poisoned(cache_elems * eb);
    // k scales of the kv heads, then v scales (one each unless per head).
    const int groups = rc.per_head_scales ? rc.kv_heads : 1;
    std::vector<float> scales(size_t(2 * groups));
    for (int g = 0; g < groups; ++g) {
      scales[size_t(g)] = 0.011f * float(1 + 2 * g);
      scales[size_t(groups + g)] = 0.007f * float(1 + g);
    }
    auto d_scales = upload(scales);
    kc::PagedKvLayer cache;
    cache.k = d_k.get();
    cache.v = d_v.get();
    cache.k_scale = d_scales.get<float>();
    cache.v_scale = d_scales.get<float>() + groups;
    cache.scale_stride = rc.per_head_scales ? 1 : 0;
    cache.dtype = rc.dtype;
    cache.num_blocks = num_blocks;
    cache.num_kv_heads = rc.kv_heads;
    cache.block_size = bs;
    cache.head_dim = int32_t(hd);
    kc::RopeKvArgs a;
    a.qkv = d_qkv.get<bf16>();
    a.n = n;
    a.num_heads = rc.heads;
    a.num_kv_heads = rc.kv_heads;
    a.head_dim = int32_t(hd);
    a.rope_dim = rc.rope_dim;
    a.neox = rc.neox;
    a.inv_freq = d_inv.get<float>();
    a.positions = d_pos.get<int32_t>();
    a.slot_mapping = d_slots.get<int32_t>();
    a.q_norm = rc.qk_norm ? d_qn.get<float>() : nullptr;
    a.k_norm = rc.qk_norm ? d_kn.get<float>() : nullptr;
    kc::rope_kv_write(a, cache, nullptr);
    auto q_out = from_bf16(download<uint16_t>(d_qkv, qkv.size()));
    auto k_raw = download<uint8_t>(d_k, cache_elems * eb);
    auto v_raw = download<uint8_t>(d_v, cache_elems * eb);
    auto decode = [&](const std::vector<uint8_t>& raw, size_t i, float scale) -> double {
      if (rc.dtype == kc::KvDtype::kBf16) {
        uint16_t b;
        std::memcpy(&b, raw.data() + 2 * i, 2);
        return bf16_to_f32(b);
      }
      return double(rc.dtype == kc::KvDtype::kFp8E4M3 ? fp8_e4m3_to_f32(raw[i])
                                                      : fp8_e5m2_to_f32(raw[i])) *
             scale;
    };
    // Relative precision of the cache element type, plus rounding of tiny values.
    const double tol_rel = rc.dtype == kc::KvDtype::kBf16      ? 8e-3
                           : rc.dtype == kc::KvDtype::kFp8E4M3 ? 0.07
                                                               : 0.13;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t hh = 0; hh < total; ++hh) {
        std::vector<double> v(static_cast<size_t>(hd));
        for (int64_t d = 0; d < hd; ++d) v[size_t(d)] = qkv[size_t((t * total + hh) * hd + d)];
        const bool is_v = hh >= rc.heads + rc.kv_heads;
        if (!is_v) {
          if (rc.qk_norm) {
            double ss = 0;
            for (double e : v) ss += e * e;
            double inv_rms = 1 / std::sqrt(ss / double(hd) + 1e-6);
            const auto& w = hh < rc.heads ? qn : kn;
            for (int64_t d = 0; d < hd; ++d) v[size_t(d)] *= inv_rms * w[size_t(d)];
          }
          rope_ref(v, rc.rope_dim, rc.neox, positions[size_t(t)], inv);
        }
        const int32_t slot = slots[size_t(t)];
        for (int64_t d = 0; d < hd; ++d) {
          double got;
          if (hh < rc.heads) {
            got = q_out[size_t((t * total + hh) * hd + d)];
            ASSERT_NEAR(got, v[size_t(d)], 1.5e-2 * (1 + std::abs(v[size_t(d)])))
                << "q t=" << t << " h=" << hh << " d=" << d;
            continue;
          }
          const int64_t g = is_v ? hh - rc.heads - rc.kv_heads : hh - rc.heads;
          const size_t idx = size_t(((slot / bs * rc.kv_heads + g) * bs + slot % bs) * hd + d);
          const float hs = scales[size_t((is_v ? groups : 0) + (rc.per_head_scales ? g : 0))];
          got = decode(is_v ? v_raw : k_raw, idx, hs);
          const double scale = rc.dtype == kc::KvDtype::kBf16 ? 0 : hs;
          ASSERT_NEAR(got, v[size_t(d)], tol_rel * std::abs(v[size_t(d)]) + 1.5e-2 + scale * 0.02)
              << (is_v ? "v" : "k") << " t=" << t << " head=" << g << " d=" << d;
        }
      }
  }
}

// FP8 scale calibration on the GPU against the CPU cache's rule (engine::KvScales::calibrate)
// on the same bf16 keys and values: per kv head and per layer, heads of different ranges, an
// odd head_dim and more rows than one block takes.
TEST(CudaOps, KvScaleCalibrationMatchesCpuRule) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(31);
  struct Case {
    int64_t n;
    int heads, kv_heads, head_dim;
  };
  for (const Case c : {Case{7, 6, 3, 40}, Case{1500, 32, 8, 128}, Case{3, 2, 2, 8}})
    for (bool per_head : {true, false})
      for (kc::KvDtype dtype : {kc::KvDtype::kFp8E4M3, kc::KvDtype::kFp8E5M2}) {
        const int total = c.heads + 2 * c.kv_heads, hd = c.head_dim;
        auto qkv = round_bf16(random_floats(size_t(c.n * total * hd), rng, -1, 1));
        // Head h of k and v spans ±(1 + 3h) and ±1/(1 + h).
        std::vector<float> k(size_t(c.n * c.kv_heads * hd)), v(k.size());
        for (int64_t t = 0; t < c.n; ++t)
          for (int g = 0; g < c.kv_heads; ++g)
            for (int d = 0; d < hd; ++d) {
              float* kp = &qkv[size_t((t * total + c.heads + g) * hd + d)];
              float* vp = &qkv[size_t((t * total + c.heads + c.kv_heads + g) * hd + d)];
              *kp = bf16_to_f32(f32_to_bf16(*kp * float(1 + 3 * g)));
              *vp = bf16_to_f32(f32_to_bf16(*vp / float(1 + g)));
              k[size_t((t * c.kv_heads + g) * hd + d)] = *kp;
              v[size_t((t * c.kv_heads + g) * hd + d)] = *vp;
            }
        engine::KvScales want(
            1, c.kv_heads,
            per_head ? engine::KvScaleGranularity::kHead : engine::KvScaleGranularity::kTensor);
        want.calibrate(0, c.n, hd, k.data(), v.data(), kc::kv_fp8_max(dtype));
        auto d_qkv = upload(to_bf16(qkv));
        auto d_amax = poisoned(size_t(2 * c.kv_heads) * 4);
        auto d_scales = poisoned(size_t(2 * c.kv_heads) * 4);
        kc::calibrate_kv_scales(d_qkv.get<bf16>(), c.n, c.heads, c.kv_heads, hd,
                                kc::kv_fp8_max(dtype), per_head, d_amax.get<float>(),
                                d_scales.get<float>(), d_scales.get<float>() + c.kv_heads, nullptr);
        auto got = download<float>(d_scales, size_t(2 * c.kv_heads));
        for (int g = 0; g < c.kv_heads; ++g) {
          EXPECT_EQ(got[size_t(g)], want.k[size_t(g)])
              << "k head " << g << " n " << c.n << (per_head ? " per head" : " per layer");
          EXPECT_EQ(got[size_t(c.kv_heads + g)], want.v[size_t(g)])
              << "v head " << g << " n " << c.n << (per_head ? " per head" : " per layer");
        }
      }
}

// Argmax over rows: random values, a tie between two positions (the first wins), a NaN that
// must not win, an all-NaN row (0), and vocabularies from 1 to past 128k; the scratch is reused
// over several calls (its counters must come back to zero).
TEST(CudaOps, ArgmaxRows) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(5);
  const int64_t rows = 4;
  for (int64_t vocab : {1, 37, 4097, 128259}) {
    kc::DeviceBuffer scratch(size_t(kc::argmax_scratch_bytes(rows, vocab)), "argmax scratch");
    LOWBIT_CUDA_CHECK(cudaMemset(scratch.get(), 0, scratch.bytes()));
    for (int rep = 0; rep < 3; ++rep) {
      auto logits = random_floats(size_t(rows * vocab), rng, -8, 8);
      std::uniform_int_distribution<int64_t> pos(0, vocab - 1);
      const int64_t a = pos(rng), b = pos(rng);
      logits[size_t(a)] = logits[size_t(b)] = 9.0f;                                // row 0: tie
      logits[size_t(vocab + pos(rng))] = std::numeric_limits<float>::quiet_NaN();  // row 1
      for (int64_t i = 0; i < vocab; ++i)                                          // row 3: all NaN
        logits[size_t(3 * vocab + i)] = std::numeric_limits<float>::quiet_NaN();
      auto dl = upload(logits);
      auto dids = poisoned(size_t(rows) * 4);
      kc::argmax_rows(dl.get<float>(), rows, vocab, dids.get<int32_t>(), scratch.get(), nullptr);
      auto ids = download<int32_t>(dids, size_t(rows));
      for (int64_t r = 0; r < rows; ++r) {
        int32_t want = 0;
        float best = -std::numeric_limits<float>::infinity();
        bool found = false;
        for (int64_t i = 0; i < vocab; ++i) {
          const float v = logits[size_t(r * vocab + i)];
          if (!std::isnan(v) && (!found || v > best)) {
            best = v;
            want = int32_t(i);
            found = true;
          }
        }
        EXPECT_EQ(ids[size_t(r)], want) << "vocab " << vocab << " row " << r << " rep " << rep;
      }
    }
  }
}

}  // namespace
}  // namespace lowbit::test
