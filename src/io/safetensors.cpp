// safetensors reader (FORMATS.md §10). The header is parsed with a callback that rejects
// duplicate keys (nlohmann::json would silently keep the last one) and deep nesting, then every
// tensor entry is checked: known dtype, dtype x shape == byte length (checked math), ranges inside
// the data section, sorted ranges tiling it exactly (no overlap, no hole, no trailing bytes).
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the Rust reference implementation
constexpr uint64_t kMaxIndexBytes = 100'000'000;
constexpr size_t kMaxJsonDepth = 8;  // a valid header nests 3 deep: {name: {shape: [...]}}
constexpr size_t kMaxRank = 16;

// Parses JSON text, rejecting duplicate object keys (at any level) and nesting deeper than
// kMaxJsonDepth. `where` prefixes every message.
json parse_strict_json(const char* begin, const char* end, const std::string& where) {
  std::vector<std::set<std::string>> keys;  // one key set per open object
  size_t depth = 0;
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > kMaxJsonDepth)
          fail("{}: JSON nested deeper than {} levels", where, kMaxJsonDepth);
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end:
        if (depth > 0) --depth;
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second)
          fail("{}: duplicate key '{}'", where, parsed.get_ref<const std::string&>());
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
}

std::string supported_dtypes() {
  std::string s;
  for (size_t i = 0; i < size_t(DType::kCount); ++i) {
    const auto& tr = traits(DType(i));
    if (tr.safetensors_name.empty()) continue;
    if (!s.empty()) s += ", ";
    s += tr.safetensors_name;
  }
  return s;
}

// A JSON number that is a non-negative integer (nlohmann keeps those exactly as uint64/int64).
std::optional<uint64_t> as_u64(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return uint64_t(j.get<int64_t>());
  return std::nullopt;
}

struct Range {
  uint64_t begin, end;
  size_t tensor;
};

}  // namespace

class SafetensorsParser {
 public:
  SafetensorsParser(SafetensorsFile& out, const std::string& path)
      : out_(out), path_(path), data_(out.file_->data()), size_(out.file_->size()) {}

  void parse() {
    if (size_ < 8)
      fail("{}: file of {} bytes is too small for the 8-byte header length", path_, size_);
    uint64_t n;
    std::memcpy(&n, data_, 8);
    if (n > kMaxHeaderBytes)
      fail("{}: header length {} exceeds the cap of {} bytes", path_, n, kMaxHeaderBytes);
    if (n > size_ - 8)
      fail("{}: header length {} is past the end of the file ({} bytes after the length)", path_, n,
           size_ - 8);
    if (n == 0 || data_[8] != '{') fail("{}: header does not start with '{{'", path_);
    const char* h = reinterpret_cast<const char*>(data_ + 8);
    json header = parse_strict_json(h, h + n, path_ + ": header");
    if (!header.is_object()) fail("{}: header is not a JSON object", path_);

    const uint64_t data_start = 8 + n;
    const uint64_t data_size = size_ - data_start;
    std::vector<Range> ranges;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        read_metadata(it.value());
        continue;
      }
      ranges.push_back(read_tensor(it.key(), it.value(), data_size));
    }
    // Sorted by (begin, end), ranges must tile [0, data_size) exactly.
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expect = 0;
    const std::string* prev = nullptr;
    for (const Range& r : ranges) {
      const std::string& name = out_.tensors_[r.tensor].name;
      if (r.begin < expect)
        fail("{}: tensor '{}' data_offsets [{}, {}) overlap tensor '{}' ending at {}", path_, name,
             r.begin, r.end, prev ? *prev : std::string("?"), expect);
      if (r.begin > expect)
        fail("{}: hole in the data section: bytes [{}, {}) belong to no tensor (before '{}')",
             path_, expect, r.begin, name);
      expect = r.end;
      prev = &name;
    }
    if (expect != data_size)
      fail(
          "{}: {} trailing bytes after the last tensor: data section is {} bytes, tensors cover "
          "{}",
          path_, data_size - expect, data_size, expect);
    std::vector<TensorView> sorted;
    sorted.reserve(ranges.size());
    for (const Range& r : ranges) {
      TensorView t = std::move(out_.tensors_[r.tensor]);
      t.data = data_ + data_start + r.begin;
      sorted.push_back(std::move(t));
    }
    out_.tensors_ = std::move(sorted);
  }

 private:
  void read_metadata(const json& m) {
    if (!m.is_object())
      fail("{}: __metadata__ is a {}, expected an object of strings", path_, m.type_name());
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it.value().is_string())
        fail("{}: __metadata__ '{}' is a {}, expected a string", path_, it.key(),
             it.value().type_name());
      out_.metadata_.emplace(it.key(), it.value().get<std::string>());
    }
  }

  Range read_tensor(const std::string& name, const json& e, uint64_t data_size) {
    if (!e.is_object())
      fail("{}: tensor '{}': entry is a {}, expected an object", path_, name, e.type_name());
    auto field = [&](const char* f) -> const json& {
      auto it = e.find(f);
      if (it == e.end()) fail("{}: tensor '{}': missing field '{}'", path_, name, f);
      return *it;
    };
    const json& jd = field("dtype");
    if (!jd.is_string())
      fail("{}: tensor '{}': dtype is a {}, expected a string", path_, name, jd.type_name());
    const std::string& dname = jd.get_ref<const std::string&>();
    auto dt = dtype_from_safetensors_name(dname);
    if (!dt)
      fail("{}: tensor '{}': unknown or unsupported dtype '{}', expected one of {}", path_, name,
           dname, supported_dtypes());

    const json& js = field("shape");
    if (!js.is_array())
      fail("{}: tensor '{}': shape is a {}, expected an array", path_, name, js.type_name());
    if (js.size() > kMaxRank)
      fail("{}: tensor '{}': shape has {} dimensions, at most {} supported", path_, name, js.size(),
           kMaxRank);
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    uint64_t numel = 1;
    for (size_t i = 0; i < js.size(); ++i) {
      auto d = as_u64(js[i]);
      if (!d || *d > uint64_t(INT64_MAX))
        fail("{}: tensor '{}': shape[{}] = {}, expected a non-negative integer", path_, name, i,
             js[i].dump());
      auto p = checked_mul(numel, *d);
      if (!p || *p > uint64_t(INT64_MAX))
        fail("{}: tensor '{}': shape {} element count overflows", path_, name, js.dump());
      numel = *p;
      t.shape.push_back(int64_t(*d));
    }
    auto bytes = dtype_bytes(*dt, numel);
    if (!bytes) fail("{}: tensor '{}': byte size overflows", path_, name);

    const json& jo = field("data_offsets");
    if (!jo.is_array() || jo.size() != 2)
      fail("{}: tensor '{}': data_offsets = {}, expected [begin, end]", path_, name, jo.dump());
    auto b = as_u64(jo[0]), en = as_u64(jo[1]);
    if (!b || !en)
      fail("{}: tensor '{}': data_offsets = {}, expected two non-negative integers", path_, name,
           jo.dump());
    if (*b > *en)
      fail("{}: tensor '{}': data_offsets [{}, {}) has begin > end", path_, name, *b, *en);
    if (*en > data_size)
      fail(
          "{}: tensor '{}': data_offsets [{}, {}) are past the end of the data section ({} "
          "bytes)",
          path_, name, *b, *en, data_size);
    if (*en - *b != *bytes)
      fail("{}: tensor '{}': {} x {} needs {} bytes but data_offsets [{}, {}) hold {}", path_, name,
           traits(*dt).name, shape_string(t.shape), *bytes, *b, *en, *en - *b);
    t.nbytes = *bytes;
    out_.tensors_.push_back(std::move(t));
    return {*b, *en, out_.tensors_.size() - 1};
  }

  SafetensorsFile& out_;
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
};

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  f->file_ = std::make_unique<MappedFile>(path);
  SafetensorsParser(*f, path).parse();
  return f;
}

const std::string& SafetensorsFile::path() const { return file_->path(); }

// ---- checkpoint directory ----

namespace {

// RELIABILITY.md rule 5: a shard named in the index is a plain file name inside the directory.
void check_plain_name(const std::string& where, const std::string& tensor,
                      const std::string& shard) {
  bool bad = shard.empty() || shard == "." || shard == ".." ||
             shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
             shard.find('\0') != std::string::npos;
  if (bad)
    fail(
        "{}: weight_map['{}'] = '{}': expected a plain file name inside the model directory "
        "(no '/', '..' or absolute paths)",
        where, tensor, shard);
}

std::string read_small_file(const std::string& path, uint64_t cap) {
  std::error_code ec;
  uint64_t size = fs::file_size(path, ec);
  if (ec) fail("{}: cannot read: {}", path, ec.message());
  if (size > cap) fail("{}: {} bytes exceeds the cap of {} bytes", path, size, cap);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::string s(size_t(size), '\0');
  in.read(s.data(), std::streamsize(size));
  if (!in) fail("{}: read failed", path);
  return s;
}

}  // namespace

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: not a directory", dir);
  auto ck = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  const fs::path d(dir);
  const std::string index_path = (d / "model.safetensors.index.json").string();
  const std::string single_path = (d / "model.safetensors").string();

  auto add_file = [&](std::unique_ptr<SafetensorsFile> f) {
    for (const TensorView& t : f->tensors()) {
      auto [it, inserted] = ck->by_name_.emplace(t.name, &t);
      if (!inserted) {
        const std::string* other = nullptr;
        for (const auto& g : ck->files_)
          for (const TensorView& u : g->tensors())
            if (&u == it->second) other = &g->path();
        fail("{}: tensor '{}' also appears in {}; duplicate tensors across shards", f->path(),
             t.name, other ? *other : std::string("another shard"));
      }
    }
    ck->files_.push_back(std::move(f));
  };

  if (fs::exists(index_path, ec)) {
    std::string text = read_small_file(index_path, kMaxIndexBytes);
    json idx = parse_strict_json(text.data(), text.data() + text.size(), index_path);
    if (!idx.is_object())
      fail("{}: is a {}, expected a JSON object with a 'weight_map'", index_path, idx.type_name());
    auto wm = idx.find("weight_map");
    if (wm == idx.end() || !wm->is_object())
      fail("{}: missing 'weight_map' object (tensor name -> shard file name)", index_path);
    std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensors it must hold
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        fail("{}: weight_map['{}'] is a {}, expected a shard file name", index_path, it.key(),
             it.value().type_name());
      const std::string& shard = it.value().get_ref<const std::string&>();
      check_plain_name(index_path, it.key(), shard);
      by_shard[shard].push_back(it.key());
    }
    if (by_shard.empty()) fail("{}: weight_map is empty", index_path);
    for (const auto& [shard, names] : by_shard) {
      std::string shard_path = (d / shard).string();
      if (!fs::is_regular_file(shard_path, ec))
        fail("{}: shard '{}' (holding tensor '{}') does not exist in {}", index_path, shard,
             names.front(), dir);
      auto f = SafetensorsFile::open(shard_path);
      std::set<std::string> have;
      for (const TensorView& t : f->tensors()) have.insert(t.name);
      for (const std::string& n : names)
        if (!have.count(n))
          fail(
              "{}: tensor '{}' is listed in weight_map for shard '{}' but that shard does not "
              "contain it",
              index_path, n, shard);
      add_file(std::move(f));
    }
    return ck;
  }
  if (fs::exists(single_path, ec)) {
    add_file(SafetensorsFile::open(single_path));
    return ck;
  }
  for (const char* pickled :
       {"pytorch_model.bin", "pytorch_model.bin.index.json", "consolidated.00.pth", "model.pt"}) {
    if (fs::exists(d / pickled, ec))
      fail(
          "{}: only a pickled checkpoint ({}) was found; lowbit never unpickles. Please convert "
          "to safetensors",
          dir, pickled);
  }
  fail("{}: no model.safetensors or model.safetensors.index.json found", dir);
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [n, t] : by_name_) out.push_back(n);
  return out;
}

}  // namespace lowbit::io
