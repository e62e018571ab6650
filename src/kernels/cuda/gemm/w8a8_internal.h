// Shared between w8a8_gemm.cu (kernels, weights) and w8a8_cublaslt.cpp (W8A8Runner): the
// weights' storage and the launchers of the own kernels. Not part of the public API.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"

namespace lowbit::kernels::cuda {

struct Fp8GpuWeight::Impl {
  int64_t n = 0, k = 0;
  Fp8Scaling scaling = Fp8Scaling::kPerTensor;
  DeviceBuffer q;       // e4m3 [n, k]
  DeviceBuffer scales;  // fp32: scale_count values (+1 slot for the amax of per-tensor)
  int64_t scale_count = 0;
};

struct Int8GpuWeight::Impl {
  int64_t n = 0, k = 0;
  DeviceBuffer q;       // int8 [n, k]
  DeviceBuffer scales;  // fp32 [n]
};

namespace w8a8 {

inline constexpr float kFp8Max = 448.0f;  // largest finite e4m3
inline constexpr float kInt8Max = 127.0f;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Layout of the 1×128 activation scales handed to cuBLASLt's VEC128 mode:
// token-major [m, k/128] (false) or group-major [k/128, m] (true). The quantizer writes the
// chosen one; the weight's 128×128 scales are always row-major [n/128, k/128].
bool block_act_scales_group_major();
void set_block_act_scales_group_major(bool group_major);  // tests probe both

// Activation quantization writing the 1×128 scales in either layout (see above); group-major
// is per chunk of chunk_rows tokens (chunk c: [k/128, rows of c] at offset c·chunk_rows·k/128)
// so that each row chunk of a GEMM sees its own contiguous scale tensor.
void quantize_act_block128(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* q,
                           float* scales, bool group_major, int64_t chunk_rows,
                           cudaStream_t stream);

// y[i, :] = x[i, :]·Wᵀ for i < m <= kW8GemvMaxRows with 8-bit W read directly (bf16 x, fp32
// accumulation). is_fp8: e4m3 else int8. scaling: per-tensor (scales[0]), rowwise (scales[n])
// or block (scales[n/128, k/128]).
void w8_gemv(const void* w, bool is_fp8, const float* scales, Fp8Scaling scaling,
             const __nv_bfloat16* x, int64_t ldx, const float* bias, void* y, int64_t ldy,
             OutType out_type, int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// y[i, j] = acc[i, j]·row_scale(i)·col_scale(j) + bias[j] for i < m, j < n; acc int32
// (acc_is_int) or fp32, row stride n. row_scales has m values (or 1 if row_scalar),
// col_scales n values (or 1 if col_scalar).
void dequant_epilogue(const void* acc, bool acc_is_int, const float* row_scales, bool row_scalar,
                      const float* col_scales, bool col_scalar, const float* bias, void* y,
                      int64_t ldy, OutType out_type, int64_t m, int64_t n, cudaStream_t stream);

// y[i, j] = y[i, j]·row_scales[i]·col_scales[j] (+ bias[j]), in place.
void scale_inplace(void* y, int64_t ldy, OutType out_type, const float* row_scales,
                   const float* col_scales, const float* bias, int64_t m, int64_t n,
                   cudaStream_t stream);

// Rows [r0, r0 + rows) of the fp8 weight q [n, k] with its scales → bf16 out [rows, k].
void dequant_fp8_rows(const uint8_t* q, const float* scales, Fp8Scaling scaling, int64_t r0,
                      int64_t rows, int64_t k, __nv_bfloat16* out, cudaStream_t stream);

// y[i, j] += bias[j].
void add_bias_rows(void* y, int64_t ldy, OutType out_type, const float* bias, int64_t m, int64_t n,
                   cudaStream_t stream);

}  // namespace w8a8
}  // namespace lowbit::kernels::cuda
