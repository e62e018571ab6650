// How CudaLlamaModel reads a checkpoint's projections (internal to models/llama_cuda.cpp):
// each projection as its quantization method presents it, the rule for stacking q/k/v or
// gate/up weight-only projections into one weight, dense tensors as floats, and random codes
// for the benchmarks' synthetic models.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/wq_linear.h"
#include "models/w8_checkpoint_cuda.h"
#include "models/weight_source.h"
#include "quant/quant_method.h"
#include "quant/weight_only_method.h"

namespace lowbit::models::llama_weights {

// "model.layers.<i>.<rest>"
std::string layer_name(int64_t i, const char* rest);

// Values of a checkpoint tensor as fp32, after checking its shape (F32/F16/BF16 and the GGUF
// block formats the CPU decodes).
std::vector<float> tensor_floats(const WeightSource& src, const std::string& hf_name,
                                 const std::vector<int64_t>& shape);

void upload_bf16(__nv_bfloat16* dst, const std::vector<float>& v);
void upload_f32(float* dst, const std::vector<float>& v);

// One projection of a checkpoint (q_proj, gate_proj, ...) as its method presents it: dense
// floats read at upload, an online-fp8 weight (dense floats quantized on the GPU), a
// weight-only integer weight decoded on the host, or a stored 8-bit W8A8 weight (FP8
// checkpoints, int8 W8A8; models/w8_checkpoint_cuda.h).
struct Projection {
  enum Kind { kDense, kFp8, kWq, kW8 };
  std::string prefix;  // "model.layers.0.self_attn.q_proj"
  int64_t n = 0, k = 0;
  Kind kind = kDense;
  quant::DecodedWeight wq;           // kWq
  std::optional<W8StoredWeight> w8;  // kW8
};

// `tensor_prefix` names the stored tensors when they differ from the layer (a tied lm_head reads
// model.embed_tokens.weight); empty = `prefix`. Methods without a CUDA path fail here.
Projection read_projection(const WeightSource& src, const quant::QuantConfig& qc,
                           const std::string& prefix, int64_t n, int64_t k, bool has_bias,
                           W8Notices& notices, const std::string& tensor_prefix = {});

// The symmetric default zero of a weight-only kind (what a missing zeros array means).
float default_zero(kernels::cpu::WqKind kind);

// Zeros that all equal the symmetric default are dropped (as the CPU's finish() does): the
// symmetric kernels read no zeros.
void drop_default_zeros(quant::DecodedWeight& w);

// Whether the weight-only projections can be stacked into one weight [Σn, k]: same kind,
// k, group size and act-order permutation (their codes / scales / zeros rows then concatenate).
bool stackable(const std::vector<Projection>& ps);
quant::DecodedWeight stack_rows(const std::vector<Projection>& ps);

// Random codes for benchmarks: int4 in groups of 128 (or per channel when 128 does not divide
// k), int8 per channel; scales such that weights span about ±sqrt(3/k), like the bf16 model.
quant::DecodedWeight random_codes(kernels::cpu::WqKind kind, int64_t n, int64_t k, uint64_t seed);

}  // namespace lowbit::models::llama_weights
