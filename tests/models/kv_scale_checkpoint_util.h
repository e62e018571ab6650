// Tests of checkpoint KV scales (models/kv_scales.h): copies a tiny fixture checkpoint into a
// temporary folder with extra F32 tensors (k_scale / v_scale under any naming scheme) added
// to its model.safetensors.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_paths.h"

namespace lowbit::testing {

struct ExtraTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // F32
};

// The fixture folder tests/fixtures/tiny/<name> copied to <tmp>/<tag>, with `extra` appended
// to its model.safetensors (header entries + data at the end). Returns the new folder.
inline std::string checkpoint_with_tensors(const std::string& name, const std::string& tag,
                                           const std::map<std::string, ExtraTensor>& extra) {
  namespace fs = std::filesystem;
  const fs::path src = source_path("tests/fixtures/tiny/" + name);
  const fs::path dst = fs::temp_directory_path() / ("lowbit_kv_scales_" + tag);
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "model.safetensors")
      fs::copy_file(e.path(), dst / e.path().filename());

  std::ifstream in(src / "model.safetensors", std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, ' ');
  in.read(header.data(), std::streamsize(header_len));
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(in.eof() || in.good()) << src;
  nlohmann::json h = nlohmann::json::parse(header);
  for (const auto& [tensor, t] : extra) {
    const size_t begin = data.size(), bytes = t.values.size() * 4;
    data.resize(begin + bytes);
    std::memcpy(data.data() + begin, t.values.data(), bytes);
    h[tensor] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {begin, begin + bytes}}};
  }
  std::string out_header = h.dump();
  out_header.append((8 - out_header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  const uint64_t out_len = out_header.size();
  std::ofstream out(dst / "model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&out_len), 8);
  out.write(out_header.data(), std::streamsize(out_len));
  out.write(data.data(), std::streamsize(data.size()));
  return dst.string();
}

}  // namespace lowbit::testing
