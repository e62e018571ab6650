// GGUF v3 writer (../shared/docs/FORMATS.md §8): metadata of every value kind, tensor infos,
// general.alignment padding and tensor data, the counterpart of io/gguf.h's reader.
//
// The file is written to "<out>.tmp-<pid>" next to the output and renamed over it only once
// everything was written and flushed, so a failure (a bad tensor, a full disk, an exception
// from a data producer) never leaves a truncated file at <out> nor touches an existing one.
//
// Tensor data is produced lazily: add_tensor() takes a function that returns the bytes when
// write() reaches that tensor, so quantizing a large model never holds more than one
// tensor's output in memory.
//
// Layout written (all little-endian):
//   u32 magic "GGUF", u32 version 3, u64 n_tensors, u64 n_kv,
//   n_kv × {string key, u32 type, value}, n_tensors × {string name, u32 n_dims, u64 ne[n_dims]
//   (innermost first), u32 ggml type, u64 offset}, zero padding to `alignment`, then each
//   tensor's bytes at its offset (offsets are multiples of `alignment`, tensors padded).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace lowbit::io {

class GgufWriter {
 public:
  // Produces one tensor's bytes (exactly dtype_bytes(dtype, numel) of them).
  using DataFn = std::function<std::vector<uint8_t>()>;

  // alignment: a power of two; written as general.alignment (U32) when not 32.
  explicit GgufWriter(uint32_t alignment = 32);

  // Sets (or replaces, keeping its position) a metadata key. `value` must hold the variant
  // alternative the reader uses for `type` (uint64_t for U8/U16/U32/U64, int64_t for signed,
  // double for F32/F64, bool, std::string, shared_ptr<GgufArray> for ARRAY); integer values
  // must fit the width. Throws lowbit::Error naming the key otherwise.
  void set(const std::string& key, GgufType type, GgufValue value);
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void remove(const std::string& key);
  bool has(const std::string& key) const { return index_.count(key) != 0; }

  // Copies every metadata key of `src` (with its stored type) except general.alignment and
  // the split.* keys, which describe the source file's layout, not the model.
  void copy_metadata(const GgufFile& src);

  // Adds a tensor; `shape` in PyTorch order (outermost first, as TensorView). The innermost
  // dimension must be a multiple of the dtype's block size; names are 1..63 bytes and unique.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  DataFn data);
  // Convenience: bytes already in memory (copied).
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  std::vector<uint8_t> bytes);

  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file (temp file + rename). Throws lowbit::Error naming `path` on any failure;
  // the temp file is removed and an existing `path` is left as it was.
  void write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    GgufType type;
    GgufValue value;
  };
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    DataFn data;
  };
  uint32_t alignment_;
  std::vector<Kv> kv_;
  std::map<std::string, size_t> index_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace lowbit::io
