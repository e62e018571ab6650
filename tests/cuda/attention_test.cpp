// Paged attention (decode and prefill shapes, GQA, bf16 / FP8 caches, split contexts) against
// a double-precision CPU reference computed from the cache bytes the kernel reads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <string>
#include <utility>

#include "core/error.h"
#include "cuda_test_util.h"
#include "kernels/cuda/attention/paged_attention.h"

namespace lowbit::test {
namespace {

using bf16 = __nv_bfloat16;

struct AttnCase {
  int heads, kv_heads, head_dim;
  kc::KvDtype dtype;
  std::vector<int32_t> ctx_lens;  // one query token each; token t belongs to sequence t % seqs
  int seqs;
  int splits;
  bool per_head_scales = false;  // FP8: a key and a value scale per kv head (else one per layer)
};

double decode_elem(kc::KvDtype d, const std::vector<uint8_t>& raw, size_t i, float scale) {
  if (d == kc::KvDtype::kBf16) {
    uint16_t b;
    std::memcpy(&b, raw.data() + 2 * i, 2);
    return bf16_to_f32(b);
  }
  return double(d == kc::KvDtype::kFp8E4M3 ? fp8_e4m3_to_f32(raw[i]) : fp8_e5m2_to_f32(raw[i])) *
         scale;
}

void run_case(const AttnCase& c, std::mt19937& rng) {
  const int hd = c.head_dim, bs = 16;
  const int n = int(c.ctx_lens.size());
  const int max_ctx = *std::max_element(c.ctx_lens.begin(), c.ctx_lens.end());
  const int max_blocks = (max_ctx + bs - 1) / bs;
  const int num_blocks = c.seqs * max_blocks + 3;
  // Block tables: a random permutation of the pool, so sequences' blocks interleave.
  std::vector<int32_t> perm(static_cast<size_t>(num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tables(static_cast<size_t>(c.seqs * max_blocks));
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = perm[i];

  const int eb = kc::kv_dtype_bytes(c.dtype);
  const size_t cache_elems = size_t(num_blocks) * c.kv_heads * bs * hd;
  std::vector<uint8_t> k_raw(cache_elems * eb), v_raw(cache_elems * eb);
  if (c.dtype == kc::KvDtype::kBf16) {
    auto k = to_bf16(random_floats(cache_elems, rng, -2, 2));
    auto v = to_bf16(random_floats(cache_elems, rng, -2, 2));
    std::memcpy(k_raw.data(), k.data(), k_raw.size());
    std::memcpy(v_raw.data(), v.data(), v_raw.size());
  } else {
    // Random finite FP8 bytes (no NaN patterns; e5m2 also no infinities).
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto* raw : {&k_raw, &v_raw})
      for (auto& b : *raw) {
        do b = uint8_t(byte(rng));
        while (!std::isfinite(c.dtype == kc::KvDtype::kFp8E4M3 ? fp8_e4m3_to_f32(b)
                                                               : fp8_e5m2_to_f32(b)) ||
               std::abs(c.dtype == kc::KvDtype::kFp8E4M3 ? fp8_e4m3_to_f32(b)
                                                         : fp8_e5m2_to_f32(b)) > 448);
      }
  }
  // Scales per kv head; with per-layer scales every head uses head 0's. Per head they span a
  // factor 9, as heads' ranges do in real models.
  std::vector<float> k_scales(size_t(c.kv_heads)), v_scales(size_t(c.kv_heads));
  for (int g = 0; g < c.kv_heads; ++g) {
    const int f = c.per_head_scales ? 1 + (g * 5) % 9 : 1;
    k_scales[size_t(g)] = c.dtype == kc::KvDtype::kBf16 ? 1.0f : 0.004f * float(f);
    v_scales[size_t(g)] = c.dtype == kc::KvDtype::kBf16 ? 1.0f : 0.006f / float(f);
  }
  const int64_t q_stride = int64_t(c.heads + 2 * c.kv_heads) * hd;  // q inside a qkv row
  auto q = round_bf16(random_floats(size_t(n * q_stride), rng, -2, 2));
  std::vector<int32_t> token_seq(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) token_seq[size_t(t)] = t % c.seqs;

  auto dq = upload(to_bf16(q));
  auto dk = upload(k_raw), dv = upload(v_raw);
  auto dtab = upload(tables), dseq = upload(token_seq), dctx = upload(c.ctx_lens);
  std::vector<float> scales = k_scales;
  scales.insert(scales.end(), v_scales.begin(), v_scales.end());
  auto dscales = upload(scales);
  auto dout = poisoned(size_t(n) * c.heads * hd * 2);
  kc::DeviceBuffer ws(
      size_t(std::max<int64_t>(1, kc::attention_workspace_floats(n, c.heads, hd, c.splits))) * 4,
      "workspace");
  kc::PagedKvLayer cache;
  cache.k = dk.get();
  cache.v = dv.get();
  cache.k_scale = dscales.get<float>();
  cache.v_scale = dscales.get<float>() + c.kv_heads;
  cache.scale_stride = c.per_head_scales ? 1 : 0;
  cache.dtype = c.dtype;
  cache.num_blocks = num_blocks;
  cache.num_kv_heads = c.kv_heads;
  cache.block_size = bs;
  cache.head_dim = hd;
  kc::AttentionArgs a;
  a.q = dq.get<bf16>();
  a.q_stride = q_stride;
  a.out = dout.get<bf16>();
  a.n = n;
  a.num_heads = c.heads;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.token_seq = dseq.get<int32_t>();
  a.ctx_lens = dctx.get<int32_t>();
  a.block_tables = dtab.get<int32_t>();
  a.max_blocks_per_seq = max_blocks;
  a.num_splits = c.splits;
  a.workspace = ws.get<float>();
  kc::paged_attention(a, cache, nullptr);
  auto out = from_bf16(download<uint16_t>(dout, size_t(n) * c.heads * hd));

  std::vector<double> ref(out.size());
  const int group = c.heads / c.kv_heads;
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < c.heads; ++h) {
      const int g = h / group, seq = token_seq[size_t(t)], len = c.ctx_lens[size_t(t)];
      std::vector<double> s(static_cast<size_t>(len));
      auto idx = [&](int pos, int d) {
        int blk = tables[size_t(seq * max_blocks + pos / bs)];
        return size_t(((int64_t(blk) * c.kv_heads + g) * bs + pos % bs) * hd + d);
      };
      double mx = -INFINITY;
      for (int p = 0; p < len; ++p) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += double(q[size_t(t * q_stride + h * hd + d)]) *
                 decode_elem(c.dtype, k_raw, idx(p, d), k_scales[size_t(g)]);
        s[size_t(p)] = dot / std::sqrt(double(hd));
        mx = std::max(mx, s[size_t(p)]);
      }
      double sum = 0;
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (int p = 0; p < len; ++p)
          o += s[size_t(p)] * decode_elem(c.dtype, v_raw, idx(p, d), v_scales[size_t(g)]);
        ref[size_t((t * c.heads + h) * hd + d)] = o / sum;
      }
    }
  EXPECT_LT(rel_error(out, ref), 8e-3) << "heads " << c.heads << "/" << c.kv_heads << " hd " << hd
                                       << " dtype " << kc::kv_dtype_name(c.dtype) << " splits "
                                       << c.splits << (c.per_head_scales ? " per-head scales" : "");
}

TEST(CudaAttention, PagedMatchesReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(17);
  const AttnCase cases[] = {
      // stories260K shape, prefill-like contexts 1..9, one sequence
      {8, 4, 8, kc::KvDtype::kBf16, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 1},
      // decode: two sequences, long contexts over several 256-position chunks, split
      {32, 8, 128, kc::KvDtype::kBf16, {700, 1}, 2, 1},
      {32, 8, 128, kc::KvDtype::kBf16, {700, 33}, 2, 5},
      {32, 8, 128, kc::KvDtype::kFp8E4M3, {517, 300, 16}, 3, 7},
      {16, 2, 64, kc::KvDtype::kFp8E5M2, {129, 2, 64}, 3, 3},
      // more query heads per kv head than one block takes (group 12 > 8), head_dim 80
      {12, 1, 80, kc::KvDtype::kBf16, {257, 3}, 1, 2},
      // no GQA, head_dim 256, more splits than positions for the short row
      {4, 4, 256, kc::KvDtype::kFp8E4M3, {40, 3}, 2, 16},
      // Llama-3 shape (GQA 4, head_dim 128) in every KV dtype, one split and many, odd contexts
      {32, 8, 128, kc::KvDtype::kFp8E4M3, {1001, 77, 5}, 3, 1},
      {32, 8, 128, kc::KvDtype::kFp8E5M2, {1001, 77, 5}, 3, 9},
      {32, 8, 128, kc::KvDtype::kBf16, {1531, 255, 129}, 3, 33},
      // GQA 1 and 8 at head_dim 64, bf16 and FP8 (FP8 group 8 takes two blocks of 4 heads)
      {8, 8, 64, kc::KvDtype::kBf16, {333, 31}, 2, 4},
      {8, 8, 64, kc::KvDtype::kFp8E5M2, {333, 31}, 2, 1},
      {16, 2, 64, kc::KvDtype::kBf16, {611, 97}, 2, 6},
      {16, 2, 128, kc::KvDtype::kFp8E4M3, {611, 97}, 2, 1},
      // FP8 head dims that are not a multiple of 16 (8-byte loads): 8 and 72
      {8, 4, 8, kc::KvDtype::kFp8E4M3, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 1},
      {6, 2, 72, kc::KvDtype::kFp8E5M2, {191, 47}, 2, 3},
  };
  for (const auto& c : cases) run_case(c, rng);
}

// FP8 caches with a scale per kv head (PagedKvLayer::scale_stride 1): every kernel variant
// (16-byte loads with the transposing reduction, the generic one, 8-byte loads), GQA 1 to 12,
// one split and many.
TEST(CudaAttention, PerHeadFp8ScalesMatchReference) {
  LOWBIT_REQUIRE_GPU();
  std::mt19937 rng(23);
  const AttnCase cases[] = {
      {32, 8, 128, kc::KvDtype::kFp8E4M3, {1001, 77, 5}, 3, 1, true},
      {32, 8, 128, kc::KvDtype::kFp8E5M2, {700, 33}, 2, 9, true},
      {16, 2, 64, kc::KvDtype::kFp8E4M3, {611, 97}, 2, 6, true},
      {8, 8, 64, kc::KvDtype::kFp8E5M2, {333, 31}, 2, 1, true},
      {12, 1, 80, kc::KvDtype::kFp8E4M3, {257, 3}, 1, 2, true},
      {6, 2, 72, kc::KvDtype::kFp8E4M3, {191, 47}, 2, 3, true},
      {9, 3, 8, kc::KvDtype::kFp8E5M2, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 1, true},
      {4, 4, 256, kc::KvDtype::kFp8E4M3, {40, 3}, 2, 16, true},
  };
  for (const auto& c : cases) run_case(c, rng);
}

// Caches of head_dim 128 run the tensor-core kernel (paged_attention_mma.cu), on Hopper with
// bulk copies; the same cases with its per-lane copies (LOWBIT_ATTENTION_BULK=0, the path
// of sm_80 / sm_89) and on the CUDA-core kernel (LOWBIT_ATTENTION_MMA=0) keep all three
// covered. bf16 and FP8, GQA 4, 12 (three blocks of 4 heads) and 3 (a block with a padding
// head), contexts that are no multiple of the 16 positions an mma step takes, one split and
// many, per-layer and per-head scales.
TEST(CudaAttention, TensorCoreAndCudaCoreKernelsMatchReference) {
  LOWBIT_REQUIRE_GPU();
  const AttnCase cases[] = {
      {32, 8, 128, kc::KvDtype::kFp8E4M3, {1001, 77, 5}, 3, 1},
      {32, 8, 128, kc::KvDtype::kFp8E5M2, {4099, 1, 16, 17}, 4, 11},
      {24, 2, 128, kc::KvDtype::kFp8E4M3, {515, 33}, 2, 7, true},
      {6, 2, 128, kc::KvDtype::kFp8E5M2, {300, 15}, 2, 3, true},
      {32, 8, 128, kc::KvDtype::kFp8E4M3, {2048, 640}, 2, 64, true},
      {32, 8, 128, kc::KvDtype::kBf16, {4099, 1, 16, 17}, 4, 11},
      {24, 2, 128, kc::KvDtype::kBf16, {515, 33}, 2, 7},
      {6, 2, 128, kc::KvDtype::kBf16, {300, 15}, 2, 1},
  };
  const std::pair<const char*, const char*> modes[] = {{"1", "1"}, {"1", "0"}, {"0", "1"}};
  for (const auto& [mma, bulk] : modes) {
    SCOPED_TRACE(std::string("LOWBIT_ATTENTION_MMA=") + mma + " LOWBIT_ATTENTION_BULK=" + bulk);
    setenv("LOWBIT_ATTENTION_MMA", mma, 1);
    setenv("LOWBIT_ATTENTION_BULK", bulk, 1);
    std::mt19937 rng(29);
    for (const auto& c : cases) run_case(c, rng);
  }
  unsetenv("LOWBIT_ATTENTION_MMA");
  unsetenv("LOWBIT_ATTENTION_BULK");
}

TEST(CudaAttention, RejectsUnsupportedHeadDim) {
  LOWBIT_REQUIRE_GPU();
  kc::AttentionArgs a;
  a.n = 1;
  a.num_heads = 2;
  kc::PagedKvLayer cache;
  cache.num_kv_heads = 1;
  cache.head_dim = 12;
  EXPECT_THROW(kc::paged_attention(a, cache, nullptr), Error);
}

TEST(CudaAttention, RejectsBlockSizeNotPowerOfTwo) {
  LOWBIT_REQUIRE_GPU();
  kc::AttentionArgs a;
  a.n = 1;
  a.num_heads = 2;
  kc::PagedKvLayer cache;
  cache.num_kv_heads = 1;
  cache.head_dim = 64;
  cache.block_size = 12;
  EXPECT_THROW(kc::paged_attention(a, cache, nullptr), Error);
}

}  // namespace
}  // namespace lowbit::test
