// GGUF v2/v3 reader (../shared/docs/FORMATS.md §8). The whole file is validated when opened
// (magic, version, counts and string lengths against caps and the bytes left, value types,
// tensor dims, types, byte sizes, alignment, offsets inside the file and not overlapping);
// every problem is a lowbit::Error naming the file and the field. Tensor data is used in
// place from the memory map.
//
// Split models (llama.cpp gguf-split / gguf-py: NAME-00001-of-0000N.gguf, with split.no
// (0-based), split.count and split.tensors.count in every part): opening the first part opens
// all N parts next to it; metadata comes from the first part, tensors() lists the tensors of
// all parts in part order. A missing part, a part with other split.count/split.no, a tensor in
// two parts or a tensor count other than split.tensors.count is an Error naming the part.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lowbit::io {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12
};

struct GgufArray;
// A metadata value. Integers keep their stored width's signedness in the variant index.
using GgufValue =
    std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>>;
struct GgufArray {
  GgufType elem_type;
  std::vector<GgufValue> items;
};

class GgufFile {
 public:
  // Opens and validates (all parts of a split model); throws
  // lowbit::Error("<path>: <field>: found X, expected Y").
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const;
  // Paths of all parts in order (just path() for a single file).
  std::vector<std::string> part_paths() const;
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  GgufType type_of(const std::string& key) const;  // throws if missing
  // Typed getters: throw naming the key when it is missing or holds another type.
  // get_int accepts any integer type that fits in int64; get_float accepts F32/F64.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  // Same with a default when the key is absent (still throws on a type mismatch).
  std::string get_string_or(const std::string& key, const std::string& def) const;
  int64_t get_int_or(const std::string& key, int64_t def) const;
  double get_float_or(const std::string& key, double def) const;
  bool get_bool_or(const std::string& key, bool def) const;
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }

  // Tensors in file order; shapes in PyTorch order (GGUF ne[] reversed).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;

 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::map<std::string, GgufType> kv_types_;  // the stored type (U32 vs U64, F32 vs F64, ...)
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
  std::vector<std::unique_ptr<GgufFile>> parts_;  // parts 2..N of a split model (own their maps)
  static std::unique_ptr<GgufFile> open_one(const std::string& path);
  void open_split_parts(int64_t count);
  friend class GgufParser;
};

}  // namespace lowbit::io
