// safetensors reader: one file (mmap'd, validated) or a sharded checkpoint through
// model.safetensors.index.json. Validation (RELIABILITY.md rule 4): header length <= 100 MB and
// inside the file, JSON well-formed, every dtype known, dtype x shape == byte length, offsets
// inside the data section, not overlapping and covering it exactly, no duplicate names
// (across shards too), shard names plain file names inside the directory.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lowbit::io {

class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  const std::string& path() const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  friend class SafetensorsParser;
};

// All tensors of a model directory: model.safetensors, or the shards listed in
// model.safetensors.index.json (each shard opened once; the index's weight_map must agree
// with what the shards contain).
class SafetensorsCheckpoint {
 public:
  static std::unique_ptr<SafetensorsCheckpoint> open_dir(const std::string& dir);
  const TensorView* find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

}  // namespace lowbit::io
