// GemmRunner: cuBLASLt for m > kGemvMaxRows. Row-major y[m, out] = x[m, in]·W[out, in]ᵀ is the
// column-major product D[out, m] = Aᵀ·B with A = W viewed as [in, out] (ld in) and B = x
// viewed as [in, m] (ld ldx), D viewed as [out, m] (ld ldy).
#include <cublasLt.h>

#include <map>
#include <tuple>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/cuda/ops/elementwise.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

uint32_t alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align) align >>= 1;
  return align;
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

}  // namespace

struct GemmRunner::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace;
  // (m, out, in, ldx, ldy, out type, alignments of w, x, y)
  using Key =
      std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int, uint32_t, uint32_t, uint32_t>;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [key, p] : plans) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.d);
      cublasLtMatmulDescDestroy(p.op);
    }
    if (handle) cublasLtDestroy(handle);
  }

  const Plan& plan(const Key& key) {
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    auto [m, out, in, ldx, ldy, ot, align_w, align_x, align_y] = key;
    const cudaDataType_t d_type = ot == int(OutType::kBf16) ? CUDA_R_16BF : CUDA_R_32F;
    Plan p;
    LOWBIT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LOWBIT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LOWBIT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    LOWBIT_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, uint64_t(in), uint64_t(out), in));
    LOWBIT_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, uint64_t(in), uint64_t(m), ldx));
    LOWBIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, d_type, uint64_t(out), uint64_t(m), ldy));

    cublasLtMatmulPreference_t pref = nullptr;
    LOWBIT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = workspace.bytes();
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_w,
                                         sizeof(align_w));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_x,
                                         sizeof(align_x));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_y,
                                         sizeof(align_y));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_y,
                                         sizeof(align_y));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.d);
      cublasLtMatmulDescDestroy(p.op);
      fail("cuBLASLt has no bf16 algorithm for y[{}, {}] = x[{}, {}]·Wᵀ ({}, status {})", m, out, m,
           in, d_type == CUDA_R_32F ? "fp32 output" : "bf16 output", int(st));
    }
    p.algo = result.algo;
    return plans.emplace(key, p).first->second;
  }
};

GemmRunner::GemmRunner() : impl_(std::make_unique<Impl>()) {
  LOWBIT_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->workspace = DeviceBuffer(kWorkspaceBytes, "cuBLASLt workspace");
}

GemmRunner::~GemmRunner() = default;

void GemmRunner::linear(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w,
                        const float* bias, void* y, int64_t ldy, OutType out_type, int64_t m,
                        int64_t out, int64_t in, cudaStream_t stream, bool force_cublas) {
  if (m == 0 || out == 0) return;
  if (m <= kGemvMaxRows && !force_cublas) {
    gemv_bf16(x, ldx, w, bias, y, ldy, out_type, m, out, in, stream);
    return;
  }
  LOWBIT_CHECK(bias == nullptr || out_type == OutType::kBf16,
               "bias with fp32 output is not supported (out {})", out);
  Impl::Key key{
      m, out, in, ldx, ldy, int(out_type), alignment_of(w), alignment_of(x), alignment_of(y)};
  const Plan& p = impl_->plan(key);
  const float alpha = 1.0f, beta = 0.0f;
  LOWBIT_CUBLAS_CHECK(cublasLtMatmul(impl_->handle, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.d, y,
                                     p.d, &p.algo, impl_->workspace.get(), impl_->workspace.bytes(),
                                     stream));
  if (bias) {
    LOWBIT_CHECK(ldy == out, "bias needs contiguous output rows (ldy {} vs out {})", ldy, out);
    add_bias(static_cast<__nv_bfloat16*>(y), bias, m, out, stream);
  }
}

}  // namespace lowbit::kernels::cuda
