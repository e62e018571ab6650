// Read-only memory map of a whole file (RAII). Weights are used straight from the map.
#pragma once

#include <cstdint>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  // Throws lowbit::Error naming the path when the file is missing or cannot be mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace lowbit
