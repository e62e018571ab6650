// Error checking for CUDA runtime and cuBLASLt calls: every failure becomes a lowbit::Error
// naming the call, the CUDA error and where it happened. Kept free of fmt so that .cu files
// compiled by nvcc can include it.
#pragma once

#include <cuda_runtime.h>

namespace lowbit::kernels::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);

}  // namespace lowbit::kernels::cuda

#define LOWBIT_CUDA_CHECK(call)                                                          \
  do {                                                                                   \
    cudaError_t lowbit_err_ = (call);                                                    \
    if (lowbit_err_ != cudaSuccess)                                                      \
      ::lowbit::kernels::cuda::throw_cuda_error(lowbit_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports bad launch configurations (and earlier asynchronous errors).
#define LOWBIT_CUDA_CHECK_LAUNCH() LOWBIT_CUDA_CHECK(cudaGetLastError())

#define LOWBIT_CUBLAS_CHECK(call)                                                             \
  do {                                                                                        \
    int lowbit_status_ = static_cast<int>(call);                                              \
    if (lowbit_status_ != 0)                                                                  \
      ::lowbit::kernels::cuda::throw_cublas_error(lowbit_status_, #call, __FILE__, __LINE__); \
  } while (0)
