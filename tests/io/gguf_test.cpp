// GGUF reader: random valid files written by io_test_util.h read back bit-exact, the real
// stories260K file (written by llama.cpp's gguf-py) gives the known metadata and shapes, and the
// typed getters check the stored type.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/mapped_file.h"
#include "io/io_test_util.h"
#include "test_paths.h"

namespace lowbit::io {
namespace {

using namespace lowbit::io::testing;

void expect_same_value(const GgufValue& got, const GgufValue& want, const std::string& key) {
  ASSERT_EQ(got.index(), want.index()) << key;
  if (const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&want)) {
    const auto& g = *std::get<std::shared_ptr<GgufArray>>(got);
    ASSERT_EQ(g.elem_type, (*a)->elem_type) << key;
    ASSERT_EQ(g.items.size(), (*a)->items.size()) << key;
    for (size_t i = 0; i < g.items.size(); ++i) expect_same_value(g.items[i], (*a)->items[i], key);
  } else if (const auto* d = std::get_if<double>(&want)) {
    // Bit-exact: F32 values widen to double exactly.
    EXPECT_EQ(std::memcmp(&std::get<double>(got), d, sizeof(double)), 0) << key;
  } else {
    EXPECT_TRUE(got == want) << key;
  }
}

TEST(Gguf, RandomValidFilesRoundTripBitExact) {
  ScratchDir dir("gguf_rt");
  const std::string path = dir.file("a.gguf");
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Rng rng(seed);
    RandomGguf r = random_gguf(rng);
    Bytes bytes = gguf_serialize(r.spec);
    write_file(path, bytes);
    std::unique_ptr<GgufFile> g;
    ASSERT_NO_THROW(g = GgufFile::open(path)) << "seed " << seed;
    EXPECT_EQ(g->version(), r.spec.version);
    EXPECT_EQ(g->alignment(), r.spec.alignment);
    for (const auto& [key, want] : r.expected_kv) {
      ASSERT_TRUE(g->has(key)) << key;
      expect_same_value(g->metadata().at(key), want, key);
    }
    EXPECT_EQ(g->metadata().size(), r.spec.kvs.size());
    ASSERT_EQ(g->tensors().size(), r.spec.tensors.size());
    for (size_t i = 0; i < r.spec.tensors.size(); ++i) {
      const auto& want = r.spec.tensors[i];
      const TensorView& t = g->tensors()[i];
      EXPECT_EQ(t.name, want.name);
      EXPECT_EQ(t.dtype, *dtype_from_gguf_id(want.type));
      std::vector<int64_t> shape(want.ne.rbegin(), want.ne.rend());  // PyTorch order
      EXPECT_EQ(t.shape, shape) << t.name;
      ASSERT_EQ(t.nbytes, want.data.size());
      EXPECT_EQ(std::memcmp(t.data, want.data.data(), t.nbytes), 0) << t.name;
      EXPECT_EQ(g->find_tensor(want.name), &t);
    }
    EXPECT_EQ(g->find_tensor("no.such.tensor"), nullptr);
  }
}

TEST(Gguf, RealStories260K) {
  if (!lowbit::testing::shared_available()) GTEST_SKIP() << "../shared not available";
  const std::string path =
      lowbit::testing::shared_path("models/stories260K/gguf/stories260K-F32.gguf");
  auto g = GgufFile::open(path);
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->alignment(), 32u);
  EXPECT_EQ(g->metadata().size(), 22u);
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  EXPECT_EQ(g->get_string("general.name"), "stories260K");
  EXPECT_EQ(g->type_of("llama.embedding_length"), GgufType::U32);
  EXPECT_EQ(g->get_int("llama.embedding_length"), 64);
  EXPECT_EQ(g->get_int("llama.block_count"), 5);
  EXPECT_EQ(g->get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(g->get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(g->get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(g->get_int("llama.context_length"), 512);
  EXPECT_FLOAT_EQ(float(g->get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(g->get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_TRUE(g->get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(g->get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_EQ(g->get_int("tokenizer.ggml.eos_token_id"), 2);
  auto tokens = g->get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "\n<s>\n");  // as gguf-py's GGUFReader reads this file
  EXPECT_EQ(tokens[2], "\n</s>\n");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[100], "<0x61>");
  auto scores = g->get_float_array("tokenizer.ggml.scores");
  ASSERT_EQ(scores.size(), 512u);
  EXPECT_EQ(scores[300], -41.0f);
  EXPECT_EQ(scores[302], -43.0f);
  auto types = g->get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 512u);
  EXPECT_EQ(std::vector<int64_t>(types.begin(), types.begin() + 4),
            (std::vector<int64_t>{2, 3, 3, 6}));

  ASSERT_EQ(g->tensors().size(), 47u);
  const TensorView* k = g->find_tensor("blk.0.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(k->dtype, DType::F32);
  EXPECT_EQ(k->nbytes, 8192u);
  const TensorView* emb = g->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(g->find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(g->find_tensor("blk.4.attn_norm.weight")->shape, (std::vector<int64_t>{64}));
  // gguf-py reports token_embd.weight's data at file offset 14208 (data section start 14208).
  MappedFile raw(path);
  EXPECT_EQ(std::memcmp(emb->data, raw.data() + 14208, 64), 0);
  uint64_t total = 0;
  for (const auto& t : g->tensors()) total += t.nbytes;
  EXPECT_LE(total, raw.size());
}

// The stories260K GGUF and its HF safetensors hold the same weights: token_embd.weight is
// model.embed_tokens.weight (no permutation for embeddings).
TEST(Gguf, RealStories260KMatchesSafetensorsEmbedding) {
  if (!lowbit::testing::shared_available()) GTEST_SKIP() << "../shared not available";
  auto g =
      GgufFile::open(lowbit::testing::shared_path("models/stories260K/gguf/stories260K-F32.gguf"));
  MappedFile st(lowbit::testing::shared_path("models/stories260K/hf/model.safetensors"));
  const TensorView* emb = g->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  // Locate the same 64 leading bytes in the safetensors data: proves the reader's offsets.
  bool found = false;
  for (uint64_t i = 0; i + emb->nbytes <= st.size() && !found; i += 4)
    found = std::memcmp(st.data() + i, emb->data, emb->nbytes) == 0;
  EXPECT_TRUE(found);
}

// Files written by llama.cpp's gguf-py (tools/gen_io_fixtures.py; also the fuzz seed corpus).
TEST(Gguf, FilesWrittenByGgufPy) {
  auto g = GgufFile::open(lowbit::testing::source_path("fuzz/corpus/gguf/every_value_type.gguf"));
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  EXPECT_EQ(g->type_of("t.u8"), GgufType::U8);
  EXPECT_EQ(g->get_int("t.u8"), 200);
  EXPECT_EQ(g->get_int("t.i8"), -5);
  EXPECT_EQ(g->get_int("t.u16"), 60000);
  EXPECT_EQ(g->get_int("t.i16"), -300);
  EXPECT_EQ(g->get_int("t.u32"), 4000000000);
  EXPECT_EQ(g->get_int("t.i32"), -7);
  EXPECT_EQ(g->get_float("t.f32"), 0.125);
  EXPECT_TRUE(g->get_bool("t.bool"));
  EXPECT_EQ(g->get_string("t.str"), "hello gguf");
  EXPECT_EQ(std::get<uint64_t>(g->metadata().at("t.u64")), (uint64_t(1) << 63) + 5);
  EXPECT_EQ(g->get_int("t.i64"), -(int64_t(1) << 40));
  EXPECT_EQ(g->type_of("t.f64"), GgufType::F64);
  EXPECT_EQ(g->get_float("t.f64"), 3.5);
  EXPECT_EQ(g->get_string_array("t.arr_str"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(g->get_int_array("t.arr_i32"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(g->get_float_array("t.arr_f32"), (std::vector<float>{0.5f, -1.5f}));
  ASSERT_EQ(g->tensors().size(), 1u);
  EXPECT_EQ(g->tensors()[0].shape, (std::vector<int64_t>{3, 5}));

  auto q = GgufFile::open(lowbit::testing::source_path("fuzz/corpus/gguf/quantized_types.gguf"));
  EXPECT_EQ(q->alignment(), 64u);
  EXPECT_EQ(q->find_tensor("q8")->dtype, DType::Q8_0);
  EXPECT_EQ(q->find_tensor("q8")->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q->find_tensor("q8")->nbytes, 68u);
  EXPECT_EQ(q->find_tensor("q4")->dtype, DType::Q4_0);
  EXPECT_EQ(q->find_tensor("q4")->shape, (std::vector<int64_t>{1, 64}));
  EXPECT_EQ(q->find_tensor("f16")->dtype, DType::F16);
  EXPECT_EQ(q->find_tensor("f16")->shape, (std::vector<int64_t>{4}));
}

GgufSpec typed_spec() {
  GgufSpec s;
  s.kvs.push_back(kv_u32("a.u32", 7));
  s.kvs.push_back(kv_str("a.str", "hello"));
  GgufKv f{"a.f32", 6, {}};
  float fv = 0.25f;
  put_bytes(f.value, &fv, 4);
  s.kvs.push_back(f);
  GgufKv b{"a.bool", 7, {1}};
  s.kvs.push_back(b);
  GgufKv big{"a.u64big", 10, {}};
  put_u64(big.value, ~uint64_t(0));
  s.kvs.push_back(big);
  GgufKv arr{"a.arr_i32", 9, {}};
  put_u32(arr.value, 5);
  put_u64(arr.value, 3);
  for (int32_t v : {-1, 0, 9}) put_bytes(arr.value, &v, 4);
  s.kvs.push_back(arr);
  GgufKv sarr{"a.arr_str", 9, {}};
  put_u32(sarr.value, 8);
  put_u64(sarr.value, 2);
  put_gstr(sarr.value, "x");
  put_gstr(sarr.value, "");
  s.kvs.push_back(sarr);
  return s;
}

TEST(Gguf, TypedGettersCheckTheStoredType) {
  ScratchDir dir("gguf_typed");
  const std::string path = dir.file("t.gguf");
  write_file(path, gguf_serialize(typed_spec()));
  auto g = GgufFile::open(path);
  EXPECT_EQ(g->get_int("a.u32"), 7);
  EXPECT_EQ(g->get_string("a.str"), "hello");
  EXPECT_EQ(g->get_float("a.f32"), 0.25);
  EXPECT_TRUE(g->get_bool("a.bool"));
  EXPECT_EQ(g->get_int_array("a.arr_i32"), (std::vector<int64_t>{-1, 0, 9}));
  EXPECT_EQ(g->get_string_array("a.arr_str"), (std::vector<std::string>{"x", ""}));
  EXPECT_EQ(g->type_of("a.arr_str"), GgufType::ARRAY);
  EXPECT_EQ(g->get_int_or("missing", 42), 42);
  EXPECT_EQ(g->get_string_or("missing", "d"), "d");
  EXPECT_EQ(g->get_float_or("missing", 1.5), 1.5);
  EXPECT_TRUE(g->get_bool_or("missing", true));
  EXPECT_EQ(g->tensors().size(), 0u);

  auto expect_err = [&](const std::function<void()>& f, const std::string& frag) {
    std::string msg = open_result(f);
    EXPECT_NE(msg.find(frag), std::string::npos) << "message: " << msg << "\nwanted: " << frag;
    EXPECT_EQ(msg.rfind(path, 0), 0u) << msg;  // starts with the path
  };
  expect_err([&] { g->get_string("a.u32"); }, "'a.u32': found type U32, expected STRING");
  expect_err([&] { g->get_int("a.str"); }, "'a.str': found type STRING, expected an integer");
  expect_err([&] { g->get_float("a.u32"); }, "found type U32, expected F32 or F64");
  expect_err([&] { g->get_bool("a.f32"); }, "found type F32, expected BOOL");
  expect_err([&] { g->get_int("a.u64big"); }, "does not fit in int64");
  expect_err([&] { g->get_string_array("a.arr_i32"); },
             "found type ARRAY of I32, expected ARRAY of STRING");
  expect_err([&] { g->get_float_array("a.str"); }, "found type STRING, expected ARRAY of F32");
  expect_err([&] { g->get_int_array("a.arr_str"); }, "ARRAY of STRING, expected ARRAY of an int");
  expect_err([&] { g->get_int("nope"); }, "metadata key 'nope' is missing");
  expect_err([&] { g->type_of("nope"); }, "metadata key 'nope' is missing");
  expect_err([&] { g->get_int_or("a.str", 1); }, "expected an integer");
}

TEST(Gguf, Version2AndMissingFile) {
  ScratchDir dir("gguf_v2");
  GgufSpec s = typed_spec();
  s.version = 2;
  write_file(dir.file("v2.gguf"), gguf_serialize(s));
  EXPECT_EQ(GgufFile::open(dir.file("v2.gguf"))->version(), 2u);
  std::string msg = open_result([&] { GgufFile::open(dir.file("absent.gguf")); });
  EXPECT_NE(msg.find("absent.gguf"), std::string::npos) << msg;
  write_file(dir.file("empty.gguf"), {});
  msg = open_result([&] { GgufFile::open(dir.file("empty.gguf")); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

}  // namespace
}  // namespace lowbit::io
