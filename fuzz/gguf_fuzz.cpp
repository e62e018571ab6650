// libFuzzer target for the GGUF reader (RELIABILITY.md: coverage-guided fuzzing with ASan/UBSan
// and leak detection). The reader takes a path, so each input is written to a per-process file
// in /dev/shm (or $TMPDIR) and opened; lowbit::Error is the expected outcome for bad input, any
// other exception or sanitizer report is a finding. On success every typed getter is called on
// every key and all tensor bytes are read, so out-of-range views are caught too.
//
// Build (clang only):  clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//   fuzz/gguf_fuzz.cpp src/io/gguf.cpp src/core/*.cpp -lfmt -o gguf_fuzz
// Run:                 ./gguf_fuzz -max_len=4096 -timeout=5 fuzz/corpus/gguf
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "io/gguf.h"

namespace {

std::string scratch_path() {
  const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/lowbit_gguf_fuzz_" + std::to_string(::getpid());
}

template <typename F>
void try_get(F&& f) {
  try {
    f();
  } catch (const lowbit::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto g = lowbit::io::GgufFile::open(path);
    volatile uint64_t sum = 0;
    for (const auto& t : g->tensors())
      for (uint64_t i = 0; i < t.nbytes; ++i) sum = sum + t.data[i];
    for (const auto& kv : g->metadata()) {
      const std::string& key = kv.first;
      try_get([&] { g->get_int(key); });
      try_get([&] { g->get_float(key); });
      try_get([&] { g->get_string(key); });
      try_get([&] { g->get_bool(key); });
      try_get([&] { g->get_string_array(key); });
      try_get([&] { g->get_int_array(key); });
      try_get([&] { g->get_float_array(key); });
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}
