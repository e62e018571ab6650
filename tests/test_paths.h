// Paths tests use: the repository, its build folder and ../shared (test data and models).
#pragma once

#include <filesystem>
#include <string>

namespace lowbit::testing {

inline std::string source_path(const std::string& rel) {
  return std::string(LOWBIT_SOURCE_DIR) + "/" + rel;
}
inline std::string shared_path(const std::string& rel) {
  return std::string(LOWBIT_SOURCE_DIR) + "/../shared/" + rel;
}
inline bool shared_available() { return std::filesystem::exists(shared_path("models")); }

}  // namespace lowbit::testing
