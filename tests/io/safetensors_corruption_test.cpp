// safetensors corruption suite: each class breaks one rule (FORMATS.md §10, RELIABILITY.md rules
// 4-6) in a random valid file or checkpoint directory, over many seeds; every case must be a
// lowbit::Error containing the expected fragment. A random mutation loop must only ever give
// success or lowbit::Error.
#include <gtest/gtest.h>

#include <functional>

#include "io/io_test_util.h"
#include "io/safetensors.h"

namespace lowbit::io {
namespace {

using namespace lowbit::io::testing;

constexpr int kSeedsPerClass = 200;

size_t pick(Rng& rng, size_t n) { return size_t(rng() % n); }

struct StClass {
  const char* name;
  std::vector<std::string> fragments;
  std::function<Bytes(Rng&)> make;
};

// Index of a tensor holding at least one byte (tensor 0 always does).
size_t nonempty(Rng& rng, const RandomSt& r) {
  for (;;) {
    size_t i = pick(rng, r.spec.tensors.size());
    if (!r.spec.tensors[i].data.empty()) return i;
  }
}

std::vector<StClass> file_classes() {
  std::vector<StClass> c;
  c.push_back({"file_too_small", {"too small for the 8-byte header length"}, [](Rng& rng) {
                 Bytes b = st_serialize(random_st(rng).spec);
                 b.resize(pick(rng, 8));
                 return b;
               }});
  c.push_back({"header_length_over_cap", {"exceeds the cap of 100000000 bytes"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 r.spec.header_len = rand_in(rng, 100'000'001, ~uint64_t(0));
                 return st_serialize(r.spec);
               }});
  c.push_back({"header_length_past_end", {"is past the end of the file"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 Bytes b = st_serialize(r.spec);
                 r.spec.header_len = rand_in(rng, b.size() - 7, 100'000'000);
                 return st_serialize(r.spec);
               }});
  c.push_back({"header_length_short", {"not valid JSON"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 r.spec.pad_to = 1;
                 r.spec.header_len = rand_in(rng, 1, st_header(r.spec).size() - 1);
                 return st_serialize(r.spec);
               }});
  c.push_back({"header_garbage", {"not valid JSON"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 Bytes g = rand_bytes(rng, rand_in(rng, 1, 64));
                 r.spec.header = "{" + std::string(g.begin(), g.end());
                 if (rng() % 2) r.spec.header = "{\"a\": {\"dtype\": \"F32\",";  // cut off
                 return st_serialize(r.spec);
               }});
  c.push_back({"header_not_object", {"does not start with '{'"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kTexts[] = {"[]", " {}", "\"x\"", "123", "null", "\n{}"};
                 r.spec.header = kTexts[rng() % 6];
                 return st_serialize(r.spec);
               }});
  c.push_back({"invalid_utf8_in_header", {"not valid JSON"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 static const char* kBad[] = {"\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"};
                 t.name += kBad[rng() % 4];
                 return st_serialize(r.spec);
               }});
  c.push_back({"entry_not_object", {"entry is a", "expected an object"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kVals[] = {"1", "[0,4]", "\"F32\"", "null", "true"};
                 std::string h = st_header(r.spec);
                 h.insert(1, "\"bad.entry\":" + std::string(kVals[rng() % 5]) + ",");
                 r.spec.header = h;
                 return st_serialize(r.spec);
               }});
  c.push_back({"duplicate_tensor_name", {"duplicate key"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& s = r.spec.tensors;
                 if (s.size() < 2) {
                   StTensorSpec t = s[0];
                   t.name += "_b";
                   t.begin = s[0].data.size();
                   st_set_offsets(t);
                   s.push_back(t);
                 }
                 size_t i = pick(rng, s.size()), j = pick(rng, s.size() - 1);
                 if (j >= i) ++j;
                 s[j].name = s[i].name;
                 return st_serialize(r.spec);
               }});
  c.push_back({"duplicate_field", {"duplicate key 'dtype'", "duplicate key 'shape'"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 if (rng() % 2)
                   t.dtype_json += ",\"dtype\":" + t.dtype_json;
                 else
                   t.shape_json += ",\"shape\":" + t.shape_json;
                 return st_serialize(r.spec);
               }});
  c.push_back({"unknown_dtype", {"unknown or unsupported dtype"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kNames[] = {"F4",      "U16",  "U32",  "U64",        "C64",
                                                "F8_E8M0", "f32",  "",     "F32 ",       "Q4_0",
                                                "F6_E2M3", "I128", "bf16", "F8_E4M3FNUZ"};
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].dtype_json =
                     "\"" + std::string(kNames[rng() % 14]) + "\"";
                 return st_serialize(r.spec);
               }});
  c.push_back({"dtype_not_string", {"dtype is a"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kVals[] = {"1", "null", "[\"F32\"]", "{}"};
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].dtype_json = kVals[rng() % 4];
                 return st_serialize(r.spec);
               }});
  c.push_back({"missing_field", {"missing field"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 std::string h = st_header(r.spec);
                 static const char* kFields[] = {"\"dtype\":", "\"shape\":", "\"data_offsets\":"};
                 std::string f = kFields[rng() % 3];
                 size_t at = h.find("\"" + t.name + "\":{");
                 size_t fpos = h.find(f, at);
                 h.replace(fpos, f.size(), "\"other\":");
                 r.spec.header = h;
                 return st_serialize(r.spec);
               }});
  c.push_back({"shape_bad_dimension", {"expected a non-negative integer"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kDims[] = {
                     "-1",   "2.5", "\"4\"", "null", "-9223372036854775808", "9223372036854775808",
                     "1e30", "[2]", "true"};
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.shape_json = "[" + std::string(kDims[rng() % 9]) + "]";
                 if (rng() % 2) t.shape_json = "[3," + t.shape_json.substr(1);
                 return st_serialize(r.spec);
               }});
  c.push_back({"shape_not_array", {"shape is a"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kVals[] = {"4", "\"[4]\"", "null", "{\"0\":4}"};
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].shape_json = kVals[rng() % 4];
                 return st_serialize(r.spec);
               }});
  c.push_back({"shape_product_overflow", {"element count overflows"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 uint64_t a = rand_in(rng, uint64_t(1) << 32, uint64_t(INT64_MAX));
                 uint64_t b = rand_in(rng, uint64_t(1) << 32, uint64_t(INT64_MAX));
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].shape_json = json_list({a, b});
                 return st_serialize(r.spec);
               }});
  c.push_back({"byte_size_overflow", {"byte size overflows"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.dtype_json = rng() % 2 ? "\"F64\"" : "\"I64\"";
                 t.shape_json = json_list({rand_in(rng, uint64_t(1) << 61, uint64_t(INT64_MAX))});
                 return st_serialize(r.spec);
               }});
  c.push_back({"dtype_shape_mismatch", {"needs"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 size_t i = nonempty(rng, r);
                 auto& t = r.spec.tensors[i];
                 std::vector<uint64_t> shape(r.shapes[i].begin(), r.shapes[i].end());
                 switch (shape.empty() ? 1 : rng() % 3) {  // scalars: add a dimension
                   case 0:
                     shape[pick(rng, shape.size())] += rand_in(rng, 1, 3);
                     break;
                   case 1:
                     shape.push_back(rand_in(rng, 2, 5));
                     break;
                   default:
                     t.dtype_json =  // a dtype of another element size
                         traits(*dtype_from_safetensors_name(r.dtypes[i])).block_bytes == 1
                             ? "\"F64\""
                             : "\"U8\"";
                 }
                 t.shape_json = json_list(shape);
                 return st_serialize(r.spec);
               }});
  c.push_back({"offsets_begin_after_end", {"has begin > end"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[nonempty(rng, r)];
                 t.offsets_json = json_list({t.begin + t.data.size(), t.begin});
                 return st_serialize(r.spec);
               }});
  c.push_back({"offsets_past_end", {"past the end of the data section"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 uint64_t b = rand_in(rng, 1 << 16, uint64_t(1) << 62);
                 t.offsets_json = json_list({b, b + t.data.size()});
                 return st_serialize(r.spec);
               }});
  c.push_back(
      {"offsets_not_unsigned", {"expected two non-negative integers"}, [](Rng& rng) {
         auto r = random_st(rng);
         static const char* kVals[] = {
             "-8", "1.5", "\"0\"", "null", "18446744073709551616", "1e19", "-9223372036854775808",
             "[0]"};
         auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
         std::string v = kVals[rng() % 8];
         t.offsets_json = rng() % 2 ? "[" + v + ",8]" : "[0," + v + "]";
         return st_serialize(r.spec);
       }});
  c.push_back({"offsets_wrong_arity", {"expected [begin, end]"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kVals[] = {"[]", "[0]", "[0,0,0]", "{}", "8", "\"0,8\""};
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].offsets_json = kVals[rng() % 6];
                 return st_serialize(r.spec);
               }});
  c.push_back({"overlapping_ranges", {"overlap"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 // A second name for the bytes of a non-empty tensor.
                 StTensorSpec t = r.spec.tensors[nonempty(rng, r)];
                 t.name = "alias." + rand_name(rng, 4);
                 r.spec.tensors.insert(r.spec.tensors.begin() + pick(rng, r.spec.tensors.size()),
                                       t);
                 return st_serialize(r.spec);
               }});
  c.push_back({"hole_in_data", {"hole in the data section"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 // Shift the tensors starting at or after a non-empty tensor's begin by k bytes.
                 uint64_t cut = r.spec.tensors[nonempty(rng, r)].begin, k = rand_in(rng, 1, 64);
                 for (auto& t : r.spec.tensors)
                   if (t.begin >= cut) {
                     t.begin += k;
                     st_set_offsets(t);
                   }
                 return st_serialize(r.spec);
               }});
  c.push_back({"trailing_bytes", {"trailing bytes after the last tensor"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 r.spec.trailing = rand_in(rng, 1, 100);
                 return st_serialize(r.spec);
               }});
  c.push_back({"truncated_data", {"past the end of the data section"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 Bytes b = st_serialize(r.spec);
                 uint64_t total = 0;
                 for (const auto& t : r.spec.tensors) total += t.data.size();
                 b.resize(b.size() - rand_in(rng, 1, total));
                 return b;
               }});
  c.push_back({"metadata_not_string_map", {"__metadata__"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 static const char* kVals[] = {
                     "{\"format\":1}", "[]", "\"pt\"", "{\"a\":\"b\",\"c\":{\"d\":\"e\"}}", "null",
                     "{\"x\":[\"y\"]}"};
                 r.spec.metadata_json = kVals[rng() % 6];
                 return st_serialize(r.spec);
               }});
  c.push_back({"deep_nesting", {"nested deeper than"}, [](Rng& rng) {
                 auto r = random_st(rng);
                 int depth = int(rand_in(rng, 8, 100000));
                 std::string deep = std::string(depth, '[') + std::string(depth, ']');
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.dtype_json += ",\"extra\":" + deep;
                 return st_serialize(r.spec);
               }});
  return c;
}

void check_rejected(const StClass& cls, int seed, const std::string& msg, bool ok,
                    const std::string& path, int& rejected) {
  if (ok) {
    ADD_FAILURE() << cls.name << " seed " << seed << ": accepted";
    return;
  }
  bool matched = false;
  for (const auto& f : cls.fragments) matched |= msg.find(f) != std::string::npos;
  if (matched && msg.rfind(path, 0) == 0)
    ++rejected;
  else
    ADD_FAILURE() << cls.name << " seed " << seed << ": unexpected message: " << msg;
}

TEST(SafetensorsCorruption, EveryFileClassRejectedWithExpectedMessage) {
  ScratchDir dir("st_corrupt");
  const std::string path = dir.file("c.safetensors");
  auto all = file_classes();
  for (size_t ci = 0; ci < all.size(); ++ci) {
    int rejected = 0;
    for (int seed = 0; seed < kSeedsPerClass; ++seed) {
      Rng rng(uint64_t(seed) * 7919 + ci);
      write_file(path, all[ci].make(rng));
      bool ok = false;
      std::string msg = open_result([&] { SafetensorsFile::open(path); }, &ok);
      check_rejected(all[ci], seed, msg, ok, path, rejected);
    }
    EXPECT_EQ(rejected, kSeedsPerClass) << all[ci].name;
  }
}

// ---- checkpoint directories ----

struct DirClass {
  const char* name;
  std::vector<std::string> fragments;
  // Fills `dir` (empty) with a broken checkpoint.
  std::function<void(Rng&, const std::string& dir)> make;
};

// Two valid shards a.safetensors and b.safetensors; returns their weight_map entries.
std::vector<std::pair<std::string, std::string>> two_shards(Rng& rng, const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> wm;
  for (const char* shard : {"a.safetensors", "b.safetensors"}) {
    auto r = random_st(rng);
    for (auto& t : r.spec.tensors) {
      t.name = std::string(shard).substr(0, 1) + "." + t.name;
      wm.emplace_back(t.name, shard);
    }
    write_file(dir + "/" + shard, st_serialize(r.spec));
  }
  std::shuffle(wm.begin(), wm.end(), rng);
  return wm;
}

void write_index(const std::string& dir,
                 const std::vector<std::pair<std::string, std::string>>& wm) {
  std::string s = "{\"metadata\":{},\"weight_map\":{";
  for (size_t i = 0; i < wm.size(); ++i)
    s += (i ? "," : "") + ("\"" + wm[i].first + "\":\"" + wm[i].second + "\"");
  write_text(dir + "/model.safetensors.index.json", s + "}}");
}

std::vector<DirClass> dir_classes() {
  std::vector<DirClass> c;
  c.push_back({"shard_path_escapes_dir", {"expected a plain file name"}, [](Rng& rng, auto& d) {
                 auto wm = two_shards(rng, d);
                 static const char* kBad[] = {"../a.safetensors",
                                              "..",
                                              "/etc/passwd",
                                              "sub/a.safetensors",
                                              "./a.safetensors",
                                              "..\\\\a.safetensors",
                                              "",
                                              "."};
                 wm[pick(rng, wm.size())].second = kBad[rng() % 8];
                 write_index(d, wm);
               }});
  c.push_back({"missing_shard", {"does not exist in"}, [](Rng& rng, auto& d) {
                 auto wm = two_shards(rng, d);
                 wm[pick(rng, wm.size())].second =
                     "model-0000" + std::to_string(rng() % 9) + "-of-00009.safetensors";
                 write_index(d, wm);
               }});
  c.push_back(
      {"tensor_not_in_its_shard", {"but that shard does not contain it"}, [](Rng& rng, auto& d) {
         auto wm = two_shards(rng, d);
         if (rng() % 2)
           wm.emplace_back("extra." + rand_name(rng, 5),
                           rng() % 2 ? "a.safetensors" : "b.safetensors");
         else  // listed under the other shard
           for (auto& e : wm)
             if (e.second == "a.safetensors") {
               e.second = "b.safetensors";
               break;
             }
         write_index(d, wm);
       }});
  c.push_back({"duplicate_tensor_across_shards",
               {"duplicate tensors across shards"},
               [](Rng& rng, auto& d) {
                 auto r = random_st(rng);
                 write_file(d + "/a.safetensors", st_serialize(r.spec));
                 write_file(d + "/b.safetensors", st_serialize(r.spec));
                 std::vector<std::pair<std::string, std::string>> wm;
                 for (const auto& t : r.spec.tensors)
                   wm.emplace_back(t.name, rng() % 2 ? "a.safetensors" : "b.safetensors");
                 wm[0].second = "a.safetensors";
                 wm.emplace_back("zz.marker", "b.safetensors");  // b must be opened
                 // b needs the marker tensor too, so rewrite b with it added.
                 StTensorSpec m{"zz.marker", "\"U8\"", "[1]", "", {7}, 0};
                 uint64_t total = 0;
                 for (const auto& t : r.spec.tensors) total += t.data.size();
                 m.begin = total;
                 st_set_offsets(m);
                 r.spec.tensors.push_back(m);
                 write_file(d + "/b.safetensors", st_serialize(r.spec));
                 write_index(d, wm);
               }});
  c.push_back({"duplicate_key_in_weight_map", {"duplicate key"}, [](Rng& rng, auto& d) {
                 auto wm = two_shards(rng, d);
                 wm.push_back(wm[pick(rng, wm.size())]);
                 write_index(d, wm);
               }});
  c.push_back({"index_not_json", {"not valid JSON"}, [](Rng& rng, auto& d) {
                 two_shards(rng, d);
                 Bytes g = rand_bytes(rng, rand_in(rng, 0, 40));
                 write_text(d + "/model.safetensors.index.json",
                            "{\"weight_map\": {" + std::string(g.begin(), g.end()));
               }});
  c.push_back({"index_without_weight_map", {"weight_map"}, [](Rng& rng, auto& d) {
                 two_shards(rng, d);
                 static const char* kTexts[] = {"{}", "{\"weight_map\":[]}", "[]",
                                                "{\"weight_map\":{}}",
                                                "{\"weight_map\":{\"a\":1}}"};
                 write_text(d + "/model.safetensors.index.json", kTexts[rng() % 5]);
               }});
  c.push_back(
      {"pickle_only", {"convert to safetensors"}, [](Rng& rng, auto& d) {
         static const char* kNames[] = {"pytorch_model.bin", "pytorch_model.bin.index.json"};
         write_file(d + "/" + kNames[rng() % 2], rand_bytes(rng, 64));
         write_text(d + "/config.json", "{}");
       }});
  c.push_back({"no_weights",
               {"no model.safetensors or model.safetensors.index.json"},
               [](Rng& rng, auto& d) {
                 if (rng() % 2) write_text(d + "/config.json", "{}");
               }});
  c.push_back({"broken_shard",
               {"past the end", "not valid JSON", "too small", "trailing"},
               [](Rng& rng, auto& d) {
                 auto wm = two_shards(rng, d);
                 std::string victim = rng() % 2 ? "/a.safetensors" : "/b.safetensors";
                 Bytes b = st_serialize(random_st(rng).spec);
                 b.resize(pick(rng, b.size()));
                 write_file(d + victim, b);
                 write_index(d, wm);
               }});
  return c;
}

TEST(SafetensorsCorruption, EveryDirectoryClassRejectedWithExpectedMessage) {
  auto all = dir_classes();
  for (size_t ci = 0; ci < all.size(); ++ci) {
    int rejected = 0;
    for (int seed = 0; seed < kSeedsPerClass; ++seed) {
      ScratchDir dir("st_dir");
      Rng rng(uint64_t(seed) * 104729 + ci);
      std::string d = dir.path().string();
      all[ci].make(rng, d);
      bool ok = false;
      std::string msg = open_result([&] { SafetensorsCheckpoint::open_dir(d); }, &ok);
      StClass as_file{all[ci].name, all[ci].fragments, nullptr};
      check_rejected(as_file, seed, msg, ok, d, rejected);
    }
    EXPECT_EQ(rejected, kSeedsPerClass) << all[ci].name;
  }
}

TEST(SafetensorsCorruption, RandomMutationsNeverCrash) {
  ScratchDir dir("st_mutate");
  const std::string path = dir.file("m.safetensors");
  int accepted = 0, rejected = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Rng rng(seed + 555);
    Bytes b = st_serialize(random_st(rng).spec);
    for (int m = 0, n = int(rand_in(rng, 1, 3)); m < n && !b.empty(); ++m) {
      switch (rng() % 4) {
        case 0:
          b[pick(rng, b.size())] ^= uint8_t(1u << (rng() % 8));
          break;
        case 1:
          b[8 + pick(rng, std::min<size_t>(b.size() - 8, 200))] = uint8_t(rng());
          break;
        case 2:
          b[pick(rng, std::min<size_t>(b.size(), 8))] = uint8_t(rng());
          break;
        default:
          b.resize(pick(rng, b.size()));
          break;
      }
    }
    write_file(path, b);
    bool ok = false;
    open_result(
        [&] {
          auto f = SafetensorsFile::open(path);
          uint64_t total = 0, sum = 0;
          for (const auto& t : f->tensors()) {
            total += t.nbytes;
            for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
          }
          EXPECT_LE(total, b.size());
          (void)sum;
        },
        &ok);
    (ok ? accepted : rejected)++;
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 500);
  std::printf("safetensors mutations: %d accepted, %d rejected\n", accepted, rejected);
}

}  // namespace
}  // namespace lowbit::io
