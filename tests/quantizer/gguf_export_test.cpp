// GGUF requantization (io/gguf_export) of stories260K (../shared): metadata kept and stamped
// like llama-quantize's, per-tensor types as the rules say, decoded values close to the F32
// source, imatrix use and its errors, and failures that leave no output behind. Also the
// imatrix GGUF reader / writer round trip.
#include "io/gguf_export.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_imatrix.h"
#include "io/gguf_writer.h"
#include "kernels/cpu/dequantize.h"
#include "test_paths.h"

namespace lowbit::io {
namespace {

std::string stories() {
  return testing::shared_path("models/stories260K/gguf/stories260K-F32.gguf");
}
std::string temp(const std::string& n) {
  return (std::filesystem::temp_directory_path() /
          ("lowbit_export_" + std::to_string(::getpid()) + "_" + n))
      .string();
}

std::vector<float> values(const TensorView& t) {
  if (auto f = float_values(t)) return *f;
  std::vector<float> out(size_t(t.numel()));
  kernels::cpu::dequantize_ref(t.dtype, t.data, t.numel(), out.data());
  return out;
}

double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, r = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += double(a[i] - b[i]) * (a[i] - b[i]);
    r += double(a[i]) * a[i];
  }
  return std::sqrt(e / r);
}

class GgufExport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(stories())) GTEST_SKIP() << "no " << stories();
    in_ = GgufFile::open(stories());
  }
  std::unique_ptr<GgufFile> in_;
};

TEST_F(GgufExport, Q4KMKeepsMetadataAndFollowsTheRules) {
  const std::string out = temp("q4km.gguf");
  GgufExportOptions o;
  o.file_type = "Q4_K_M";
  const auto r = export_gguf(*in_, out, o);
  auto q = GgufFile::open(out);
  EXPECT_EQ(q->get_int("general.file_type"), 15);
  EXPECT_EQ(q->get_int("general.quantization_version"), 2);
  EXPECT_EQ(q->get_string("general.architecture"), "llama");
  EXPECT_EQ(q->get_string_array("tokenizer.ggml.tokens"),
            in_->get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(q->get_int("llama.block_count"), in_->get_int("llama.block_count"));
  ASSERT_EQ(q->tensors().size(), in_->tensors().size());
  ASSERT_EQ(r.tensors.size(), q->tensors().size());
  for (const TensorView& t : q->tensors()) {
    const TensorView* src = in_->find_tensor(t.name);
    ASSERT_NE(src, nullptr) << t.name;
    EXPECT_EQ(t.shape, src->shape);
    // stories260K: rows of 64 fall back from Q4_K to Q5_0 (Q6_K -> Q8_0), rows of 172 to F16.
    if (t.shape.size() == 1)
      EXPECT_EQ(t.dtype, DType::F32) << t.name;
    else if (t.shape.back() == 172)
      EXPECT_EQ(t.dtype, DType::F16) << t.name;
    else if (t.name == "token_embd.weight")
      EXPECT_EQ(t.dtype, DType::Q8_0) << t.name;
    else
      EXPECT_TRUE(t.dtype == DType::Q5_0 || t.dtype == DType::Q8_0) << t.name << name(t.dtype);
    const double err = rel_rms(values(*src), values(t));
    EXPECT_LT(err, t.dtype == DType::F32 ? 1e-9 : 0.08) << t.name;
  }
  std::filesystem::remove(out);
}

TEST_F(GgufExport, EveryFileTypeWritesALoadableFile) {
  for (const char* ft : {"F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M",
                         "Q4_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"}) {
    const std::string out = temp(std::string(ft) + ".gguf");
    GgufExportOptions o;
    o.file_type = ft;
    export_gguf(*in_, out, o);
    auto q = GgufFile::open(out);
    EXPECT_EQ(uint64_t(q->get_int("general.file_type")), find_gguf_file_type(ft)->llama_ftype);
    const TensorView* wq = q->find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(wq, nullptr);
    EXPECT_LT(rel_rms(values(*in_->find_tensor(wq->name)), values(*wq)), 0.25) << ft;
    std::filesystem::remove(out);
  }
}

TEST_F(GgufExport, PureDryRunAndErrors) {
  GgufExportOptions o;
  o.file_type = "Q6_K";
  o.pure = true;
  for (const auto& t : plan_gguf_export(*in_, o).tensors)
    if (t.shape.size() == 2) EXPECT_TRUE(t.to == DType::Q8_0 || t.to == DType::F16) << t.name;

  const std::string out = temp("bad.gguf");
  o.file_type = "Q1_0";  // a llama-quantize type lowbit does not write
  EXPECT_THROW(export_gguf(*in_, out, o), Error);
  o.file_type = "IQ2_XXS";  // needs an imatrix... but its rows of 64 fall back to IQ4_NL
  EXPECT_NO_THROW(plan_gguf_export(*in_, o));
  o.file_type = "Q2_K_S";  // needs an imatrix... but every Q2_K row here falls back to Q4_0
  o.pure = false;
  EXPECT_NO_THROW(plan_gguf_export(*in_, o));
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(GgufExport, UsesTheImatrixAndChecksItsSize) {
  Imatrix m;
  m.datasets = {"test"};
  m.chunk_count = 3;
  m.chunk_size = 64;
  ImatrixEntry e;
  e.in_sum2.assign(64, 0.f);
  for (int i = 0; i < 64; ++i) e.in_sum2[size_t(i)] = float(1 + (i * 37) % 11) * 10.f;
  e.counts = {10.f};
  m.entries["blk.0.attn_q.weight"] = e;
  GgufExportOptions o;
  o.file_type = "Q4_0";
  o.imatrix = &m;
  const auto plan = plan_gguf_export(*in_, o);
  int used = 0;
  for (const auto& t : plan.tensors) used += t.used_imatrix;
  EXPECT_EQ(used, 1);
  const std::string a = temp("im.gguf"), b = temp("noim.gguf");
  export_gguf(*in_, a, o);
  o.imatrix = nullptr;
  export_gguf(*in_, b, o);
  auto qa = GgufFile::open(a), qb = GgufFile::open(b);
  const TensorView *ta = qa->find_tensor("blk.0.attn_q.weight"),
                   *tb = qb->find_tensor("blk.0.attn_q.weight");
  EXPECT_NE(std::vector<uint8_t>(ta->data, ta->data + ta->nbytes),
            std::vector<uint8_t>(tb->data, tb->data + tb->nbytes));
  std::filesystem::remove(a);
  std::filesystem::remove(b);

  m.entries["blk.0.attn_q.weight"].in_sum2.resize(32);
  o.imatrix = &m;
  try {
    plan_gguf_export(*in_, o);
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("blk.0.attn_q.weight"), std::string::npos);
  }
}

// The grid i-quants on rows of 256 (stories260K's rows fall back): a 2-layer llama-shaped
// GGUF of random weights. Types that need importance weights are refused without an imatrix,
// naming the tensor; with one every block tensor gets its i-quant type and decodes close.
TEST(GgufExportIQuants, NeedAnImatrixAndDecodeClose) {
  const std::string in_path = temp("iq_in.gguf");
  const std::vector<std::string> names = {"blk.0.attn_q.weight", "blk.0.ffn_up.weight",
                                          "blk.1.attn_q.weight", "blk.1.ffn_up.weight"};
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.f, 0.05f);
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    w.set_u32("llama.attention.head_count", 4);
    w.set_u32("llama.attention.head_count_kv", 4);
    for (const std::string& n : names) {
      std::vector<float> x(256 * 256);
      for (float& v : x) v = g(rng);
      std::vector<uint8_t> bytes(x.size() * 4);
      std::memcpy(bytes.data(), x.data(), bytes.size());
      w.add_tensor(n, DType::F32, {256, 256}, bytes);
    }
    w.write(in_path);
  }
  auto in = GgufFile::open(in_path);
  Imatrix m;
  m.datasets = {"test"};
  m.chunk_count = 1;
  m.chunk_size = 16;
  for (const std::string& n : names) {
    ImatrixEntry e;
    e.in_sum2.resize(256);
    for (float& v : e.in_sum2) v = std::fabs(g(rng)) * 100 + 0.1f;
    e.counts = {1.f};
    m.entries[n] = e;
  }
  const std::string out = temp("iq_out.gguf");
  for (const char* ft : {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M", "IQ3_XXS"}) {
    GgufExportOptions o;
    o.file_type = ft;
    try {
      plan_gguf_export(*in, o);
      ADD_FAILURE() << ft << " without an imatrix";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.0."), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("importance matrix"), std::string::npos) << e.what();
    }
  }
  struct Want {
    const char* ft;
    bool imatrix;
    DType q_type;  // blk.*.attn_q's type
    double max_err;
  };
  for (const Want& want :
       {Want{"IQ3_S", false, DType::IQ3_S, 0.25}, Want{"IQ3_XXS", true, DType::IQ3_XXS, 0.3},
        Want{"IQ2_M", true, DType::IQ2_S, 0.4}, Want{"IQ2_XS", true, DType::IQ2_XS, 0.45},
        Want{"IQ2_XXS", true, DType::IQ2_XXS, 0.5}, Want{"IQ1_M", true, DType::IQ1_M, 0.65},
        Want{"IQ1_S", true, DType::IQ1_S, 0.7}}) {
    GgufExportOptions o;
    o.file_type = want.ft;
    o.pure = true;
    o.imatrix = want.imatrix ? &m : nullptr;
    export_gguf(*in, out, o);
    auto q = GgufFile::open(out);
    for (const std::string& n : names) {
      const TensorView* t = q->find_tensor(n);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->dtype, want.q_type) << want.ft << " " << n;
      EXPECT_LT(rel_rms(values(*in->find_tensor(n)), values(*t)), want.max_err)
          << want.ft << " " << n;
    }
    std::filesystem::remove(out);
  }
  std::filesystem::remove(in_path);
}

TEST(GgufImatrix, RoundTripAndImportance) {
  Imatrix m;
  m.datasets = {"a.txt", "b.txt"};
  m.chunk_count = 7;
  m.chunk_size = 512;
  m.entries["blk.0.ffn_down.weight"] = {1, {2.f, 4.f, 6.f}, {2.f}};
  m.entries["blk.0.ffn_up_exps.weight"] = {2, {1.f, 2.f, 3.f, 4.f}, {0.f, 4.f}};
  const std::string p = temp("m.imatrix.gguf");
  write_imatrix(m, p);
  auto f = GgufFile::open(p);
  EXPECT_EQ(f->get_string("general.type"), "imatrix");
  EXPECT_EQ(f->find_tensor("blk.0.ffn_up_exps.weight.in_sum2")->shape,
            (std::vector<int64_t>{2, 2}));
  const Imatrix r = read_imatrix(p);
  EXPECT_EQ(r.datasets, m.datasets);
  EXPECT_EQ(r.chunk_count, 7u);
  EXPECT_EQ(r.chunk_size, 512u);
  EXPECT_EQ(r.importance("blk.0.ffn_down.weight"), (std::vector<float>{1.f, 2.f, 3.f}));
  // An expert never routed to (count 0) weighs 1 everywhere, as in llama-quantize.
  EXPECT_EQ(r.importance("blk.0.ffn_up_exps.weight"), (std::vector<float>{1.f, 1.f, 0.75f, 1.f}));
  EXPECT_TRUE(r.importance("missing").empty());
  std::filesystem::remove(p);
}

TEST(GgufImatrix, RejectsMalformedFiles) {
  const std::string p = temp("bad.imatrix.gguf");
  {
    GgufWriter w;
    w.add_tensor("x.in_sum2", DType::F32, {1, 2}, std::vector<uint8_t>(8));
    w.write(p);
  }
  EXPECT_THROW(read_imatrix(p), Error);  // no counts
  {
    GgufWriter w;
    std::vector<uint8_t> neg(4);
    const float v = -1.f;
    std::memcpy(neg.data(), &v, 4);
    w.add_tensor("x.in_sum2", DType::F32, {1, 1}, neg);
    w.add_tensor("x.counts", DType::F32, {1, 1}, std::vector<uint8_t>(4));
    w.write(p);
  }
  EXPECT_THROW(read_imatrix(p), Error);  // negative sum
  {
    GgufWriter w;
    w.set_string("general.type", "imatrix");
    w.write(p);
  }
  EXPECT_THROW(read_imatrix(p), Error);  // no entries
  std::filesystem::remove(p);
}

}  // namespace
}  // namespace lowbit::io
