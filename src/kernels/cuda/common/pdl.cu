#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/common/pdl.h"

namespace lowbit::kernels::cuda {
namespace {

// Compiled like every kernel of the library: its binary version tells whether the code the
// device runs was built for sm_90+ (and so contains griddepcontrol.wait). A newer GPU running
// the compute_80 PTX would not wait, so the attribute must stay off there.
__global__ void pdl_probe_kernel() {}

}  // namespace

bool pdl_enabled() {
  // Read at every launch (graph replays launch nothing), so one process can compare both modes.
  const char* env = std::getenv("LOWBIT_PDL");
  if (env && std::strcmp(env, "0") == 0) return false;
  return device_runs_sm90_code();
}

bool device_runs_sm90_code() {
  // Per device: 0 not yet checked, 1 no, 2 yes.
  static std::atomic<int> known[64];
  int dev = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) return false;
  int v = known[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    cudaFuncAttributes attr = {};
    LOWBIT_CUDA_CHECK(cudaFuncGetAttributes(&attr, pdl_probe_kernel));
    v = std::min(attr.ptxVersion, attr.binaryVersion) >= 90 ? 2 : 1;
    known[dev].store(v, std::memory_order_relaxed);
  }
  return v == 2;
}

}  // namespace lowbit::kernels::cuda
