// GGUF v2/v3 reader. Every count and length read from the file is checked against a hard cap
// and against the bytes left before anything is allocated (RELIABILITY.md rule 2); all size
// arithmetic goes through checked_math.h (rule 3); tensor ranges are checked to lie inside the
// file, aligned and not overlapping (rule 4).
#include "io/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include "core/checked_math.h"
#include "core/error.h"

namespace lowbit::io {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxTensors = uint64_t(1) << 20;
constexpr uint64_t kMaxKv = uint64_t(1) << 20;
constexpr uint64_t kMaxKeyLen = 65535;
constexpr uint64_t kMaxStringLen = uint64_t(1) << 30;
constexpr uint64_t kMaxArrayLen = uint64_t(1) << 31;
constexpr int kMaxArrayDepth = 4;        // an array nested in arrays at most this deep
constexpr uint64_t kMaxTensorName = 63;  // GGML_MAX_NAME = 64 including the NUL
constexpr uint32_t kMaxDims = 4;
constexpr int64_t kMaxSplitParts = 99999;  // five digits in the part file names
// Smallest possible encodings, used to bound counts by the bytes left before allocating.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;                  // key len, 1-byte key, type, u8
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, ne[1], type, off

const char* type_name(uint32_t t) {
  static const char* kNames[] = {"U8",   "I8",     "U16",   "I16", "U32", "I32", "F32",
                                 "BOOL", "STRING", "ARRAY", "U64", "I64", "F64"};
  return t < 13 ? kNames[t] : "UNKNOWN";
}

// Smallest encoded size of one element of a value type (for bounding array counts).
uint64_t min_elem_bytes(uint32_t t) {
  switch (GgufType(t)) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    case GgufType::STRING:
      return 8;
    case GgufType::ARRAY:
      return 12;
  }
  return 1;
}

}  // namespace

// Cursor over the mapped bytes; every read checks the bytes left and names what it was reading.
class GgufParser {
 public:
  GgufParser(GgufFile& out, const std::string& path)
      : out_(out), path_(path), data_(out.file_->data()), size_(out.file_->size()) {}

  void parse() {
    uint32_t magic = u32("magic");
    if (magic != kGgufMagic)
      fail("{}: bad magic 0x{:08x}, expected 0x{:08x} (\"GGUF\"); not a GGUF file", path_, magic,
           kGgufMagic);
    out_.version_ = u32("version");
    if (out_.version_ == 1)
      fail(
          "{}: GGUF version 1 is not supported (32-bit counts); expected version 2 or 3; "
          "re-convert the model with a current llama.cpp",
          path_);
    if (out_.version_ != 2 && out_.version_ != 3)
      fail("{}: unsupported GGUF version {}, expected 2 or 3", path_, out_.version_);
    uint64_t n_tensors = u64("tensor_count");
    uint64_t n_kv = u64("metadata_kv_count");
    check_count("tensor_count", n_tensors, kMaxTensors, kMinTensorInfoBytes);
    check_count("metadata_kv_count", n_kv, kMaxKv, kMinKvBytes);

    for (uint64_t i = 0; i < n_kv; ++i) read_kv(i);
    read_alignment();
    read_tensor_infos(n_tensors);
  }

 private:
  // ---- primitive reads ----
  void need(uint64_t n, const char* what) {
    if (n > size_ - pos_)
      fail("{}: truncated at offset {} reading {}: need {} bytes, only {} left", path_, pos_, what,
           n, size_ - pos_);
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint32_t u32(const char* what) { return read<uint32_t>(what); }
  uint64_t u64(const char* what) { return read<uint64_t>(what); }

  std::string str(const char* what, uint64_t cap) {
    uint64_t len = u64(what);
    if (len > cap)
      fail("{}: {} at offset {}: string length {} exceeds the cap of {} bytes", path_, what,
           pos_ - 8, len, cap);
    if (len > size_ - pos_)
      fail("{}: {} at offset {}: string length {} is past the end of the file ({} bytes left)",
           path_, what, pos_ - 8, len, size_ - pos_);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }

  void check_count(const char* what, uint64_t n, uint64_t cap, uint64_t min_bytes) {
    if (n > cap) fail("{}: {} = {} exceeds the cap of {}", path_, what, n, cap);
    // n <= 2^20 and min_bytes < 64, so the product cannot wrap.
    if (n * min_bytes > size_ - pos_)
      fail("{}: {} = {} cannot fit in the {} bytes left in the file (each entry needs at least {})",
           path_, what, n, size_ - pos_, min_bytes);
  }

  // ---- metadata ----
  void read_kv(uint64_t index) {
    std::string key = str("metadata key", kMaxKeyLen);
    if (key.empty()) fail("{}: metadata key #{} is empty", path_, index);
    if (out_.kv_.count(key)) fail("{}: duplicate metadata key '{}'", path_, key);
    key_ = key;
    uint32_t type = u32("metadata value type");
    GgufValue v = read_value(type, 0);
    out_.kv_types_.emplace(key, GgufType(type));
    out_.kv_.emplace(std::move(key), std::move(v));
  }

  GgufValue read_value(uint32_t type, int depth) {
    switch (type) {
      case uint32_t(GgufType::U8):
        return uint64_t(read<uint8_t>("U8 value"));
      case uint32_t(GgufType::I8):
        return int64_t(read<int8_t>("I8 value"));
      case uint32_t(GgufType::U16):
        return uint64_t(read<uint16_t>("U16 value"));
      case uint32_t(GgufType::I16):
        return int64_t(read<int16_t>("I16 value"));
      case uint32_t(GgufType::U32):
        return uint64_t(read<uint32_t>("U32 value"));
      case uint32_t(GgufType::I32):
        return int64_t(read<int32_t>("I32 value"));
      case uint32_t(GgufType::U64):
        return uint64_t(read<uint64_t>("U64 value"));
      case uint32_t(GgufType::I64):
        return int64_t(read<int64_t>("I64 value"));
      case uint32_t(GgufType::F32):
        return double(read<float>("F32 value"));
      case uint32_t(GgufType::F64):
        return read<double>("F64 value");
      case uint32_t(GgufType::BOOL): {
        uint8_t b = read<uint8_t>("BOOL value");
        if (b > 1) fail("{}: metadata key '{}': bool value {}, expected 0 or 1", path_, key_, b);
        return b == 1;
      }
      case uint32_t(GgufType::STRING):
        return str("string value", kMaxStringLen);
      case uint32_t(GgufType::ARRAY):
        return read_array(depth + 1);
      default:
        fail("{}: metadata key '{}': unknown value type {}, expected 0..12", path_, key_, type);
    }
  }

  GgufValue read_array(int depth) {
    if (depth > kMaxArrayDepth)
      fail("{}: metadata key '{}': arrays nested deeper than {} levels", path_, key_,
           kMaxArrayDepth);
    uint32_t elem = u32("array element type");
    if (elem > uint32_t(GgufType::F64))
      fail("{}: metadata key '{}': unknown array element type {}, expected 0..12", path_, key_,
           elem);
    uint64_t count = u64("array count");
    if (count > kMaxArrayLen)
      fail("{}: metadata key '{}': array count {} exceeds the cap of {}", path_, key_, count,
           kMaxArrayLen);
    // count <= 2^31 and min_elem_bytes <= 12: no wrap.
    if (count * min_elem_bytes(elem) > size_ - pos_)
      fail(
          "{}: metadata key '{}': array of {} {} elements is past the end of the file ({} bytes "
          "left)",
          path_, key_, count, type_name(elem), size_ - pos_);
    auto arr = std::make_shared<GgufArray>();
    arr->elem_type = GgufType(elem);
    arr->items.reserve(size_t(count));
    for (uint64_t i = 0; i < count; ++i) arr->items.push_back(read_value(elem, depth));
    return arr;
  }

  void read_alignment() {
    auto it = out_.kv_.find("general.alignment");
    if (it == out_.kv_.end()) return;
    if (out_.type_of("general.alignment") != GgufType::U32)
      fail("{}: metadata key 'general.alignment': found type {}, expected U32", path_,
           type_name(uint32_t(out_.type_of("general.alignment"))));
    uint64_t a = std::get<uint64_t>(it->second);
    if (a == 0 || (a & (a - 1)) != 0)
      fail("{}: general.alignment = {}, expected a non-zero power of two", path_, a);
    out_.alignment_ = a;
  }

  // ---- tensors ----
  struct Info {
    uint64_t offset, nbytes;
  };

  void read_tensor_infos(uint64_t n) {
    std::vector<Info> infos;
    infos.reserve(size_t(n));
    out_.tensors_.reserve(size_t(n));
    for (uint64_t i = 0; i < n; ++i) {
      TensorView t;
      // Names must be < 64 bytes (GGML_MAX_NAME = 64 including the NUL).
      t.name = str("tensor name", kMaxTensorName);
      if (t.name.empty()) fail("{}: tensor #{} has an empty name", path_, i);
      if (out_.tensor_index_.count(t.name)) fail("{}: duplicate tensor name '{}'", path_, t.name);
      uint32_t n_dims = u32("tensor n_dims");
      if (n_dims < 1 || n_dims > kMaxDims)
        fail("{}: tensor '{}': n_dims = {}, expected 1..{}", path_, t.name, n_dims, kMaxDims);
      uint64_t ne[kMaxDims];
      uint64_t numel = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        ne[d] = u64("tensor ne");
        if (ne[d] == 0 || ne[d] > uint64_t(INT64_MAX))
          fail("{}: tensor '{}': ne[{}] = {}, expected 1..{}", path_, t.name, d, ne[d], INT64_MAX);
        auto p = checked_mul(numel, ne[d]);
        if (!p || *p > uint64_t(INT64_MAX))
          fail("{}: tensor '{}': element count overflows (ne[{}] = {})", path_, t.name, d, ne[d]);
        numel = *p;
      }
      uint32_t type_id = u32("tensor type");
      auto dt = dtype_from_gguf_id(type_id);
      if (!dt) fail("{}: tensor '{}': unknown ggml type id {}", path_, t.name, type_id);
      t.dtype = *dt;
      uint32_t block = traits(*dt).block_elems;
      if (ne[0] % block != 0)
        fail("{}: tensor '{}': ne[0] = {} is not a multiple of the {} block size {}", path_, t.name,
             ne[0], name(*dt), block);
      auto bytes = dtype_bytes(*dt, numel);
      if (!bytes) fail("{}: tensor '{}': byte size overflows", path_, t.name);
      uint64_t offset = u64("tensor offset");
      if (offset % out_.alignment_ != 0)
        fail("{}: tensor '{}': offset {} is not a multiple of the alignment {}", path_, t.name,
             offset, out_.alignment_);
      for (uint32_t d = 0; d < n_dims; ++d) t.shape.push_back(int64_t(ne[n_dims - 1 - d]));
      t.nbytes = *bytes;
      infos.push_back({offset, *bytes});
      out_.tensor_index_.emplace(t.name, out_.tensors_.size());
      out_.tensors_.push_back(std::move(t));
    }
    if (n == 0) return;

    auto data_start = checked_align_up(pos_, out_.alignment_);
    if (!data_start || *data_start > size_)
      fail(
          "{}: data section (header ends at {}, aligned to {}) starts past the end of the file "
          "({} bytes)",
          path_, pos_, out_.alignment_, size_);
    uint64_t data_size = size_ - *data_start;
    for (size_t i = 0; i < infos.size(); ++i) {
      auto end = checked_add(infos[i].offset, infos[i].nbytes);
      if (!end || *end > data_size)
        fail("{}: tensor '{}': bytes [{}, {}) of the data section are past its end ({} bytes)",
             path_, out_.tensors_[i].name, infos[i].offset,
             end ? fmt::format("{}", *end) : std::string("overflow"), data_size);
      out_.tensors_[i].data = data_ + *data_start + infos[i].offset;
    }
    std::vector<size_t> order(infos.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return infos[a].offset < infos[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const Info& prev = infos[order[k - 1]];
      const Info& cur = infos[order[k]];
      if (cur.offset < prev.offset + prev.nbytes)
        fail("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", path_,
             out_.tensors_[order[k - 1]].name, prev.offset, prev.offset + prev.nbytes,
             out_.tensors_[order[k]].name, cur.offset, cur.offset + cur.nbytes);
    }
  }

  GgufFile& out_;
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string key_;  // key whose value is being read, for messages
};

std::unique_ptr<GgufFile> GgufFile::open_one(const std::string& path) {
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  f->file_ = std::make_unique<MappedFile>(path);
  GgufParser(*f, path).parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto f = open_one(path);
  if (f->has("split.count")) {
    const int64_t count = f->get_int("split.count");
    if (count < 1 || count > kMaxSplitParts)
      fail("{}: split.count: found {}, expected 1..{}", path, count, kMaxSplitParts);
    if (count > 1) f->open_split_parts(count);
  }
  return f;
}

namespace {

// "DIR/NAME-00001-of-00003.gguf" -> {"DIR/NAME", 1, 3}; nullopt when the name has no such tail.
struct SplitName {
  std::string prefix;
  int64_t no, count;
};
std::optional<SplitName> parse_split_name(const std::string& path) {
  static const std::regex kSplit(R"(^(.*)-([0-9]{5})-of-([0-9]{5})\.gguf$)");
  std::smatch m;
  if (!std::regex_match(path, m, kSplit)) return std::nullopt;
  return SplitName{m[1].str(), std::stoll(m[2].str()), std::stoll(m[3].str())};
}

std::string split_path(const std::string& prefix, int64_t no, int64_t count) {
  char tail[32];
  std::snprintf(tail, sizeof tail, "-%05lld-of-%05lld.gguf", (long long)no, (long long)count);
  return prefix + tail;
}

}  // namespace

void GgufFile::open_split_parts(int64_t count) {
  const std::string& first = path();
  const auto name = parse_split_name(first);
  if (!name)
    fail(
        "{}: split.count is {} but the file name does not end in -NNNNN-of-NNNNN.gguf, so "
        "the other parts cannot be found",
        first, count);
  const int64_t no = get_int_or("split.no", -1);
  if (name->no != 1 || no != 0)
    fail("{}: this is part {} of a split model (split.no = {}); open the first part {}", first,
         name->no, no, split_path(name->prefix, 1, name->count));
  if (name->count != count)
    fail("{}: split.count is {} but the file name says {} parts", first, count, name->count);
  for (int64_t i = 2; i <= count; ++i) {
    const std::string part_path = split_path(name->prefix, i, count);
    if (!std::filesystem::exists(part_path))
      fail("{}: part {} of {} of this split model is missing (expected {})", first, i, count,
           part_path);
    auto part = open_one(part_path);
    const int64_t part_count = part->get_int_or("split.count", -1);
    const int64_t part_no = part->get_int_or("split.no", -1);
    if (part_count != count || part_no != i - 1)
      fail("{}: split.count = {}, split.no = {}; expected {} and {} (part {} of {})", part_path,
           part_count, part_no, count, i - 1, i, first);
    for (const TensorView& t : part->tensors()) {
      if (tensor_index_.count(t.name))
        fail("{}: tensor '{}' is also in an earlier part of this split model", part_path, t.name);
      tensor_index_[t.name] = tensors_.size();
      tensors_.push_back(t);
    }
    parts_.push_back(std::move(part));
  }
  if (has("split.tensors.count")) {
    const int64_t want = get_int("split.tensors.count");
    if (want != int64_t(tensors_.size()))
      fail("{}: split.tensors.count is {} but the {} parts hold {} tensors", first, want, count,
           tensors_.size());
  }
}

const std::string& GgufFile::path() const { return file_->path(); }

std::vector<std::string> GgufFile::part_paths() const {
  std::vector<std::string> out = {path()};
  for (const auto& p : parts_) out.push_back(p->path());
  return out;
}

GgufType GgufFile::type_of(const std::string& key) const {
  auto it = kv_types_.find(key);
  if (it == kv_types_.end()) fail("{}: metadata key '{}' is missing", path(), key);
  return it->second;
}

namespace {

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}
bool is_float_type(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

std::string describe(GgufType t, const GgufValue& v) {
  std::string s = type_name(uint32_t(t));
  if (t == GgufType::ARRAY) {
    const auto& a = std::get<std::shared_ptr<GgufArray>>(v);
    s += fmt::format(" of {}", type_name(uint32_t(a->elem_type)));
  }
  return s;
}

// Integer value (stored as uint64_t or int64_t in the variant) as int64, or nullopt when an
// unsigned value does not fit.
std::optional<int64_t> as_int64(const GgufValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > uint64_t(INT64_MAX)) return std::nullopt;
    return int64_t(*u);
  }
  return std::get<int64_t>(v);
}

}  // namespace

// Looks a key up and checks its stored type; `expected` names the accepted types in messages.
#define LOWBIT_GGUF_LOOKUP(key, pred, expected)                               \
  auto it = kv_.find(key);                                                    \
  if (it == kv_.end()) fail("{}: metadata key '{}' is missing", path(), key); \
  GgufType stored = kv_types_.at(key);                                        \
  if (!(pred))                                                                \
    fail("{}: metadata key '{}': found type {}, expected {}", path(), key,    \
         describe(stored, it->second), expected);                             \
  const GgufValue& v = it->second

std::string GgufFile::get_string(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, stored == GgufType::STRING, "STRING");
  return std::get<std::string>(v);
}

int64_t GgufFile::get_int(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, is_int_type(stored), "an integer type");
  auto r = as_int64(v);
  if (!r)
    fail("{}: metadata key '{}': value {} does not fit in int64", path(), key,
         std::get<uint64_t>(v));
  return *r;
}

double GgufFile::get_float(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, is_float_type(stored), "F32 or F64");
  return std::get<double>(v);
}

bool GgufFile::get_bool(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, stored == GgufType::BOOL, "BOOL");
  return std::get<bool>(v);
}

namespace {
const GgufArray& array_of(const GgufValue& v) { return *std::get<std::shared_ptr<GgufArray>>(v); }
GgufType elem_of(GgufType stored, const GgufValue& v) {
  return stored == GgufType::ARRAY ? array_of(v).elem_type : GgufType(255);
}
}  // namespace

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, elem_of(stored, it->second) == GgufType::STRING, "ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(array_of(v).items.size());
  for (const auto& item : array_of(v).items) out.push_back(std::get<std::string>(item));
  return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, is_float_type(elem_of(stored, it->second)), "ARRAY of F32 or F64");
  std::vector<float> out;
  out.reserve(array_of(v).items.size());
  for (const auto& item : array_of(v).items) out.push_back(float(std::get<double>(item)));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  LOWBIT_GGUF_LOOKUP(key, is_int_type(elem_of(stored, it->second)), "ARRAY of an integer type");
  std::vector<int64_t> out;
  out.reserve(array_of(v).items.size());
  for (size_t i = 0; i < array_of(v).items.size(); ++i) {
    auto r = as_int64(array_of(v).items[i]);
    if (!r) fail("{}: metadata key '{}': element {} does not fit in int64", path(), key, i);
    out.push_back(*r);
  }
  return out;
}

#undef LOWBIT_GGUF_LOOKUP

std::string GgufFile::get_string_or(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}
double GgufFile::get_float_or(const std::string& key, double def) const {
  return has(key) ? get_float(key) : def;
}
bool GgufFile::get_bool_or(const std::string& key, bool def) const {
  return has(key) ? get_bool(key) : def;
}

const TensorView* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace lowbit::io
