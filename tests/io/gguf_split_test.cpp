// Split GGUF models (NAME-0000i-of-0000N.gguf): opening part 1 opens every part; tensors of
// all parts are found with their data; missing / inconsistent parts are clear errors.
#include <gtest/gtest.h>

#include <cstring>

#include "io/gguf.h"
#include "io_test_util.h"

namespace lowbit::io {
namespace {

using namespace testing;

GgufKv kv_u16(const std::string& k, uint16_t v) {
  GgufKv kv{k, 2, {}};
  kv.value = {uint8_t(v), uint8_t(v >> 8)};
  return kv;
}
GgufKv kv_i32(const std::string& k, int32_t v) {
  GgufKv kv{k, 5, {}};
  put_u32(kv.value, uint32_t(v));
  return kv;
}

// A 1-D F32 tensor named `name` with `n` values base, base + 1, ...
GgufTensorSpec f32_tensor(const std::string& name, int n, float base) {
  GgufTensorSpec t{name, {uint64_t(n)}, 0, 0, {}};
  for (int i = 0; i < n; ++i) {
    float v = base + float(i);
    put_bytes(t.data, &v, 4);
  }
  return t;
}

struct PartSpec {
  int no;         // split.no (0-based); -1 leaves the key out
  int count;      // split.count
  int n_tensors;  // split.tensors.count in part 0
  std::vector<GgufTensorSpec> tensors;
};

void write_part(const std::string& path, const PartSpec& p) {
  GgufSpec s;
  if (p.no == 0) s.kvs.push_back(kv_str("general.architecture", "llama"));
  if (p.no >= 0) s.kvs.push_back(kv_u16("split.no", uint16_t(p.no)));
  s.kvs.push_back(kv_u16("split.count", uint16_t(p.count)));
  s.kvs.push_back(kv_i32("split.tensors.count", p.n_tensors));
  s.tensors = p.tensors;
  gguf_layout(s);
  write_file(path, gguf_serialize(s));
}

// Three parts: a (part 1), b + c (part 2), d (part 3).
void write_three_parts(const ScratchDir& dir, const std::string& stem) {
  write_part(dir.file(stem + "-00001-of-00003.gguf"), {0, 3, 4, {f32_tensor("a", 3, 1)}});
  write_part(dir.file(stem + "-00002-of-00003.gguf"),
             {1, 3, 4, {f32_tensor("b", 5, 10), f32_tensor("c", 8, 20)}});
  write_part(dir.file(stem + "-00003-of-00003.gguf"), {2, 3, 4, {f32_tensor("d", 2, 30)}});
}

TEST(GgufSplit, OpensAllPartsFromTheFirst) {
  ScratchDir dir("split_ok");
  write_three_parts(dir, "m");
  auto f = GgufFile::open(dir.file("m-00001-of-00003.gguf"));
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->part_paths().size(), 3u);
  const std::pair<const char*, float> want[] = {{"a", 1}, {"b", 10}, {"c", 20}, {"d", 30}};
  for (auto [name, base] : want) {
    const TensorView* t = f->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    for (int64_t i = 0; i < t->numel(); ++i) {
      float v;
      std::memcpy(&v, t->data + 4 * i, 4);
      EXPECT_EQ(v, base + float(i)) << name << "[" << i << "]";
    }
  }
}

TEST(GgufSplit, SinglePartSplitFileIsPlain) {
  ScratchDir dir("split_one");
  write_part(dir.file("m-00001-of-00001.gguf"), {0, 1, 1, {f32_tensor("a", 3, 1)}});
  EXPECT_EQ(GgufFile::open(dir.file("m-00001-of-00001.gguf"))->tensors().size(), 1u);
}

TEST(GgufSplit, MissingPartIsNamed) {
  ScratchDir dir("split_missing");
  write_three_parts(dir, "m");
  std::filesystem::remove(dir.file("m-00002-of-00003.gguf"));
  const std::string err = open_result([&] { GgufFile::open(dir.file("m-00001-of-00003.gguf")); });
  EXPECT_NE(err.find("part 2 of 3"), std::string::npos) << err;
  EXPECT_NE(err.find("m-00002-of-00003.gguf"), std::string::npos) << err;
}

TEST(GgufSplit, OpeningALaterPartPointsToTheFirst) {
  ScratchDir dir("split_later");
  write_three_parts(dir, "m");
  const std::string err = open_result([&] { GgufFile::open(dir.file("m-00002-of-00003.gguf")); });
  EXPECT_NE(err.find("open the first part"), std::string::npos) << err;
  EXPECT_NE(err.find("m-00001-of-00003.gguf"), std::string::npos) << err;
}

TEST(GgufSplit, InconsistentPartsAreErrors) {
  struct Case {
    const char* what;
    std::function<void(const ScratchDir&)> write;
    const char* expect;
  };
  const Case cases[] = {
      {"part 2 says split.no 2",
       [](const ScratchDir& d) {
         write_three_parts(d, "m");
         write_part(d.file("m-00002-of-00003.gguf"), {2, 3, 4, {f32_tensor("b", 5, 10)}});
       },
       "m-00002-of-00003.gguf: split.count = 3, split.no = 2; expected 3 and 1"},
      {"part 3 says 4 parts",
       [](const ScratchDir& d) {
         write_three_parts(d, "m");
         write_part(d.file("m-00003-of-00003.gguf"), {2, 4, 4, {f32_tensor("d", 2, 30)}});
       },
       "split.count = 4"},
      {"tensor in two parts",
       [](const ScratchDir& d) {
         write_three_parts(d, "m");
         write_part(d.file("m-00003-of-00003.gguf"), {2, 3, 4, {f32_tensor("a", 2, 30)}});
       },
       "tensor 'a' is also in an earlier part"},
      {"tensor count",
       [](const ScratchDir& d) {
         write_three_parts(d, "m");
         write_part(d.file("m-00001-of-00003.gguf"), {0, 3, 5, {f32_tensor("a", 3, 1)}});
       },
       "split.tensors.count is 5 but the 3 parts hold 4 tensors"},
      {"file name count differs",
       [](const ScratchDir& d) {
         write_part(d.file("m-00001-of-00002.gguf"), {0, 3, 1, {f32_tensor("a", 3, 1)}});
       },
       "split.count is 3 but the file name says 2 parts"},
      {"only the first part",
       [](const ScratchDir& d) {
         write_part(d.file("m-00001-of-00003.gguf"), {0, 3, 1, {f32_tensor("a", 3, 1)}});
       },
       "part 2 of 3 of this split model is missing"},
  };
  for (const Case& c : cases) {
    ScratchDir dir("split_bad");
    c.write(dir);
    const std::string err = open_result([&] { GgufFile::open(dir.file("m-00001-of-00003.gguf")); });
    if (std::string(c.what) == "file name count differs")
      EXPECT_NE(
          open_result([&] { GgufFile::open(dir.file("m-00001-of-00002.gguf")); }).find(c.expect),
          std::string::npos)
          << c.what;
    else
      EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": " << err;
  }
  ScratchDir dir("split_name");
  write_part(dir.file("model.gguf"), {0, 3, 1, {f32_tensor("a", 3, 1)}});
  const std::string err = open_result([&] { GgufFile::open(dir.file("model.gguf")); });
  EXPECT_NE(err.find("does not end in -NNNNN-of-NNNNN.gguf"), std::string::npos) << err;
}

}  // namespace
}  // namespace lowbit::io
