// 8-bit checkpoint weights on the CUDA backend: FP8 checkpoints (methods fp8, modelopt and the
// float-quantized compressed-tensors schemes; quant/fp8_checkpoint.h) and compressed-tensors
// int8 W8A8, uploaded with their stored codes into the W8A8 kernels' representation
// (kernels/cuda/gemm/w8a8_gemm.h); nothing is dequantized and re-quantized.
//
// Checkpoint granularity              GPU representation (codes = the file's bytes)
//   FP8 weight_scale per tensor []      kRowwise, the one scale repeated per row (same values;
//                                       q/k/v with their own scales then stack into one GEMM)
//   FP8 weight_scale per channel        kRowwise, scales as stored ([N, 1] or ModelOpt's [N])
//   FP8 blocks [128, 128]               kBlock128, scales [ceil(N/128), ceil(K/128)] as stored
//   FP8 blocks of another size          no kernel: dequantized on the host to bf16 as the CPU
//                                       does (notice), run by the bf16 kernels
//   int8 channel, symmetric, W8A8       Int8 W8A8: int8 codes [N, K] + scales [N]
// Activations: the kernels quantize them dynamically (FP8 kRowwise and int8: per token; FP8
// kBlock128: per 1×128 group of a token; decode steps of m <= kW8GemvMaxRows run the GEMV with
// bf16 activations). Checkpoints that declare static input scales (HF fp8 "static", ModelOpt
// FP8, compressed-tensors FP8) or no activation quantization (FP8 W8A16) get a one-line notice
// saying so: no kernel takes a static activation scale. Other compressed-tensors int W8A8 / W4A8
// schemes (group scales, asymmetric, act-order, 4-bit) stay on the weight-only wq kernels
// (notice: activations not quantized).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kernels/cuda/gemm/gpu_linear.h"
#include "kernels/cuda/gemm/w8a8_gemm.h"
#include "quant/quant_method.h"

namespace lowbit::models {

// One projection's (or stacked projections') checkpoint weight in a W8A8 kernel's layout.
struct W8StoredWeight {
  enum class Kind : uint8_t { kFp8, kInt8, kBf16 };
  Kind kind = Kind::kFp8;
  kernels::cuda::Fp8Scaling scaling = kernels::cuda::Fp8Scaling::kRowwise;  // kFp8
  int64_t n = 0, k = 0;
  std::vector<uint8_t> codes;  // kFp8 / kInt8: [n, k], the file's bytes (int8 two's complement)
  std::vector<float> scales;   // kFp8: fp8_scale_count(n, k, scaling); kInt8: [n]
  std::vector<uint16_t> bf16;  // kBf16: [n, k] bits of the CPU's dequantized weight
};

// Lines already printed for one model (each notice is printed once per model).
using W8Notices = std::set<std::string>;

// The W8A8 form of `layer` (tensors loaded per method.create_weights), or nullopt when
// `method` is neither an FP8 checkpoint method nor an int method whose scheme maps onto the
// int8 W8A8 kernel (the caller's other paths then apply; an int W8A8 / W4A8 scheme that stays
// weight-only prints its notice here). Validation errors name the layer.
std::optional<W8StoredWeight> read_w8_checkpoint(const quant::LinearLayer& layer,
                                                 const quant::LinearMethod& method,
                                                 W8Notices& notices);

// Whether the weights (all of one kind and scaling, equal k; block-scaled ones with every n
// but the last a multiple of 128) stack row-wise into one weight [Σn, k].
bool w8_stackable(const std::vector<const W8StoredWeight*>& ws);

// The GpuLinear of the weights stacked row-wise (w8_stackable must hold).
kernels::cuda::GpuLinear make_w8_linear(const std::vector<const W8StoredWeight*>& ws,
                                        const std::string& what,
                                        const kernels::cuda::GpuLinearOptions& options,
                                        cudaStream_t stream);

}  // namespace lowbit::models
