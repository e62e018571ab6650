#include "engine/gpu_device.h"

#include <fmt/format.h>

#include "core/error.h"

#ifdef LOWBIT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace lowbit::engine {

bool cuda_backend_built() {
#ifdef LOWBIT_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<CudaDeviceInfo> cuda_devices(std::string* why) {
  std::vector<CudaDeviceInfo> out;
#ifdef LOWBIT_HAVE_CUDA
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (why)
      *why = fmt::format("the CUDA runtime found no usable GPU ({}: {})", cudaGetErrorName(err),
                         cudaGetErrorString(err));
    return out;
  }
  if (count == 0 && why) *why = "the CUDA runtime reports no GPU";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.cc_major = prop.major;
    d.cc_minor = prop.minor;
    d.multiprocessors = prop.multiProcessorCount;
    d.total_bytes = prop.totalGlobalMem;
    int previous = 0;
    cudaGetDevice(&previous);
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      d.free_bytes = free_b;
    cudaSetDevice(previous);
    cudaGetLastError();
    out.push_back(d);
  }
#else
  if (why) *why = "this lowbit was built without the CUDA backend (no nvcc at configure time)";
#endif
  return out;
}

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name != "cuda" && name != "auto")
    fail("--device '{}' is not a device; expected cpu, cuda or auto", name);
  std::string why;
  auto devices = cuda_devices(&why);
  if (devices.empty()) {
    if (name == "auto") return Device::kCpu;
    fail("--device cuda: {}; use --device cpu", why);
  }
  const CudaDeviceInfo& d = devices.front();
  if (d.cc_major * 10 + d.cc_minor < kMinCudaCapability) {
    if (name == "auto") return Device::kCpu;
    fail(
        "--device cuda: GPU {} ({}) has compute capability {}.{}; the CUDA backend needs {}.{} or "
        "newer; use --device cpu",
        d.index, d.name, d.cc_major, d.cc_minor, kMinCudaCapability / 10, kMinCudaCapability % 10);
  }
  return Device::kCuda;
}

std::string cuda_info_text() {
  std::string why;
  auto devices = cuda_devices(&why);
  if (!cuda_backend_built()) return "CUDA: backend not built; devices: none\n";
  if (devices.empty()) return fmt::format("CUDA: backend built; devices: none ({})\n", why);
  std::string s = fmt::format("CUDA: backend built; {} device{}\n", devices.size(),
                              devices.size() == 1 ? "" : "s");
  for (const auto& d : devices)
    s += fmt::format(
        "  cuda:{} {} (sm_{}{}, {} SMs, {:.1f} GiB, {:.1f} GiB free){}\n", d.index, d.name,
        d.cc_major, d.cc_minor, d.multiprocessors, double(d.total_bytes) / (1ull << 30),
        double(d.free_bytes) / (1ull << 30),
        d.cc_major * 10 + d.cc_minor < kMinCudaCapability ? " [too old: needs sm_80+]" : "");
  return s;
}

}  // namespace lowbit::engine
