#include "kernels/cuda/common/cuda_check.h"

#include <cublasLt.h>

#include "core/error.h"

namespace lowbit::kernels::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  fail("CUDA error {} ({}): {} in {} at {}:{}", cudaGetErrorName(err), int(err),
       cudaGetErrorString(err), call, file, line);
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  fail("cuBLASLt error {} ({}) in {} at {}:{}",
       cublasLtGetStatusName(static_cast<cublasStatus_t>(status)), status, call, file, line);
}

}  // namespace lowbit::kernels::cuda
