// GGUF v3 writer: header, metadata, tensor infos, aligned data; temp file + rename.
#include "io/gguf_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/checked_math.h"
#include "core/error.h"

namespace lowbit::io {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxTensorName = 63;

const char* kind_name(GgufType t) {
  static const char* kNames[] = {"U8",   "I8",     "U16",   "I16", "U32", "I32", "F32",
                                 "BOOL", "STRING", "ARRAY", "U64", "I64", "F64"};
  return uint32_t(t) < 13 ? kNames[uint32_t(t)] : "UNKNOWN";
}

// Checks that `v` holds the alternative the reader produces for `type` and fits its width.
void check_value(const std::string& key, GgufType type, const GgufValue& v, int depth) {
  auto bad = [&](const char* what) {
    fail("gguf writer: metadata key '{}': {} value {}", key, kind_name(type), what);
  };
  auto check_unsigned = [&](uint64_t max) {
    const auto* u = std::get_if<uint64_t>(&v);
    if (!u) bad("must be stored as uint64_t");
    if (*u > max) bad("does not fit its width");
  };
  auto check_signed = [&](int64_t lo, int64_t hi) {
    const auto* s = std::get_if<int64_t>(&v);
    if (!s) bad("must be stored as int64_t");
    if (*s < lo || *s > hi) bad("does not fit its width");
  };
  switch (type) {
    case GgufType::U8:
      return check_unsigned(0xFF);
    case GgufType::U16:
      return check_unsigned(0xFFFF);
    case GgufType::U32:
      return check_unsigned(0xFFFFFFFFu);
    case GgufType::U64:
      return check_unsigned(UINT64_MAX);
    case GgufType::I8:
      return check_signed(INT8_MIN, INT8_MAX);
    case GgufType::I16:
      return check_signed(INT16_MIN, INT16_MAX);
    case GgufType::I32:
      return check_signed(INT32_MIN, INT32_MAX);
    case GgufType::I64:
      return check_signed(INT64_MIN, INT64_MAX);
    case GgufType::F32:
    case GgufType::F64:
      if (!std::holds_alternative<double>(v)) bad("must be stored as double");
      return;
    case GgufType::BOOL:
      if (!std::holds_alternative<bool>(v)) bad("must be stored as bool");
      return;
    case GgufType::STRING:
      if (!std::holds_alternative<std::string>(v)) bad("must be stored as std::string");
      return;
    case GgufType::ARRAY: {
      const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v);
      if (!a || !*a) bad("must be a non-null GgufArray");
      if (depth >= 4) bad("nests arrays deeper than 4 levels");
      for (const GgufValue& item : (*a)->items) check_value(key, (*a)->elem_type, item, depth + 1);
      return;
    }
  }
  fail("gguf writer: metadata key '{}': unknown value type {}", key, uint32_t(type));
}

// Buffered little-endian output to a FILE*, with errors naming the path.
class Out {
 public:
  Out(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void bytes(const void* p, size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, f_) != n)
      fail("{}: write failed after {} bytes: {}", path_, pos_, std::strerror(errno));
    pos_ += n;
  }
  template <typename T>
  void pod(T v) {
    bytes(&v, sizeof v);
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t kZeros[256] = {};
    uint64_t n = (alignment - pos_ % alignment) % alignment;
    while (n > 0) {
      const size_t k = size_t(std::min<uint64_t>(n, sizeof kZeros));
      bytes(kZeros, k);
      n -= k;
    }
  }
  uint64_t pos() const { return pos_; }

 private:
  std::FILE* f_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

void write_value(Out& out, GgufType type, const GgufValue& v) {
  switch (type) {
    case GgufType::U8:
      return out.pod(uint8_t(std::get<uint64_t>(v)));
    case GgufType::U16:
      return out.pod(uint16_t(std::get<uint64_t>(v)));
    case GgufType::U32:
      return out.pod(uint32_t(std::get<uint64_t>(v)));
    case GgufType::U64:
      return out.pod(std::get<uint64_t>(v));
    case GgufType::I8:
      return out.pod(int8_t(std::get<int64_t>(v)));
    case GgufType::I16:
      return out.pod(int16_t(std::get<int64_t>(v)));
    case GgufType::I32:
      return out.pod(int32_t(std::get<int64_t>(v)));
    case GgufType::I64:
      return out.pod(std::get<int64_t>(v));
    case GgufType::F32:
      return out.pod(float(std::get<double>(v)));
    case GgufType::F64:
      return out.pod(std::get<double>(v));
    case GgufType::BOOL:
      return out.pod(uint8_t(std::get<bool>(v) ? 1 : 0));
    case GgufType::STRING:
      return out.str(std::get<std::string>(v));
    case GgufType::ARRAY: {
      const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v);
      out.pod(uint32_t(a.elem_type));
      out.pod<uint64_t>(a.items.size());
      for (const GgufValue& item : a.items) write_value(out, a.elem_type, item);
      return;
    }
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail("gguf writer: alignment {} is not a non-zero power of two", alignment);
  if (alignment != 32) set_u32("general.alignment", alignment);
}

void GgufWriter::set(const std::string& key, GgufType type, GgufValue value) {
  if (key.empty()) fail("gguf writer: empty metadata key");
  if (key.size() > 65535) fail("gguf writer: metadata key of {} bytes is too long", key.size());
  check_value(key, type, value, 0);
  if (key == "general.alignment") {
    const auto* a = std::get_if<uint64_t>(&value);
    if (type != GgufType::U32 || !a || *a == 0 || (*a & (*a - 1)) != 0)
      fail("gguf writer: general.alignment must be a U32 power of two");
    alignment_ = uint32_t(*a);
  }
  auto it = index_.find(key);
  if (it != index_.end()) {
    kv_[it->second].type = type;
    kv_[it->second].value = std::move(value);
    return;
  }
  index_.emplace(key, kv_.size());
  kv_.push_back({key, type, std::move(value)});
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  set(key, GgufType::STRING, v);
}
void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  set(key, GgufType::U32, uint64_t(v));
}
void GgufWriter::set_i32(const std::string& key, int32_t v) { set(key, GgufType::I32, int64_t(v)); }
void GgufWriter::set_u64(const std::string& key, uint64_t v) { set(key, GgufType::U64, v); }
void GgufWriter::set_f32(const std::string& key, float v) { set(key, GgufType::F32, double(v)); }
void GgufWriter::set_bool(const std::string& key, bool v) { set(key, GgufType::BOOL, v); }

void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  auto a = std::make_shared<GgufArray>();
  a->elem_type = GgufType::STRING;
  a->items.assign(v.begin(), v.end());
  set(key, GgufType::ARRAY, a);
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  auto a = std::make_shared<GgufArray>();
  a->elem_type = GgufType::F32;
  for (float x : v) a->items.emplace_back(double(x));
  set(key, GgufType::ARRAY, a);
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  auto a = std::make_shared<GgufArray>();
  a->elem_type = GgufType::I32;
  for (int32_t x : v) a->items.emplace_back(int64_t(x));
  set(key, GgufType::ARRAY, a);
}

void GgufWriter::remove(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  kv_.erase(kv_.begin() + long(it->second));
  index_.clear();
  for (size_t i = 0; i < kv_.size(); ++i) index_[kv_[i].key] = i;
}

void GgufWriter::copy_metadata(const GgufFile& src) {
  for (const auto& [key, value] : src.metadata()) {
    if (key == "general.alignment" || key.rfind("split.", 0) == 0) continue;
    set(key, src.type_of(key), value);
  }
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            DataFn data) {
  if (name.empty() || name.size() > kMaxTensorName)
    fail("gguf writer: tensor name '{}' has {} bytes, expected 1..{}", name, name.size(),
         kMaxTensorName);
  if (tensor_index_.count(name)) fail("gguf writer: duplicate tensor name '{}'", name);
  const DTypeTraits& tr = traits(dtype);
  if (tr.gguf_id < 0)
    fail("gguf writer: tensor '{}': dtype {} cannot be stored in GGUF", name, tr.name);
  if (shape.empty() || shape.size() > 4)
    fail("gguf writer: tensor '{}': {} dimensions, expected 1..4", name, shape.size());
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      fail("gguf writer: tensor '{}': shape {} has a non-positive dimension", name,
           shape_string(shape));
    auto p = checked_mul(numel, uint64_t(d));
    if (!p || *p > uint64_t(INT64_MAX))
      fail("gguf writer: tensor '{}': element count overflows", name);
    numel = *p;
  }
  if (uint64_t(shape.back()) % tr.block_elems != 0)
    fail(
        "gguf writer: tensor '{}': innermost dimension {} is not a multiple of the {} block size "
        "{}",
        name, shape.back(), tr.name, tr.block_elems);
  auto bytes = dtype_bytes(dtype, numel);
  if (!bytes) fail("gguf writer: tensor '{}': byte size overflows", name);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({name, dtype, shape, *bytes, std::move(data)});
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            std::vector<uint8_t> bytes) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add_tensor(name, dtype, shape, [shared] { return *shared; });
}

void GgufWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot create {}: {}", path, tmp, std::strerror(errno));
  try {
    Out out(f, tmp);
    out.pod(kGgufMagic);
    out.pod(kVersion);
    out.pod<uint64_t>(tensors_.size());
    out.pod<uint64_t>(kv_.size());
    for (const Kv& kv : kv_) {
      out.str(kv.key);
      out.pod(uint32_t(kv.type));
      write_value(out, kv.type, kv.value);
    }
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      out.str(t.name);
      out.pod<uint32_t>(uint32_t(t.shape.size()));
      for (size_t d = t.shape.size(); d-- > 0;) out.pod<uint64_t>(uint64_t(t.shape[d]));
      out.pod<uint32_t>(uint32_t(traits(t.dtype).gguf_id));
      out.pod<uint64_t>(offset);
      offset = align_up(offset + t.nbytes, alignment_);
    }
    out.pad_to(alignment_);
    for (const Tensor& t : tensors_) {
      std::vector<uint8_t> bytes = t.data();
      if (bytes.size() != t.nbytes)
        fail("{}: tensor '{}' ({} {}): produced {} bytes, expected {}", path, t.name, name(t.dtype),
             shape_string(t.shape), bytes.size(), t.nbytes);
      out.bytes(bytes.data(), bytes.size());
      out.pad_to(alignment_);
    }
    if (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0)
      fail("{}: flushing {} failed: {}", path, tmp, std::strerror(errno));
    if (std::fclose(f) != 0) {
      f = nullptr;
      fail("{}: closing {} failed: {}", path, tmp, std::strerror(errno));
    }
    f = nullptr;
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("{}: renaming {} into place failed: {}", path, tmp, ec.message());
  } catch (...) {
    if (f) std::fclose(f);
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

}  // namespace lowbit::io
