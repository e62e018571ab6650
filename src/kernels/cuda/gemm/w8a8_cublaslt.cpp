// W8A8Runner: the cuBLASLt side of the W8A8 linear layers. Row-major y[m, n] = x[m, k]·W[n, k]ᵀ
// is the column-major product D[n, m] = Aᵀ·B with A = W viewed as [k, n] (ld k, "T") and B =
// the quantized x viewed as [k, m] (ld k, "N"): the "TN" form that fp8 and int8 cuBLASLt
// kernels require.
//
// Scale modes on Hopper (cuBLAS 12.9+): per-tensor = SCALAR_32F on A and B; rowwise =
// OUTER_VEC_32F (A: n values, B: m values); block = BLK128x128_32F on A (row-major
// [n/128, k/128], as checkpoints store it) and VEC128_32F on B (1×128 groups of each token).
// cuBLASLt 13.0 offers algorithms for the vector/block modes only when the scale pointers are
// set at heuristic time (measured on H100: null pointers give status 7, no algorithm), so
// plans are made with a placeholder pointer that each call replaces.
// Where cuBLASLt offers no algorithm (rowwise on Ada, a row stride of y that is not 16-byte
// aligned), the product goes to y unscaled or to an fp32 scratch and an own epilogue applies
// row × column scales and bias; int8 always takes the scratch route (int32 result, own
// epilogue) in row chunks that fit the scratch. Block scales without an algorithm (sm_89,
// sm_100+) and every fp8 call for m > 8 on sm_80-88 dequantize the weight in row chunks into
// a bf16 scratch and run the bf16 cuBLASLt GEMM (weight-only).
#include <cublasLt.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "core/error.h"
#include "kernels/cuda/common/cuda_check.h"
#include "kernels/cuda/gemm/linear.h"
#include "kernels/cuda/gemm/w8a8_internal.h"

namespace lowbit::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int64_t kAccMaxElems = int64_t(32) << 20;  // 128 MiB of int32/fp32 scratch at most

enum class Kind : int { kFp8Tensor, kFp8Rowwise, kFp8Block, kFp8Raw, kInt8Raw };

uint32_t alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align) align >>= 1;
  return align;
}

struct Plan {
  bool ok = false;  // false: cuBLASLt has no algorithm for this kind and shape
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

template <typename T>
void set_attr(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const T& v) {
  LOWBIT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, &v, sizeof(v)));
}

}  // namespace

struct W8A8Runner::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace;
  DeviceBuffer act_q;                // quantized activations [m, k]
  DeviceBuffer act_scales;           // their scales
  DeviceBuffer acc;                  // int32 / fp32 product before the epilogue
  DeviceBuffer wtmp;                 // bf16 rows of a dequantized fp8 weight (weight-only fallback)
  std::unique_ptr<GemmRunner> bf16;  // bf16 cuBLASLt for the weight-only fallback
  int64_t cap_m = 0, cap_k = 0, cap_n = 0;
  int cc = 0;
  const char* last = "";
  // (kind, m, n, k, ldy, out type, alignment of y)
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int, uint32_t>;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [key, p] : plans) destroy(p);
    if (handle) cublasLtDestroy(handle);
  }

  static void destroy(Plan& p) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.d) cublasLtMatrixLayoutDestroy(p.d);
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    p = Plan{};
  }

  bool fp8_tensor_cores(Fp8Scaling s) const {
    return cc >= kFp8MinCapability && (s != Fp8Scaling::kBlock128 || cc == 90);
  }

  const Plan& plan(Kind kind, int64_t m, int64_t n, int64_t k, int64_t ldy, OutType out,
                   const void* y) {
    const uint32_t align_y = alignment_of(y);
    Key key{int(kind), m, n, k, ldy, int(out), align_y};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Plan p;
    const bool is_int8 = kind == Kind::kInt8Raw;
    const cudaDataType_t ab = is_int8 ? CUDA_R_8I : CUDA_R_8F_E4M3;
    cudaDataType_t dt = CUDA_R_32F;
    if (is_int8)
      dt = CUDA_R_32I;
    else if (kind != Kind::kFp8Raw && out == OutType::kBf16)
      dt = CUDA_R_16BF;
    const int64_t ldd = (kind == Kind::kFp8Raw || is_int8) ? n : ldy;
    LOWBIT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op,
                                                 is_int8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                                 is_int8 ? CUDA_R_32I : CUDA_R_32F));
    set_attr(p.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set_attr(p.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    int32_t a_mode = -1, b_mode = -1;
    if (kind == Kind::kFp8Rowwise) a_mode = b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    if (kind == Kind::kFp8Block) {
      a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
      b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    }
    if (a_mode >= 0) {
      set_attr(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, a_mode);
      set_attr(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, b_mode);
      // Placeholder pointers: without them the heuristic finds nothing (see the top).
      const void* placeholder = workspace.get();
      set_attr(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, placeholder);
      set_attr(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, placeholder);
    }
    LOWBIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab, uint64_t(k), uint64_t(n), k));
    LOWBIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab, uint64_t(k), uint64_t(m), k));
    LOWBIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, dt, uint64_t(n), uint64_t(m), ldd));

    cublasLtMatmulPreference_t pref = nullptr;
    LOWBIT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = workspace.bytes();
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    const uint32_t align_d = (kind == Kind::kFp8Raw || is_int8) ? 256u : align_y;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d,
                                         sizeof(align_d));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                         sizeof(align_d));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      destroy(p);  // ok stays false: the caller falls back or reports
    } else {
      p.algo = result.algo;
      p.ok = true;
    }
    return plans.emplace(key, p).first->second;
  }

  static constexpr int64_t kDequantChunkBytes = int64_t(64) << 20;

  int64_t dequant_rows(int64_t n, int64_t k) const {
    int64_t rows = std::max<int64_t>(16, kDequantChunkBytes / (2 * k));
    rows -= rows % 16;
    return std::min(rows, n);
  }

  static void refuse_in_capture(cudaStream_t stream, const char* what) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    LOWBIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone)
      fail(
          "W8A8Runner: {} needs an allocation; call reserve() and run each shape once before "
          "CUDA graph capture",
          what);
  }

  // Weight-only fallback: y = x·dequant(W)ᵀ through bf16 cuBLASLt, W dequantized in row chunks
  // of at most 64 MiB (sm_80-88, and block scales where cuBLASLt has no algorithm).
  void dequant_gemm(const Fp8GpuWeight& w, const __nv_bfloat16* x, int64_t ldx, const float* bias,
                    void* y, int64_t ldy, OutType out_type, int64_t m, cudaStream_t stream) {
    const int64_t n = w.n(), k = w.k(), step = dequant_rows(n, k);
    if (int64_t(wtmp.bytes()) < step * k * 2) {
      refuse_in_capture(stream, "the dequantized weight scratch");
      wtmp = DeviceBuffer();
      wtmp = DeviceBuffer(size_t(step * k * 2), "W8A8 dequantized weight rows");
    }
    if (!bf16) bf16 = std::make_unique<GemmRunner>();
    const size_t ybytes = out_type == OutType::kBf16 ? 2 : 4;
    for (int64_t r = 0; r < n; r += step) {
      const int64_t rows = std::min(step, n - r);
      w8a8::dequant_fp8_rows(w.data(), w.scales(), w.scaling(), r, rows, k,
                             wtmp.get<__nv_bfloat16>(), stream);
      bf16->linear(x, ldx, wtmp.get<__nv_bfloat16>(), nullptr,
                   static_cast<char*>(y) + size_t(r) * ybytes, ldy, out_type, m, rows, k, stream,
                   /*force_cublas=*/true);
    }
    if (bias) w8a8::add_bias_rows(y, ldy, out_type, bias, m, n, stream);
    last = "dequant+bf16-gemm";
  }

  // Grows the per-call buffers for an (m, k, n) call; refuses during graph capture.
  void ensure(int64_t m, int64_t k, int64_t n, bool need_acc, cudaStream_t stream) {
    const bool grow_act = m > cap_m || k > cap_k;
    const int64_t acc_elems = std::min((m + 15) / 16 * 16 * n, kAccMaxElems);
    const bool grow_acc = need_acc && int64_t(acc.bytes() / 4) < acc_elems;
    if (!grow_act && !grow_acc) return;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    LOWBIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone)
      fail(
          "W8A8Runner: a call with m {}, k {}, n {} needs more than reserve({}, {}, {}) "
          "allocated; call reserve() before CUDA graph capture",
          m, k, n, cap_m, cap_k, cap_n);
    reserve(std::max(m, cap_m), std::max(k, cap_k), std::max(n, cap_n), need_acc);
  }

  void reserve(int64_t max_m, int64_t max_k, int64_t max_n, bool with_acc) {
    if (max_m > cap_m || max_k > cap_k) {
      act_q = DeviceBuffer();
      act_q = DeviceBuffer(size_t(max_m * max_k), "W8A8 quantized activations");
      const int64_t groups = std::max<int64_t>(2, (max_m + 4) * (w8a8::ceil_div(max_k, 128) + 4));
      act_scales =
          DeviceBuffer(size_t(std::max(groups, max_m)) * sizeof(float), "W8A8 activation scales");
      cap_m = std::max(cap_m, max_m);
      cap_k = std::max(cap_k, max_k);
    }
    cap_n = std::max(cap_n, max_n);
    const int64_t acc_elems = std::min((cap_m + 15) / 16 * 16 * cap_n, kAccMaxElems);
    if (with_acc && int64_t(acc.bytes() / 4) < acc_elems) {
      acc = DeviceBuffer();
      acc = DeviceBuffer(size_t(acc_elems) * 4, "W8A8 int32/fp32 product scratch");
    }
  }

  void matmul(const Plan& p, const void* alpha, const void* beta, const void* a, const void* b,
              void* d, cudaStream_t stream) {
    LOWBIT_CUBLAS_CHECK(cublasLtMatmul(handle, p.op, alpha, a, p.a, b, p.b, beta, d, p.d, d, p.d,
                                       &p.algo, workspace.get(), workspace.bytes(), stream));
  }

  // Rows per chunk of the int32/fp32 scratch (multiple of 16 where it can be).
  int64_t chunk_rows(int64_t m, int64_t n) const {
    int64_t rows = int64_t(acc.bytes() / 4) / n;
    if (rows >= 16) rows -= rows % 16;
    return std::max<int64_t>(1, std::min(rows, m));
  }
};

W8A8Runner::W8A8Runner() : impl_(std::make_unique<Impl>()) {
  LOWBIT_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->workspace = DeviceBuffer(kWorkspaceBytes, "cuBLASLt W8A8 workspace");
  int dev = 0, major = 0, minor = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&dev));
  LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  impl_->cc = major * 10 + minor;
  if (impl_->cc < kFp8MinCapability) impl_->bf16 = std::make_unique<GemmRunner>();
}

W8A8Runner::~W8A8Runner() = default;

void W8A8Runner::reserve(int64_t max_m, int64_t max_k, int64_t max_n) {
  impl_->reserve(max_m, max_k, max_n, true);
}

const char* W8A8Runner::last_path() const { return impl_->last; }

void W8A8Runner::fp8_linear(const Fp8GpuWeight& w, const __nv_bfloat16* x, int64_t ldx,
                            const float* bias, void* y, int64_t ldy, OutType out_type, int64_t m,
                            cudaStream_t stream, bool force_gemm) {
  if (m == 0) return;
  const int64_t n = w.n(), k = w.k();
  const Fp8Scaling scaling = w.scaling();
  LOWBIT_CHECK(ldy >= n && ldx >= k, "fp8_linear: ldx {} < k {} or ldy {} < n {}", ldx, k, ldy, n);
  Impl& s = *impl_;
  // Block scales natively only for m % 4 == 0 (see w8a8::BlockScaleLayout); other m up to 16
  // take the GEMV, larger ones the dequantize + bf16 GEMM fallback.
  const bool block_odd_m = scaling == Fp8Scaling::kBlock128 && m % 4 != 0;
  if (m > 16 && (!s.fp8_tensor_cores(scaling) || block_odd_m)) {
    s.dequant_gemm(w, x, ldx, bias, y, ldy, out_type, m, stream);
    return;
  }
  if ((m <= kW8GemvMaxRows && !force_gemm) || !s.fp8_tensor_cores(scaling) || block_odd_m) {
    // Weight-only path: bf16 activations, up to 8 rows of x per weight pass.
    for (int64_t r = 0; r < m; r += kW8GemvChunkRows) {
      const int64_t rows = std::min(kW8GemvChunkRows, m - r);
      const size_t ybytes = out_type == OutType::kBf16 ? 2 : 4;
      w8a8::w8_gemv(w.data(), true, w.scales(), scaling, x + r * ldx, ldx, bias,
                    static_cast<char*>(y) + size_t(r * ldy) * ybytes, ldy, out_type, rows, n, k,
                    stream);
    }
    s.last = "gemv";
    return;
  }
  const Kind kind = scaling == Fp8Scaling::kPerTensor ? Kind::kFp8Tensor
                    : scaling == Fp8Scaling::kRowwise ? Kind::kFp8Rowwise
                                                      : Kind::kFp8Block;
  const size_t ybytes = out_type == OutType::kBf16 ? 2 : 4;
  const bool native = s.plan(kind, m, n, k, ldy, out_type, y).ok;
  s.ensure(m, k, n, !native, stream);
  auto* xq = s.act_q.get<uint8_t>();
  auto* xs = s.act_scales.get<float>();
  const float one = 1.0f, zero = 0.0f;

  if (kind == Kind::kFp8Block && !native) {
    s.dequant_gemm(w, x, ldx, bias, y, ldy, out_type, m, stream);
    return;
  }
  fp8_quantize_activations(x, ldx, m, k, scaling, xq, xs, stream);
  if (!native && scaling == Fp8Scaling::kRowwise) {
    // Unscaled product straight into y, then row × column scales (+ bias) in place.
    const Plan& p = s.plan(Kind::kFp8Tensor, m, n, k, ldy, out_type, y);
    if (p.ok) {
      set_attr(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(nullptr));
      set_attr(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(nullptr));
      s.matmul(p, &one, &zero, w.data(), xq, y, stream);
      w8a8::scale_inplace(y, ldy, out_type, xs, w.scales(), bias, m, n, stream);
      s.last = "cublaslt+scale-epilogue";
      return;
    }
  }
  if (!native) {  // fp32 product, then row × column scales and bias
    const bool per_tensor = scaling == Fp8Scaling::kPerTensor;
    const int64_t step = s.chunk_rows(m, n);
    for (int64_t r = 0; r < m; r += step) {
      const int64_t rows = std::min(step, m - r);
      const Plan& p = s.plan(Kind::kFp8Raw, rows, n, k, n, OutType::kF32, s.acc.get());
      if (!p.ok)
        fail("cuBLASLt has no fp8 algorithm for [{}, {}]·[{}, {}]ᵀ (sm_{})", rows, k, n, k, s.cc);
      s.matmul(p, &one, &zero, w.data(), xq + r * k, s.acc.get(), stream);
      w8a8::dequant_epilogue(s.acc.get(), false, per_tensor ? xs : xs + r, per_tensor, w.scales(),
                             per_tensor, bias, static_cast<char*>(y) + size_t(r * ldy) * ybytes,
                             ldy, out_type, rows, n, stream);
    }
    s.last = "cublaslt+epilogue";
    return;
  }

  const Plan& p = s.plan(kind, m, n, k, ldy, out_type, y);
  const float* w_scales = kind == Kind::kFp8Block ? w.impl().gemm_scales.get<float>() : w.scales();
  set_attr(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(w_scales));
  set_attr(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(xs));
  s.matmul(p, &one, &zero, w.data(), xq, y, stream);
  if (bias) w8a8::add_bias_rows(y, ldy, out_type, bias, m, n, stream);
  s.last = "cublaslt-scaled";
}

void W8A8Runner::int8_linear(const Int8GpuWeight& w, const __nv_bfloat16* x, int64_t ldx,
                             const float* bias, void* y, int64_t ldy, OutType out_type, int64_t m,
                             cudaStream_t stream, bool force_gemm) {
  if (m == 0) return;
  const int64_t n = w.n(), k = w.k();
  LOWBIT_CHECK(ldy >= n && ldx >= k, "int8_linear: ldx {} < k {} or ldy {} < n {}", ldx, k, ldy, n);
  Impl& s = *impl_;
  const size_t ybytes = out_type == OutType::kBf16 ? 2 : 4;
  if (m <= kW8GemvMaxRows && !force_gemm) {
    w8a8::w8_gemv(w.data(), false, w.scales(), Fp8Scaling::kRowwise, x, ldx, bias, y, ldy, out_type,
                  m, n, k, stream);
    s.last = "gemv";
    return;
  }
  s.ensure(m, k, n, true, stream);
  auto* xq = s.act_q.get<int8_t>();
  auto* xs = s.act_scales.get<float>();
  int8_quantize_activations(x, ldx, m, k, xq, xs, stream);
  const int32_t one = 1, zero = 0;
  const int64_t step = s.chunk_rows(m, n);
  for (int64_t r = 0; r < m; r += step) {
    const int64_t rows = std::min(step, m - r);
    const Plan& p = s.plan(Kind::kInt8Raw, rows, n, k, n, OutType::kF32, s.acc.get());
    if (!p.ok)
      fail("cuBLASLt has no int8 algorithm for [{}, {}]·[{}, {}]ᵀ (sm_{})", rows, k, n, k, s.cc);
    s.matmul(p, &one, &zero, w.data(), xq + r * k, s.acc.get(), stream);
    w8a8::dequant_epilogue(s.acc.get(), true, xs + r, false, w.scales(), false, bias,
                           static_cast<char*>(y) + size_t(r * ldy) * ybytes, ldy, out_type, rows, n,
                           stream);
  }
  s.last = "cublaslt+epilogue";
}

}  // namespace lowbit::kernels::cuda
