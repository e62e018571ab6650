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
  DeviceBuffer gemm_scales;  // block scales in the layout cuBLASLt reads (block128 only)
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

#ifdef __CUDACC__
#define LOWBIT_W8A8_HD __host__ __device__
#else
#define LOWBIT_W8A8_HD
#endif

// How the block-scale tensors handed to cuBLASLt (VEC128 for x, BLK128x128 for W) are laid
// out: which dimension is outer, and whether the inner one is padded to a multiple of 4 (16
// bytes). The weight keeps its checkpoint layout (row-major [n/128, k/128]) in scales(); a copy
// in this layout goes to cuBLASLt. The BlockScaleLayoutProbe test measures which layout
// cuBLASLt reads; LOWBIT_W8A8_BLOCK_LAYOUT="abcd" (digits 0/1 for the four fields, in order)
// overrides the default.
// Measured on H100, cuBLASLt 13.0 (BlockScaleLayoutProbe, 16 layouts at m = 64, n = k = 384):
// x scales group-major [k/128, m], W scales [n/128, k/128] with each row padded to a multiple
// of 4 (LOWBIT_W8A8_BLOCK_LAYOUT=1001; 1101 reads the same while m % 4 == 0). Whether x's
// rows are padded shows only for m % 4 != 0, so those m take the weight-only fallback.
struct BlockScaleLayout {
  bool act_group_major = true;  // x scales [k/128, m] (true) or [m, k/128]
  bool act_pad4 = false;
  bool w_n_major = false;  // W scales [k/128, n/128] (true) or [n/128, k/128]
  bool w_pad4 = true;
};
BlockScaleLayout block_scale_layout();
void set_block_scale_layout(const BlockScaleLayout& layout);  // tests probe them all

LOWBIT_W8A8_HD inline int64_t pad4(int64_t v, bool pad) { return pad ? (v + 3) / 4 * 4 : v; }

// Index of the scale of token `row`, group `g` (of kb) among m tokens.
LOWBIT_W8A8_HD inline int64_t act_scale_index(int64_t row, int64_t g, int64_t m, int64_t kb,
                                              BlockScaleLayout l) {
  return l.act_group_major ? g * pad4(m, l.act_pad4) + row : row * pad4(kb, l.act_pad4) + g;
}
LOWBIT_W8A8_HD inline int64_t act_scale_count(int64_t m, int64_t kb, BlockScaleLayout l) {
  return l.act_group_major ? kb * pad4(m, l.act_pad4) : m * pad4(kb, l.act_pad4);
}
LOWBIT_W8A8_HD inline int64_t weight_scale_index(int64_t nb_i, int64_t kb_i, int64_t nb, int64_t kb,
                                                 BlockScaleLayout l) {
  return l.w_n_major ? kb_i * pad4(nb, l.w_pad4) + nb_i : nb_i * pad4(kb, l.w_pad4) + kb_i;
}
LOWBIT_W8A8_HD inline int64_t weight_scale_count(int64_t nb, int64_t kb, BlockScaleLayout l) {
  return l.w_n_major ? kb * pad4(nb, l.w_pad4) : nb * pad4(kb, l.w_pad4);
}

// Activation quantization with 1×128 groups, scales in `layout`.
void quantize_act_block128(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* q,
                           float* scales, BlockScaleLayout layout, cudaStream_t stream);

// Copies row-major [nb, kb] block scales into `layout` (dst has weight_scale_count floats;
// padding is set to 1).
void relayout_weight_block_scales(const float* src, float* dst, int64_t nb, int64_t kb,
                                  BlockScaleLayout layout, cudaStream_t stream);

// y[i, :] = x[i, :]·Wᵀ for i < m <= kW8GemvChunkRows with 8-bit W read directly (bf16 x, fp32
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
