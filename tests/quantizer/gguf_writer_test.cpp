// GgufWriter round trips through the GgufFile reader: every metadata kind (integers of each
// width at their limits, floats, bools, strings, nested arrays), tensors of plain and block
// types with odd shapes, custom alignment, and the failure paths (bad values, bad shapes,
// a producer that throws or returns the wrong size never touches an existing output).
#include "io/gguf_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "io/gguf.h"

namespace lowbit::io {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("lowbit_gguf_writer_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(GgufWriter, RoundTripsEveryMetadataKind) {
  GgufWriter w;
  w.set("u8", GgufType::U8, uint64_t(255));
  w.set("i8", GgufType::I8, int64_t(-128));
  w.set("u16", GgufType::U16, uint64_t(65535));
  w.set("i16", GgufType::I16, int64_t(-32768));
  w.set_u32("u32", 0xFFFFFFFFu);
  w.set_i32("i32", INT32_MIN);
  w.set_u64("u64", UINT64_MAX);
  w.set("i64", GgufType::I64, int64_t(INT64_MIN));
  w.set_f32("f32", 0.1f);
  w.set("f64", GgufType::F64, 0.1);
  w.set_bool("t", true);
  w.set_bool("f", false);
  w.set_string("s", std::string("h\0llo\n", 6));
  w.set_string("empty", "");
  w.set_string_array("tokens", {"a", "", "<s>", "\xe2\x96\x81x"});
  w.set_f32_array("scores", {-1.5f, 0.0f, 3.25f});
  w.set_i32_array("types", {1, -2, 3});
  auto inner = std::make_shared<GgufArray>();
  inner->elem_type = GgufType::U16;
  inner->items = {uint64_t(1), uint64_t(65535)};
  auto outer = std::make_shared<GgufArray>();
  outer->elem_type = GgufType::ARRAY;
  outer->items = {inner, inner};
  w.set("nested", GgufType::ARRAY, outer);
  w.set_u32("replaced", 1);
  w.set_u32("replaced", 2);
  w.set_u32("removed", 7);
  w.remove("removed");
  const std::string path = temp_path("meta.gguf");
  w.write(path);

  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->type_of("u8"), GgufType::U8);
  EXPECT_EQ(f->get_int("u8"), 255);
  EXPECT_EQ(f->get_int("i8"), -128);
  EXPECT_EQ(f->type_of("u16"), GgufType::U16);
  EXPECT_EQ(f->get_int("u16"), 65535);
  EXPECT_EQ(f->get_int("i16"), -32768);
  EXPECT_EQ(f->get_int("u32"), 0xFFFFFFFFll);
  EXPECT_EQ(f->get_int("i32"), INT32_MIN);
  EXPECT_EQ(std::get<uint64_t>(f->metadata().at("u64")), UINT64_MAX);
  EXPECT_EQ(f->get_int("i64"), INT64_MIN);
  EXPECT_EQ(f->type_of("f32"), GgufType::F32);
  EXPECT_EQ(float(f->get_float("f32")), 0.1f);
  EXPECT_EQ(f->type_of("f64"), GgufType::F64);
  EXPECT_EQ(f->get_float("f64"), 0.1);
  EXPECT_TRUE(f->get_bool("t"));
  EXPECT_FALSE(f->get_bool("f"));
  EXPECT_EQ(f->get_string("s"), std::string("h\0llo\n", 6));
  EXPECT_EQ(f->get_string("empty"), "");
  EXPECT_EQ(f->get_string_array("tokens"),
            (std::vector<std::string>{"a", "", "<s>", "\xe2\x96\x81x"}));
  EXPECT_EQ(f->get_float_array("scores"), (std::vector<float>{-1.5f, 0.0f, 3.25f}));
  EXPECT_EQ(f->get_int_array("types"), (std::vector<int64_t>{1, -2, 3}));
  const auto& nested = *std::get<std::shared_ptr<GgufArray>>(f->metadata().at("nested"));
  ASSERT_EQ(nested.elem_type, GgufType::ARRAY);
  ASSERT_EQ(nested.items.size(), 2u);
  const auto& in0 = *std::get<std::shared_ptr<GgufArray>>(nested.items[1]);
  EXPECT_EQ(in0.elem_type, GgufType::U16);
  EXPECT_EQ(std::get<uint64_t>(in0.items[1]), 65535u);
  EXPECT_EQ(f->get_int("replaced"), 2);
  EXPECT_FALSE(f->has("removed"));
  EXPECT_TRUE(f->tensors().empty());
  std::filesystem::remove(path);
}

TEST(GgufWriter, RoundTripsTensorsAtEveryAlignment) {
  for (uint32_t alignment : {32u, 1u, 64u, 4096u}) {
    GgufWriter w(alignment);
    struct T {
      std::string name;
      DType dtype;
      std::vector<int64_t> shape;
    };
    const std::vector<T> specs = {
        {"a.weight", DType::F32, {3, 5}},      {"b", DType::F16, {7}},
        {"c.q4", DType::Q4_0, {3, 64}},        {"d.q6k", DType::Q6_K, {2, 1, 256}},
        {"e.bf16", DType::BF16, {1, 1, 1, 9}}, {"f.iq4xs", DType::IQ4_XS, {1, 512}}};
    std::vector<std::vector<uint8_t>> data;
    for (size_t i = 0; i < specs.size(); ++i) {
      uint64_t numel = 1;
      for (auto d : specs[i].shape) numel *= uint64_t(d);
      data.push_back(random_bytes(*dtype_bytes(specs[i].dtype, numel), uint32_t(i + 1)));
      w.add_tensor(specs[i].name, specs[i].dtype, specs[i].shape, data.back());
    }
    w.set_string("general.architecture", "llama");
    const std::string path = temp_path("tensors.gguf");
    w.write(path);
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->alignment(), alignment);
    ASSERT_EQ(f->tensors().size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorView& t = f->tensors()[i];
      EXPECT_EQ(t.name, specs[i].name);
      EXPECT_EQ(t.dtype, specs[i].dtype);
      EXPECT_EQ(t.shape, specs[i].shape);
      ASSERT_EQ(t.nbytes, data[i].size());
      EXPECT_EQ(std::vector<uint8_t>(t.data, t.data + t.nbytes), data[i]) << t.name;
      EXPECT_EQ(uintptr_t(t.data - f->tensors()[0].data) % alignment, 0u);
    }
    std::filesystem::remove(path);
  }
}

TEST(GgufWriter, CopyMetadataKeepsTypesAndDropsLayoutKeys) {
  GgufWriter a(64);
  a.set("n", GgufType::U16, uint64_t(9));
  a.set_u32("split.count", 1);
  a.set_string_array("tok", {"x", "y"});
  const std::string p1 = temp_path("copy_src.gguf");
  a.write(p1);
  auto src = GgufFile::open(p1);
  GgufWriter b;
  b.copy_metadata(*src);
  EXPECT_FALSE(b.has("general.alignment"));
  EXPECT_FALSE(b.has("split.count"));
  const std::string p2 = temp_path("copy_dst.gguf");
  b.write(p2);
  auto dst = GgufFile::open(p2);
  EXPECT_EQ(dst->type_of("n"), GgufType::U16);
  EXPECT_EQ(dst->get_int("n"), 9);
  EXPECT_EQ(dst->get_string_array("tok"), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(dst->alignment(), 32u);
  std::filesystem::remove(p1);
  std::filesystem::remove(p2);
}

TEST(GgufWriter, RejectsBadValuesAndShapes) {
  GgufWriter w;
  EXPECT_THROW(w.set("k", GgufType::U8, uint64_t(256)), Error);
  EXPECT_THROW(w.set("k", GgufType::I8, int64_t(128)), Error);
  EXPECT_THROW(w.set("k", GgufType::U32, int64_t(1)), Error);  // wrong alternative
  EXPECT_THROW(w.set("k", GgufType::F32, std::string("x")), Error);
  EXPECT_THROW(w.set("", GgufType::BOOL, true), Error);
  EXPECT_THROW(w.set("general.alignment", GgufType::U32, uint64_t(24)), Error);
  EXPECT_THROW(GgufWriter(0), Error);
  EXPECT_THROW(w.add_tensor("q", DType::Q4_K, {4, 100}, std::vector<uint8_t>{}), Error);
  EXPECT_THROW(w.add_tensor("", DType::F32, {4}, std::vector<uint8_t>(16)), Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'x'), DType::F32, {4}, std::vector<uint8_t>(16)),
               Error);
  EXPECT_THROW(w.add_tensor("z", DType::F32, {0, 4}, std::vector<uint8_t>{}), Error);
  EXPECT_THROW(w.add_tensor("z", DType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)), Error);
  w.add_tensor("ok", DType::F32, {4}, std::vector<uint8_t>(16));
  EXPECT_THROW(w.add_tensor("ok", DType::F32, {4}, std::vector<uint8_t>(16)), Error);
}

TEST(GgufWriter, FailureLeavesExistingOutputUntouched) {
  const std::string path = temp_path("keep.gguf");
  {
    std::ofstream f(path, std::ios::binary);
    f << "previous contents";
  }
  GgufWriter wrong_size;
  wrong_size.add_tensor("t", DType::F32, {2, 3}, std::vector<uint8_t>(20));  // needs 24
  try {
    wrong_size.write(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'t'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected 24"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_all(path), "previous contents");

  GgufWriter throws;
  throws.add_tensor("ok", DType::F32, {1}, std::vector<uint8_t>(4));
  throws.add_tensor("bad", DType::F32, {1},
                    GgufWriter::DataFn([]() -> std::vector<uint8_t> { fail("producer failed"); }));
  EXPECT_THROW(throws.write(path), Error);
  EXPECT_EQ(read_all(path), "previous contents");
  // No temp file is left behind.
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
    EXPECT_EQ(e.path().string().find(path + ".tmp"), std::string::npos) << e.path();

  EXPECT_THROW(GgufWriter().write("/nonexistent-dir/x.gguf"), Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace lowbit::io
