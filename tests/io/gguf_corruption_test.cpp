// GGUF corruption suite (RELIABILITY.md "Tests that show it"): each class breaks one rule of the
// format in a random valid base file, over many seeds; every file must be rejected with a
// lowbit::Error that starts with the path and contains the expected fragment. A random
// byte-flip / truncation loop must only ever give success or lowbit::Error.
#include <gtest/gtest.h>

#include <functional>

#include "io/gguf.h"
#include "io/io_test_util.h"

namespace lowbit::io {
namespace {

using namespace lowbit::io::testing;

constexpr int kSeedsPerClass = 200;
constexpr uint64_t kU64Max = ~uint64_t(0);
constexpr uint64_t kI64Max = uint64_t(INT64_MAX);

void patch_u64(Bytes& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = uint8_t(v >> (8 * i));
}
void patch_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

// Puts `kv` first so its fields sit at fixed offsets: key length at 24, key at 32, type at
// 32 + key size, value after that.
size_t put_first(GgufSpec& s, GgufKv kv) {
  size_t value_at = 24 + 8 + kv.key.size() + 4;
  s.kvs.insert(s.kvs.begin(), std::move(kv));
  return value_at;
}

size_t pick(Rng& rng, size_t n) { return size_t(rng() % n); }

struct Case {
  Bytes bytes;
  // When set, the file opens and this must throw instead (typed getter classes).
  std::function<void(const GgufFile&)> after_open;
};

struct CorruptionClass {
  const char* name;
  std::vector<std::string> fragments;  // the message must contain one of these
  std::function<Case(Rng&)> make;
};

RandomGguf base(Rng& rng) { return random_gguf(rng); }

// A base whose alignment is at least 8, so misaligned offsets exist.
RandomGguf aligned_base(Rng& rng) {
  for (;;) {
    RandomGguf r = random_gguf(rng);
    if (r.spec.alignment >= 8) return r;
  }
}

Case bytes_of(const GgufSpec& s) { return {gguf_serialize(s), nullptr}; }

GgufKv array_kv(const std::string& key, uint32_t elem, uint64_t count) {
  GgufKv kv{key, 9, {}};
  put_u32(kv.value, elem);
  put_u64(kv.value, count);
  return kv;
}

std::vector<CorruptionClass> classes() {
  std::vector<CorruptionClass> c;
  // ---- fixed header ----
  c.push_back({"bad_magic", {"bad magic"}, [](Rng& rng) {
                 auto r = base(rng);
                 do r.spec.magic = uint32_t(rng());
                 while (r.spec.magic == 0x46554747);
                 return bytes_of(r.spec);
               }});
  c.push_back({"version_1", {"version 1 is not supported"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.version = 1;
                 return bytes_of(r.spec);
               }});
  c.push_back({"unknown_version", {"unsupported GGUF version"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.version = rng() % 2 ? 0 : uint32_t(rand_in(rng, 4, 0xffffffffu));
                 return bytes_of(r.spec);
               }});
  c.push_back({"tensor_count_over_cap", {"tensor_count = ", "exceeds the cap"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.tensor_count = rand_in(rng, (1u << 20) + 1, kU64Max);
                 return bytes_of(r.spec);
               }});
  c.push_back({"tensor_count_past_end", {"cannot fit"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.tensor_count = rand_in(rng, 200000, 1u << 20);
                 return bytes_of(r.spec);
               }});
  c.push_back({"kv_count_over_cap", {"metadata_kv_count = "}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.kv_count = rand_in(rng, (1u << 20) + 1, kU64Max);
                 return bytes_of(r.spec);
               }});
  c.push_back({"kv_count_past_end", {"cannot fit"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.kv_count = rand_in(rng, 200000, 1u << 20);
                 return bytes_of(r.spec);
               }});
  // ---- metadata ----
  c.push_back({"key_length_over_cap", {"metadata key at offset 24: string length"}, [](Rng& rng) {
                 auto r = base(rng);
                 put_first(r.spec, kv_u32("x", 1));
                 Bytes b = gguf_serialize(r.spec);
                 patch_u64(b, 24, rand_in(rng, 65536, kU64Max));
                 return Case{b, nullptr};
               }});
  c.push_back({"key_length_past_end", {"past the end of the file"}, [](Rng& rng) {
                 auto r = base(rng);
                 put_first(r.spec, kv_u32("x", 1));
                 Bytes b = gguf_serialize(r.spec);
                 patch_u64(b, 24, rand_in(rng, b.size() - 31, 65535));
                 return Case{b, nullptr};
               }});
  c.push_back(
      {"string_length_over_cap", {"string value at offset", "exceeds the cap"}, [](Rng& rng) {
         auto r = base(rng);
         size_t at = put_first(r.spec, kv_str("s", "abc"));
         Bytes b = gguf_serialize(r.spec);
         patch_u64(b, at, rand_in(rng, (uint64_t(1) << 30) + 1, kU64Max));
         return Case{b, nullptr};
       }});
  c.push_back({"string_length_past_end", {"past the end of the file"}, [](Rng& rng) {
                 auto r = base(rng);
                 size_t at = put_first(r.spec, kv_str("s", "abc"));
                 Bytes b = gguf_serialize(r.spec);
                 patch_u64(b, at, rand_in(rng, b.size(), uint64_t(1) << 30));
                 return Case{b, nullptr};
               }});
  c.push_back({"unknown_value_type", {"unknown value type"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv = kv_u32("k.bad", 5);
                 kv.type = uint32_t(rand_in(rng, 13, 0xffffffffu));
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  c.push_back({"unknown_array_element_type", {"unknown array element type"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv = array_kv("k.arr", uint32_t(rand_in(rng, 13, 0xffffffffu)), 1);
                 put_u32(kv.value, 0);
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  c.push_back({"array_count_over_cap", {"exceeds the cap"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv = array_kv("k.arr", uint32_t(rand_in(rng, 0, 12)),
                                      rand_in(rng, (uint64_t(1) << 31) + 1, kU64Max));
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  c.push_back({"array_count_past_end", {"is past the end of the file"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv = array_kv("k.arr", uint32_t(rand_in(rng, 0, 12)),
                                      rand_in(rng, 1 << 20, 1u << 31));
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  c.push_back({"nested_array_too_deep", {"nested deeper than"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv{"k.deep", 9, {}};
                 int depth = int(rand_in(rng, 5, 40));
                 for (int i = 0; i < depth; ++i) {
                   put_u32(kv.value, 9);
                   put_u64(kv.value, 1);
                 }
                 put_u32(kv.value, 0);
                 put_u64(kv.value, 0);
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  c.push_back({"duplicate_key", {"duplicate metadata key"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufKv dup = r.spec.kvs[pick(rng, r.spec.kvs.size())];
                 if (rng() % 2) dup = kv_str(dup.key, "other");  // same key, other type
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), dup);
                 return bytes_of(r.spec);
               }});
  c.push_back({"empty_key", {"is empty"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1),
                                   kv_u32("", 3));
                 return bytes_of(r.spec);
               }});
  c.push_back({"bool_not_0_or_1", {"expected 0 or 1"}, [](Rng& rng) {
                 auto r = base(rng);
                 uint8_t v = uint8_t(rand_in(rng, 2, 255));
                 GgufKv kv{"k.bool", 7, {v}};
                 if (rng() % 2) {  // inside an array of bools
                   kv = array_kv("k.bools", 7, 3);
                   kv.value.push_back(1);
                   kv.value.push_back(v);
                   kv.value.push_back(0);
                 }
                 r.spec.kvs.insert(r.spec.kvs.begin() + pick(rng, r.spec.kvs.size() + 1), kv);
                 return bytes_of(r.spec);
               }});
  auto set_alignment = [](GgufSpec& s, GgufKv kv) {
    for (auto& e : s.kvs)
      if (e.key == "general.alignment") e = kv;
    bool found = false;
    for (auto& e : s.kvs) found |= e.key == "general.alignment";
    if (!found) s.kvs.push_back(kv);
  };
  c.push_back({"alignment_zero",
               {"general.alignment = 0, expected a non-zero power of two"},
               [set_alignment](Rng& rng) {
                 auto r = base(rng);
                 set_alignment(r.spec, kv_u32("general.alignment", 0));
                 return bytes_of(r.spec);
               }});
  c.push_back({"alignment_not_power_of_two",
               {"expected a non-zero power of two"},
               [set_alignment](Rng& rng) {
                 auto r = base(rng);
                 uint32_t a;
                 do a = uint32_t(rand_in(rng, 3, 0xffffffffu));
                 while ((a & (a - 1)) == 0);
                 set_alignment(r.spec, kv_u32("general.alignment", a));
                 return bytes_of(r.spec);
               }});
  c.push_back({"alignment_wrong_type",
               {"'general.alignment': found type", "expected U32"},
               [set_alignment](Rng& rng) {
                 auto r = base(rng);
                 GgufKv kv{"general.alignment", 0, {}};
                 switch (rng() % 4) {
                   case 0:
                     kv.type = 10;
                     put_u64(kv.value, 32);
                     break;  // U64
                   case 1:
                     kv.type = 5;
                     put_u32(kv.value, 32);
                     break;  // I32
                   case 2:
                     kv.type = 2;
                     kv.value = {32, 0};
                     break;  // U16
                   default:
                     kv = kv_str("general.alignment", "32");
                 }
                 set_alignment(r.spec, kv);
                 return bytes_of(r.spec);
               }});
  // ---- tensor infos ----
  c.push_back(
      {"tensor_name_too_long", {"tensor name at offset", "exceeds the cap of 63"}, [](Rng& rng) {
         auto r = base(rng);
         auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
         t.name = rand_name(rng, rand_in(rng, 64, 300));
         return bytes_of(r.spec);
       }});
  c.push_back({"tensor_name_length_huge", {"tensor name at offset"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufRegions reg;
                 Bytes b = gguf_serialize(r.spec, &reg);
                 patch_u64(b, reg.tensor_info_begin, rand_in(rng, 64, kU64Max));
                 return Case{b, nullptr};
               }});
  c.push_back({"duplicate_tensor_name", {"duplicate tensor name"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& s = r.spec;
                 if (s.tensors.size() < 2) {
                   s.tensors.push_back(s.tensors[0]);
                   gguf_layout(s);
                 }
                 size_t i = pick(rng, s.tensors.size()), j = pick(rng, s.tensors.size() - 1);
                 if (j >= i) ++j;
                 s.tensors[j].name = s.tensors[i].name;
                 return bytes_of(s);
               }});
  c.push_back({"empty_tensor_name", {"has an empty name"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].name = "";
                 return bytes_of(r.spec);
               }});
  c.push_back({"n_dims_zero", {"n_dims = 0, expected 1..4"}, [](Rng& rng) {
                 auto r = base(rng);
                 r.spec.tensors[pick(rng, r.spec.tensors.size())].ne.clear();
                 return bytes_of(r.spec);
               }});
  c.push_back({"n_dims_too_many", {"expected 1..4"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 while (t.ne.size() < 5 || rng() % 3) t.ne.push_back(1);
                 return bytes_of(r.spec);
               }});
  c.push_back({"ne_zero", {"] = 0, expected 1.."}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.ne[pick(rng, t.ne.size())] = 0;
                 return bytes_of(r.spec);
               }});
  c.push_back({"ne_above_int64", {"expected 1..9223372036854775807"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.ne[pick(rng, t.ne.size())] = rand_in(rng, kI64Max + 1, kU64Max);
                 return bytes_of(r.spec);
               }});
  c.push_back({"ne_product_overflow", {"element count overflows"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.type = 0;
                 t.ne = {rand_in(rng, uint64_t(1) << 32, kI64Max),
                         rand_in(rng, uint64_t(1) << 32, kI64Max)};
                 if (rng() % 2) t.ne.insert(t.ne.begin(), rand_in(rng, 1, 4));
                 return bytes_of(r.spec);
               }});
  c.push_back({"byte_size_overflow", {"byte size overflows"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 static const uint32_t kWide[] = {0, 26, 27, 28};  // F32, I32, I64, F64
                 t.type = kWide[rng() % 4];
                 uint64_t elem = t.type == 0 || t.type == 26 ? 4 : 8;
                 t.ne = {rand_in(rng, kU64Max / elem + 1, kI64Max)};
                 return bytes_of(r.spec);
               }});
  c.push_back({"unknown_ggml_type", {"unknown ggml type id"}, [](Rng& rng) {
                 auto r = base(rng);
                 static const uint32_t kHoles[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 1000};
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.type = rng() % 2 ? kHoles[rng() % 11] : uint32_t(rand_in(rng, 40, 0xffffffffu));
                 return bytes_of(r.spec);
               }});
  c.push_back({"ne0_not_block_multiple", {"is not a multiple of the"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 static const uint32_t kBlocky[] = {2, 8, 12, 14, 20, 39};
                 t.type = kBlocky[rng() % 6];
                 uint32_t block = traits(*dtype_from_gguf_id(t.type)).block_elems;
                 t.ne[0] = block * rand_in(rng, 0, 3) + rand_in(rng, 1, block - 1);
                 return bytes_of(r.spec);
               }});
  c.push_back({"misaligned_offset", {"is not a multiple of the alignment"}, [](Rng& rng) {
                 auto r = aligned_base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 t.offset += rand_in(rng, 1, r.spec.alignment - 1);
                 return bytes_of(r.spec);
               }});
  c.push_back({"offset_past_end", {"past its end"}, [](Rng& rng) {
                 auto r = base(rng);
                 Bytes b = gguf_serialize(r.spec);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 uint64_t a = r.spec.alignment;
                 t.offset = (rand_in(rng, b.size(), uint64_t(1) << 50) + a - 1) / a * a;
                 return bytes_of(r.spec);
               }});
  c.push_back({"offset_plus_size_wraps", {"past its end"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& t = r.spec.tensors[pick(rng, r.spec.tensors.size())];
                 uint64_t a = r.spec.alignment;
                 t.offset = (kU64Max - rand_in(rng, 0, t.data.size() / 2)) / a * a;
                 return bytes_of(r.spec);
               }});
  c.push_back({"overlapping_tensors", {"overlap"}, [](Rng& rng) {
                 auto r = base(rng);
                 auto& s = r.spec;
                 if (s.tensors.size() < 2) {
                   s.tensors.push_back(s.tensors[0]);
                   s.tensors.back().name += "_2";
                   gguf_layout(s);
                 }
                 size_t i = pick(rng, s.tensors.size()), j = pick(rng, s.tensors.size() - 1);
                 if (j >= i) ++j;
                 // j starts inside i: at i's start or at an aligned point before i's end.
                 uint64_t a = s.alignment, last = (s.tensors[i].data.size() - 1) / a;
                 s.tensors[j].offset = s.tensors[i].offset + a * rand_in(rng, 0, last);
                 Bytes b = gguf_serialize(s);
                 b.resize(b.size() + 4096, 0);  // keep every range inside the file
                 return Case{b, nullptr};
               }});
  // ---- truncation at every region ----
  const std::vector<std::string> kTrunc = {"truncated", "past the end", "cannot fit"};
  c.push_back({"truncated_fixed_header", {"truncated at offset"}, [](Rng& rng) {
                 auto r = base(rng);
                 Bytes b = gguf_serialize(r.spec);
                 b.resize(rand_in(rng, 0, 23));
                 return Case{b, nullptr};
               }});
  c.push_back({"truncated_in_metadata", kTrunc, [](Rng& rng) {
                 auto r = base(rng);
                 GgufRegions reg;
                 Bytes b = gguf_serialize(r.spec, &reg);
                 b.resize(rand_in(rng, reg.kv_begin, reg.tensor_info_begin - 1));
                 return Case{b, nullptr};
               }});
  c.push_back({"truncated_in_tensor_infos", kTrunc, [](Rng& rng) {
                 auto r = base(rng);
                 GgufRegions reg;
                 Bytes b = gguf_serialize(r.spec, &reg);
                 b.resize(rand_in(rng, reg.tensor_info_begin, reg.header_end - 1));
                 return Case{b, nullptr};
               }});
  c.push_back({"truncated_in_padding", {"starts past the end of the file"}, [](Rng& rng) {
                 for (;;) {
                   auto r = base(rng);
                   GgufRegions reg;
                   Bytes b = gguf_serialize(r.spec, &reg);
                   if (reg.data_begin == reg.header_end) continue;
                   b.resize(rand_in(rng, reg.header_end, reg.data_begin - 1));
                   return Case{b, nullptr};
                 }
               }});
  c.push_back({"truncated_in_tensor_data", {"past its end"}, [](Rng& rng) {
                 auto r = base(rng);
                 GgufRegions reg;
                 Bytes b = gguf_serialize(r.spec, &reg);
                 b.resize(rand_in(rng, reg.data_begin, reg.end - 1));
                 return Case{b, nullptr};
               }});
  // ---- typed getters on a valid file ----
  c.push_back({"getter_wrong_type", {"found type", "expected"}, [](Rng& rng) {
                 auto r = base(rng);
                 const auto& kv = r.spec.kvs[pick(rng, r.spec.kvs.size())];
                 std::string key = kv.key;
                 uint32_t t = kv.type;
                 return Case{gguf_serialize(r.spec), [key, t, p = rng()](const GgufFile& g) {
                               // Call a getter whose accepted types exclude the stored type.
                               bool is_int = t <= 5 || t == 10 || t == 11;
                               bool is_float = t == 6 || t == 12;
                               std::vector<std::function<void()>> wrong;
                               if (t != 8) wrong.push_back([&] { g.get_string(key); });
                               if (!is_int) wrong.push_back([&] { g.get_int(key); });
                               if (!is_float) wrong.push_back([&] { g.get_float(key); });
                               if (t != 7) wrong.push_back([&] { g.get_bool(key); });
                               if (t != 9) {
                                 wrong.push_back([&] { g.get_string_array(key); });
                                 wrong.push_back([&] { g.get_int_array(key); });
                                 wrong.push_back([&] { g.get_float_array(key); });
                               }
                               wrong[p % wrong.size()]();
                             }};
               }});
  return c;
}

TEST(GgufCorruption, EveryClassRejectedWithExpectedMessage) {
  ScratchDir dir("gguf_corrupt");
  const std::string path = dir.file("c.gguf");
  auto all = classes();
  EXPECT_GE(all.size(), 30u);
  for (size_t ci = 0; ci < all.size(); ++ci) {
    const auto& cls = all[ci];
    int rejected = 0;
    for (int seed = 0; seed < kSeedsPerClass; ++seed) {
      Rng rng(uint64_t(seed) * 1000003 + ci);
      Case cs = cls.make(rng);
      write_file(path, cs.bytes);
      bool ok = false;
      std::string msg = open_result(
          [&] {
            auto g = GgufFile::open(path);
            if (cs.after_open) cs.after_open(*g);
          },
          &ok);
      if (ok) {
        ADD_FAILURE() << cls.name << " seed " << seed << ": accepted";
        continue;
      }
      bool matched = false;
      for (const auto& f : cls.fragments) matched |= msg.find(f) != std::string::npos;
      if (matched && msg.rfind(path, 0) == 0) {
        ++rejected;
      } else {
        ADD_FAILURE() << cls.name << " seed " << seed << ": unexpected message: " << msg;
      }
    }
    EXPECT_EQ(rejected, kSeedsPerClass) << cls.name;
  }
}

// Random byte flips, u64 field overwrites and truncations of small valid files: the reader must
// only ever succeed or throw lowbit::Error (ASan/UBSan runs of this suite check for the rest).
TEST(GgufCorruption, RandomMutationsNeverCrash) {
  ScratchDir dir("gguf_mutate");
  const std::string path = dir.file("m.gguf");
  int accepted = 0, rejected = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Rng rng(seed + 77);
    Bytes b = gguf_serialize(random_gguf(rng).spec);
    int n_mut = int(rand_in(rng, 1, 4));
    for (int m = 0; m < n_mut && !b.empty(); ++m) {
      switch (rng() % 4) {
        case 0:
          b[pick(rng, b.size())] ^= uint8_t(1u << (rng() % 8));
          break;
        case 1:
          b[pick(rng, b.size())] = uint8_t(rng());
          break;
        case 2:
          if (b.size() >= 8) patch_u64(b, pick(rng, b.size() - 7), rng() >> (rng() % 64));
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
          auto g = GgufFile::open(path);
          uint64_t sum = 0, total = 0;
          for (const auto& t : g->tensors()) {
            total += t.nbytes;
            for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];  // must be mapped
          }
          EXPECT_LE(total, b.size());
          for (const auto& kv : g->metadata()) {
            const std::string& key = kv.first;
            for (const auto& get : std::vector<std::function<void()>>{
                     [&] { g->get_int(key); }, [&] { g->get_float(key); },
                     [&] { g->get_string(key); }, [&] { g->get_bool(key); },
                     [&] { g->get_string_array(key); }, [&] { g->get_int_array(key); },
                     [&] { g->get_float_array(key); }})
              open_result(get);
          }
          (void)sum;
        },
        &ok);
    (ok ? accepted : rejected)++;
  }
  // Both outcomes must occur, or the mutations are not exercising the reader.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 500);
  std::printf("gguf mutations: %d accepted, %d rejected\n", accepted, rejected);
}

}  // namespace
}  // namespace lowbit::io
