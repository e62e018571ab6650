// Helpers for the io tests: a GGUF writer and a safetensors writer that can also produce broken
// files (every field is explicit, so a test can set any count, length, type or offset), random
// valid files for the corruption suites, and a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "io/gguf.h"

namespace lowbit::io::testing {

using Bytes = std::vector<uint8_t>;
using Rng = std::mt19937_64;

inline void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
inline void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
inline void put_bytes(Bytes& b, const void* p, size_t n) {
  b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
}
inline void put_gstr(Bytes& b, const std::string& s) {
  put_u64(b, s.size());
  put_bytes(b, s.data(), s.size());
}

inline uint64_t rand_in(Rng& rng, uint64_t lo, uint64_t hi) {  // inclusive
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}
inline Bytes rand_bytes(Rng& rng, size_t n) {
  Bytes b(n);
  for (auto& x : b) x = uint8_t(rng());
  return b;
}
inline std::string rand_name(Rng& rng, size_t len) {
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
  std::string s;
  for (size_t i = 0; i < len; ++i) s += kChars[rng() % (sizeof(kChars) - 1)];
  return s;
}

// ---- GGUF ----

// One metadata entry: key plus the encoded value type and value (so tests can write any bytes).
struct GgufKv {
  std::string key;
  uint32_t type;
  Bytes value;
};

inline GgufKv kv_u32(const std::string& k, uint32_t v) {
  GgufKv kv{k, 4, {}};
  put_u32(kv.value, v);
  return kv;
}
inline GgufKv kv_str(const std::string& k, const std::string& v) {
  GgufKv kv{k, 8, {}};
  put_gstr(kv.value, v);
  return kv;
}

struct GgufTensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order (ne[0] innermost)
  uint32_t type;             // ggml type id
  uint64_t offset;           // relative to the data section
  Bytes data;                // written at data_start + offset
};

struct GgufSpec {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count, kv_count;  // overrides of the real counts
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorSpec> tensors;
  uint64_t alignment = 32;  // used for padding (set general.alignment in kvs to match)
};

// Lays tensors out in order, each offset rounded up to the alignment (llama.cpp's layout).
inline void gguf_layout(GgufSpec& s) {
  uint64_t off = 0;
  for (auto& t : s.tensors) {
    off = (off + s.alignment - 1) / s.alignment * s.alignment;
    t.offset = off;
    off += t.data.size();
  }
}

// Byte offsets of the regions of a serialized GGUF, for targeted truncation.
struct GgufRegions {
  size_t kv_begin = 24, tensor_info_begin = 0, header_end = 0, data_begin = 0, end = 0;
};

inline Bytes gguf_serialize(const GgufSpec& s, GgufRegions* regions = nullptr) {
  Bytes b;
  put_u32(b, s.magic);
  put_u32(b, s.version);
  put_u64(b, s.tensor_count.value_or(s.tensors.size()));
  put_u64(b, s.kv_count.value_or(s.kvs.size()));
  for (const auto& kv : s.kvs) {
    put_gstr(b, kv.key);
    put_u32(b, kv.type);
    put_bytes(b, kv.value.data(), kv.value.size());
  }
  size_t ti = b.size();
  for (const auto& t : s.tensors) {
    put_gstr(b, t.name);
    put_u32(b, uint32_t(t.ne.size()));
    for (uint64_t n : t.ne) put_u64(b, n);
    put_u32(b, t.type);
    put_u64(b, t.offset);
  }
  size_t header_end = b.size();
  size_t data_begin = (header_end + s.alignment - 1) / s.alignment * s.alignment;
  b.resize(data_begin, 0);
  for (const auto& t : s.tensors) {
    if (t.offset > (1u << 24)) continue;  // deliberately absurd offsets: nothing to write
    size_t at = data_begin + t.offset;
    if (b.size() < at + t.data.size()) b.resize(at + t.data.size(), 0);
    if (!t.data.empty()) std::memcpy(b.data() + at, t.data.data(), t.data.size());
  }
  if (regions) *regions = {24, ti, header_end, data_begin, b.size()};
  return b;
}

// ---- random valid GGUF files ----

// Appends a random encoded value of `type` to `enc` and returns what the reader must give back.
inline GgufValue rand_gguf_value(Rng& rng, uint32_t type, int depth, Bytes& enc) {
  switch (type) {
    case 0: {
      uint8_t v = uint8_t(rng());
      put_bytes(enc, &v, 1);
      return uint64_t(v);
    }
    case 1: {
      int8_t v = int8_t(rng());
      put_bytes(enc, &v, 1);
      return int64_t(v);
    }
    case 2: {
      uint16_t v = uint16_t(rng());
      put_bytes(enc, &v, 2);
      return uint64_t(v);
    }
    case 3: {
      int16_t v = int16_t(rng());
      put_bytes(enc, &v, 2);
      return int64_t(v);
    }
    case 4: {
      uint32_t v = uint32_t(rng());
      put_bytes(enc, &v, 4);
      return uint64_t(v);
    }
    case 5: {
      int32_t v = int32_t(rng());
      put_bytes(enc, &v, 4);
      return int64_t(v);
    }
    case 6: {
      float v = std::uniform_real_distribution<float>(-1e6f, 1e6f)(rng);
      put_bytes(enc, &v, 4);
      return double(v);
    }
    case 7: {
      uint8_t v = uint8_t(rng() & 1);
      put_bytes(enc, &v, 1);
      return v == 1;
    }
    case 8: {
      std::string s = rand_name(rng, rand_in(rng, 0, 12));
      put_gstr(enc, s);
      return s;
    }
    case 9: {
      uint32_t elem = uint32_t(rand_in(rng, 0, depth < 1 ? 12 : 8));
      if (elem == 9 && depth >= 1) elem = 4;
      uint64_t n = rand_in(rng, 0, 5);
      put_u32(enc, elem);
      put_u64(enc, n);
      auto arr = std::make_shared<GgufArray>();
      arr->elem_type = GgufType(elem);
      for (uint64_t i = 0; i < n; ++i)
        arr->items.push_back(rand_gguf_value(rng, elem, depth + 1, enc));
      return arr;
    }
    case 10: {
      uint64_t v = rng();
      put_bytes(enc, &v, 8);
      return v;
    }
    case 11: {
      int64_t v = int64_t(rng());
      put_bytes(enc, &v, 8);
      return v;
    }
    default: {
      double v = std::uniform_real_distribution<double>(-1e9, 1e9)(rng);
      put_bytes(enc, &v, 8);
      return v;
    }
  }
}

struct RandomGguf {
  GgufSpec spec;
  std::vector<std::pair<std::string, GgufValue>> expected_kv;  // (key, value), file order
};

// A random valid GGUF: 1..6 metadata entries of random types (arrays and nested arrays
// included), 1..4 tensors of random ggml types and shapes, random alignment and data.
inline RandomGguf random_gguf(Rng& rng) {
  static const uint32_t kTypes[] = {0, 1, 2, 8, 12, 14, 24, 26, 28, 30, 39, 20};
  RandomGguf r;
  GgufSpec& s = r.spec;
  s.version = rng() % 4 == 0 ? 2 : 3;
  static const uint64_t kAligns[] = {1, 8, 16, 32, 64};
  s.alignment = kAligns[rng() % 5];
  if (s.alignment != 32 || rng() % 2)
    s.kvs.push_back(kv_u32("general.alignment", uint32_t(s.alignment)));
  size_t nkv = rand_in(rng, 1, 6);
  for (size_t i = 0; i < nkv; ++i) {
    GgufKv kv{"k" + std::to_string(i) + "." + rand_name(rng, rand_in(rng, 1, 10)),
              uint32_t(rand_in(rng, 0, 12)),
              {}};
    GgufValue v = rand_gguf_value(rng, kv.type, 0, kv.value);
    r.expected_kv.emplace_back(kv.key, v);
    s.kvs.push_back(std::move(kv));
  }
  // Shuffle so general.alignment is not always first.
  std::shuffle(s.kvs.begin(), s.kvs.end(), rng);
  size_t nt = rand_in(rng, 1, 4);
  for (size_t i = 0; i < nt; ++i) {
    GgufTensorSpec t;
    t.name = "t" + std::to_string(i) + "." + rand_name(rng, rand_in(rng, 0, 20));
    t.type = kTypes[rng() % (sizeof(kTypes) / sizeof(kTypes[0]))];
    DType dt = *dtype_from_gguf_id(t.type);
    uint32_t block = traits(dt).block_elems;
    size_t nd = rand_in(rng, 1, 4);
    t.ne.push_back(block == 1 ? rand_in(rng, 1, 9) : block * rand_in(rng, 1, 2));
    for (size_t d = 1; d < nd; ++d) t.ne.push_back(rand_in(rng, 1, 3));
    uint64_t numel = 1;
    for (uint64_t n : t.ne) numel *= n;
    t.data = rand_bytes(rng, *dtype_bytes(dt, numel));
    s.tensors.push_back(std::move(t));
  }
  gguf_layout(s);
  return r;
}

// ---- safetensors ----

struct StTensorSpec {
  std::string name;
  std::string dtype_json;    // e.g. "\"F32\""
  std::string shape_json;    // e.g. "[2,3]"
  std::string offsets_json;  // e.g. "[0,24]"
  Bytes data;
  uint64_t begin = 0;  // where `data` is written in the data section
};

struct StSpec {
  std::string metadata_json;  // "" for none, else e.g. {"format":"pt"}
  std::vector<StTensorSpec> tensors;
  std::optional<uint64_t> header_len;  // override of the 8-byte length
  std::optional<std::string> header;   // override of the whole header text
  size_t pad_to = 8;                   // header padded with spaces to a multiple of this
  size_t trailing = 0;                 // extra bytes after the data
};

inline std::string st_header(const StSpec& s) {
  std::string h = "{";
  bool first = true;
  if (!s.metadata_json.empty()) {
    h += "\"__metadata__\":" + s.metadata_json;
    first = false;
  }
  for (const auto& t : s.tensors) {
    if (!first) h += ",";
    first = false;
    h += "\"" + t.name + "\":{\"dtype\":" + t.dtype_json + ",\"shape\":" + t.shape_json +
         ",\"data_offsets\":" + t.offsets_json + "}";
  }
  return h + "}";
}

inline Bytes st_serialize(const StSpec& s) {
  std::string h = s.header.value_or(st_header(s));
  while (s.pad_to > 1 && h.size() % s.pad_to != 0) h += ' ';
  Bytes b;
  put_u64(b, s.header_len.value_or(h.size()));
  put_bytes(b, h.data(), h.size());
  size_t data_begin = b.size();
  for (const auto& t : s.tensors) {
    size_t at = data_begin + t.begin;
    if (b.size() < at + t.data.size()) b.resize(at + t.data.size(), 0);
    if (!t.data.empty()) std::memcpy(b.data() + at, t.data.data(), t.data.size());
  }
  b.resize(b.size() + s.trailing, 0xAB);
  return b;
}

// ---- random valid safetensors files ----

inline const std::vector<std::string>& st_dtype_names() {
  static const std::vector<std::string> k = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2",
                                             "I64", "I32", "I16", "I8",   "U8",      "BOOL"};
  return k;
}

inline std::string json_list(const std::vector<uint64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// A random valid safetensors file: 1..5 tensors of random dtypes and shapes (rank 0..3,
// zero-sized ones included; tensor 0 is never empty), data laid out in a random order that
// differs from the header order, optional __metadata__.
struct RandomSt {
  StSpec spec;
  std::vector<std::vector<int64_t>> shapes;  // per spec.tensors entry
  std::vector<std::string> dtypes;
};

inline void st_set_offsets(StTensorSpec& t) {
  t.offsets_json = json_list({t.begin, t.begin + t.data.size()});
}

inline RandomSt random_st(Rng& rng) {
  RandomSt r;
  size_t n = rand_in(rng, 1, 5);
  for (size_t i = 0; i < n; ++i) {
    const std::string& dt = st_dtype_names()[rng() % st_dtype_names().size()];
    std::vector<uint64_t> shape(rand_in(rng, i == 0 ? 1 : 0, 3));
    uint64_t numel = 1;
    for (auto& d : shape) {
      d = rand_in(rng, i == 0 ? 1 : (rng() % 8 == 0 ? 0 : 1), 7);
      numel *= d;
    }
    StTensorSpec t;
    t.name = "t" + std::to_string(i) + "." + rand_name(rng, rand_in(rng, 0, 16));
    t.dtype_json = "\"" + dt + "\"";
    t.shape_json = json_list(shape);
    t.data = rand_bytes(rng, *dtype_bytes(*dtype_from_safetensors_name(dt), numel));
    r.spec.tensors.push_back(std::move(t));
    r.shapes.emplace_back(shape.begin(), shape.end());
    r.dtypes.push_back(dt);
  }
  // Data order: a random permutation of the header order.
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  uint64_t off = 0;
  for (size_t i : order) {
    auto& t = r.spec.tensors[i];
    t.begin = off;
    off += t.data.size();
    st_set_offsets(t);
  }
  if (rng() % 2) {
    r.spec.metadata_json = "{\"format\":\"pt\"";
    for (size_t i = 0, m = rand_in(rng, 0, 3); i < m; ++i)
      r.spec.metadata_json += ",\"m" + std::to_string(i) + "\":\"" + rand_name(rng, 5) + "\"";
    r.spec.metadata_json += "}";
  }
  r.spec.pad_to = rng() % 2 ? 8 : 1;
  return r;
}

// ---- files ----

class ScratchDir {
 public:
  // Prefers /dev/shm: the suites write thousands of small files and truncating a file on a
  // disk-backed /tmp costs milliseconds each.
  explicit ScratchDir(const std::string& tag) {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path();
    if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0)
      base = "/dev/shm";
    path_ = base / ("lowbit_io_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  ASSERT_TRUE(out.good()) << path;
}
inline void write_text(const std::string& path, const std::string& s) {
  write_file(path, Bytes(s.begin(), s.end()));
}

// Runs `open` and returns "" on success, the lowbit::Error message on failure, and fails the
// test on any other exception.
inline std::string open_result(const std::function<void()>& open, bool* ok = nullptr) {
  try {
    open();
    if (ok) *ok = true;
    return "";
  } catch (const lowbit::Error& e) {
    if (ok) *ok = false;
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-lowbit exception: " << e.what();
  } catch (...) {
    ADD_FAILURE() << "unknown exception type";
  }
  if (ok) *ok = false;
  return "<bad exception>";
}

}  // namespace lowbit::io::testing
