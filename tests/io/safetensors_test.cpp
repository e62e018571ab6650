// safetensors reader and checkpoint directories: random valid files (and random shardings of
// them) read back bit-exact, the real stories260K model.safetensors (written by the Python
// safetensors library) matches its known shapes and the GGUF conversion of the same weights.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include "io/gguf.h"
#include "io/io_test_util.h"
#include "test_paths.h"

namespace lowbit::io {
namespace {

using namespace lowbit::io::testing;

void expect_matches(const SafetensorsFile& f, const RandomSt& r) {
  ASSERT_EQ(f.tensors().size(), r.spec.tensors.size());
  for (size_t i = 0; i < r.spec.tensors.size(); ++i) {
    const auto& want = r.spec.tensors[i];
    const TensorView* got = nullptr;
    for (const auto& t : f.tensors())
      if (t.name == want.name) got = &t;
    ASSERT_NE(got, nullptr) << want.name;
    EXPECT_EQ(got->dtype, *dtype_from_safetensors_name(r.dtypes[i]));
    EXPECT_EQ(got->shape, r.shapes[i]);
    ASSERT_EQ(got->nbytes, want.data.size());
    if (got->nbytes) EXPECT_EQ(std::memcmp(got->data, want.data.data(), got->nbytes), 0);
  }
  // tensors() is in data order.
  for (size_t i = 1; i < f.tensors().size(); ++i)
    EXPECT_LE(f.tensors()[i - 1].data, f.tensors()[i].data);
}

TEST(Safetensors, RandomValidFilesRoundTripBitExact) {
  ScratchDir dir("st_rt");
  const std::string path = dir.file("a.safetensors");
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Rng rng(seed);
    RandomSt r = random_st(rng);
    write_file(path, st_serialize(r.spec));
    std::unique_ptr<SafetensorsFile> f;
    ASSERT_NO_THROW(f = SafetensorsFile::open(path)) << "seed " << seed;
    expect_matches(*f, r);
    if (!r.spec.metadata_json.empty()) EXPECT_EQ(f->metadata().at("format"), "pt");
  }
}

// Writes the tensors of `r` split into shards (each a valid safetensors file) plus an index.
void write_sharded(const std::string& dir, const RandomSt& r, size_t n_shards, Rng& rng,
                   std::string* index_json = nullptr) {
  std::vector<StSpec> shards(n_shards);
  std::string wm;
  for (size_t i = 0; i < r.spec.tensors.size(); ++i) {
    size_t s = rng() % n_shards;
    StTensorSpec t = r.spec.tensors[i];
    t.begin = 0;
    for (const auto& u : shards[s].tensors) t.begin += u.data.size();
    st_set_offsets(t);
    shards[s].tensors.push_back(t);
    std::string shard_name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards);
    wm += (wm.empty() ? "" : ",") + ("\"" + t.name + "\":\"" + shard_name + "\"");
  }
  for (size_t s = 0; s < n_shards; ++s)
    write_file(dir + fmt::format("/model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards),
               st_serialize(shards[s]));
  std::string idx = "{\"metadata\":{\"total_size\":0},\"weight_map\":{" + wm + "}}";
  if (index_json) *index_json = idx;
  write_text(dir + "/model.safetensors.index.json", idx);
}

TEST(Safetensors, CheckpointDirSingleAndSharded) {
  for (uint64_t seed = 0; seed < 60; ++seed) {
    Rng rng(seed + 1000);
    RandomSt r = random_st(rng);
    ScratchDir dir("st_ckpt_" + std::to_string(seed));
    if (seed % 3 == 0) {
      write_file(dir.file("model.safetensors"), st_serialize(r.spec));
    } else {
      write_sharded(dir.path().string(), r, rand_in(rng, 1, 3), rng);
    }
    std::unique_ptr<SafetensorsCheckpoint> ck;
    ASSERT_NO_THROW(ck = SafetensorsCheckpoint::open_dir(dir.path().string())) << seed;
    std::vector<std::string> want;
    for (size_t i = 0; i < r.spec.tensors.size(); ++i) {
      const auto& t = r.spec.tensors[i];
      want.push_back(t.name);
      const TensorView* v = ck->find(t.name);
      ASSERT_NE(v, nullptr) << t.name;
      EXPECT_EQ(v->shape, r.shapes[i]);
      ASSERT_EQ(v->nbytes, t.data.size());
      if (v->nbytes) EXPECT_EQ(std::memcmp(v->data, t.data.data(), v->nbytes), 0);
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(ck->names(), want);
    EXPECT_EQ(ck->find("missing.weight"), nullptr);
  }
}

TEST(Safetensors, RealStories260K) {
  if (!lowbit::testing::shared_available()) GTEST_SKIP() << "../shared not available";
  auto f = SafetensorsFile::open(
      lowbit::testing::shared_path("models/stories260K/hf/model.safetensors"));
  EXPECT_EQ(f->tensors().size(), 47u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("source"), "stories260K.bin");
  auto ck = SafetensorsCheckpoint::open_dir(lowbit::testing::shared_path("models/stories260K/hf"));
  const TensorView* k = ck->find("model.layers.0.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(k->dtype, DType::F32);
  EXPECT_EQ(ck->find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(ck->find("model.layers.0.mlp.down_proj.weight")->shape,
            (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(ck->find("model.norm.weight")->shape, (std::vector<int64_t>{64}));

  // Same weights as the GGUF conversion (norms and embeddings are not permuted).
  auto g =
      GgufFile::open(lowbit::testing::shared_path("models/stories260K/gguf/stories260K-F32.gguf"));
  for (auto [hf, gg] : std::vector<std::pair<const char*, const char*>>{
           {"model.embed_tokens.weight", "token_embd.weight"},
           {"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight"},
           {"model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"},
           {"model.layers.2.self_attn.v_proj.weight", "blk.2.attn_v.weight"},
           {"model.norm.weight", "output_norm.weight"}}) {
    const TensorView* a = ck->find(hf);
    const TensorView* b = g->find_tensor(gg);
    ASSERT_TRUE(a && b) << hf;
    EXPECT_EQ(a->shape, b->shape) << hf;
    ASSERT_EQ(a->nbytes, b->nbytes) << hf;
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << hf;
  }
}

TEST(Safetensors, EmptyTensorListAndScalars) {
  ScratchDir dir("st_edge");
  StSpec s;
  write_file(dir.file("empty.safetensors"), st_serialize(s));
  EXPECT_EQ(SafetensorsFile::open(dir.file("empty.safetensors"))->tensors().size(), 0u);
  StTensorSpec t{"scalar", "\"F64\"", "[]", "[0,8]", Bytes(8, 0x3f), 0};
  StTensorSpec z{"zero", "\"BF16\"", "[0,5]", "[8,8]", {}, 8};
  s.tensors = {z, t};
  write_file(dir.file("scalar.safetensors"), st_serialize(s));
  auto f = SafetensorsFile::open(dir.file("scalar.safetensors"));
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[0].name, "scalar");
  EXPECT_TRUE(f->tensors()[0].shape.empty());
  EXPECT_EQ(f->tensors()[0].numel(), 1);
  EXPECT_EQ(f->tensors()[1].shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(f->tensors()[1].nbytes, 0u);
}

}  // namespace
}  // namespace lowbit::io
