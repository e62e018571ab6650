// Device selection (`--device cpu|cuda|auto`) and CUDA device discovery. Compiled in every
// build: without the CUDA backend, cuda_devices() is empty and asking for `cuda` explains why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit::engine {

enum class Device { kCpu, kCuda };

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  int multiprocessors = 0;
  uint64_t total_bytes = 0, free_bytes = 0;
};

// Whether this binary contains the CUDA backend (LOWBIT_HAVE_CUDA).
bool cuda_backend_built();

// The GPUs the CUDA runtime reports; empty when there are none or the backend is not built,
// with the reason in *why (when given).
std::vector<CudaDeviceInfo> cuda_devices(std::string* why = nullptr);

// Minimum compute capability ×10 of the CUDA backend (bf16 tensor cores: Ampere, sm_80).
inline constexpr int kMinCudaCapability = 80;

// "cpu", "cuda" or "auto" (cuda when a usable GPU exists, else cpu). Asking for "cuda" when
// the backend is not built, no GPU is visible or the GPU is too old throws lowbit::Error
// saying which; any other name throws too.
Device resolve_device(const std::string& name);

// Lines for `lowbit info`: the backend's state and one line per device.
std::string cuda_info_text();

}  // namespace lowbit::engine
