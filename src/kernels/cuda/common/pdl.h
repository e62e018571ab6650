// Programmatic dependent launch (PDL, sm_90+). A kernel launched with launch_pdl may start while
// the kernel before it on the stream is still running; before it reads anything an earlier
// kernel wrote, or writes anything an earlier kernel reads, it calls pdl_wait(), which returns
// once every earlier kernel has finished and its writes are visible. What a kernel does before
// that (index math, loading weights, which no kernel of a step writes) overlaps the previous
// kernel's tail and the launch gap: a decode step runs ~10 kernels per layer, and at batch 1
// those gaps are a large part of the step. CUDA graphs keep the programmatic edges.
//
// Every kernel launched with launch_pdl must call pdl_wait() on every path, before any such
// access (a kernel that never waits could finish before its predecessor, and the kernel after
// it would no longer be ordered behind that predecessor). pdl_wait() is a no-op when the kernel
// was launched without the attribute, so the kernels stay correct under plain launches.
// LOWBIT_PDL=0 in the environment (read at each launch) turns the attribute off (A/B
// measurements, debugging).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/common/cuda_check.h"

namespace lowbit::kernels::cuda {

// True when the current device runs this build's sm_90+ code (which waits) unless LOWBIT_PDL=0.
bool pdl_enabled();
// True when the current device runs this build's sm_90+ code (not the compute_80 PTX).
bool device_runs_sm90_code();

// Appends the PDL attribute to attrs[num] (when enabled) and bumps num.
inline void add_pdl_attribute(cudaLaunchAttribute* attrs, unsigned& num) {
  if (!pdl_enabled()) return;
  attrs[num].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[num].val.programmaticStreamSerializationAllowed = 1;
  ++num;
}

// cfg's attributes for a launch with `cluster_z` blocks per cluster along z (none when 1) and
// PDL; attrs must outlive the launch.
inline void set_cluster_pdl_attributes(cudaLaunchConfig_t& cfg, cudaLaunchAttribute (&attrs)[2],
                                       unsigned cluster_z) {
  unsigned num = 0;
  if (cluster_z > 1) {
    attrs[num].id = cudaLaunchAttributeClusterDimension;
    attrs[num].val.clusterDim.x = 1;
    attrs[num].val.clusterDim.y = 1;
    attrs[num].val.clusterDim.z = cluster_z;
    ++num;
  }
  add_pdl_attribute(attrs, num);
  cfg.attrs = attrs;
  cfg.numAttrs = num;
}

#ifdef __CUDACC__
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel's blocks be scheduled once every block of this one has called it (or
// exited): called at the top of a kernel, the next kernel can settle into free SM slots and
// run its pre-wait part while this one works.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute; checks the launch.
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attrs[1];
  unsigned num = 0;
  add_pdl_attribute(attrs, num);
  cfg.attrs = attrs;
  cfg.numAttrs = num;
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
#endif

}  // namespace lowbit::kernels::cuda
