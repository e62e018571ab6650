// Which GGML type each tensor of a model gets when it is written as a GGUF of a given file type
// ("Q4_K_M", "Q8_0", ...): llama-quantize's rules (llama.cpp src/llama-quant.cpp) restated.
//   * Only tensors of >= 2 dims whose name ends in "weight" are quantized; norms (*_norm.weight),
//     ffn_gate_inp (MoE routers), position embeddings, ssm_conv1d, ... keep their stored type.
//   * A K/IQ file type is a mixture: the default type plus bumps by tensor role (output and
//     tied token embeddings -> Q6_K; attn_v / ffn_down of the first, last and every third
//     layer -> Q6_K for Q4_K_M; ...), see choose_tensor_types().
//   * Rows not a multiple of the block size fall back: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,
//     Q5_K -> Q5_1, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL; when even 32 does not divide, F16.
// Tensors are visited in llama-quantize's order (layer number, then name) because some rules
// count attn_v / ffn_down tensors as they go.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace lowbit::io {

struct GgufFileType {
  std::string_view name;  // "Q4_K_M"
  uint32_t llama_ftype;   // general.file_type (llama.h's llama_ftype)
  DType default_type;     // the type most tensors get
  bool needs_imatrix;     // some tensors need an importance matrix (tensor_requires_imatrix)
};

// Looks a file type up by name (case-insensitive); nullopt when lowbit cannot write it.
std::optional<GgufFileType> find_gguf_file_type(std::string_view name);
// "F32, F16, BF16, Q4_0, ..." for messages and --help.
std::string gguf_file_type_list();

// llama-quantize's tensor_requires_imatrix: whether a tensor written as `to` in a file of
// `ftype` needs importance weights (IQ1_*, IQ2_*, IQ3_XXS, and Q2_K in Q2_K_S files; never
// token_embd / per_layer_token_embd / output). llama-quantize refuses such a tensor without one.
bool tensor_requires_imatrix(std::string_view tensor_name, DType to, const GgufFileType& ftype);

// What the rules need to know about the model (from the GGUF metadata).
struct ModelShape {
  std::string arch;   // general.architecture
  int n_layer = 0;    // <arch>.block_count
  int n_head = 0;     // <arch>.attention.head_count
  int n_head_kv = 0;  // <arch>.attention.head_count_kv (n_head when absent)
  int n_expert = 0;   // <arch>.expert_count (0 when absent)
};

struct TensorDesc {
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order: shape.back() is the row length (GGUF ne[0])
  DType dtype;                 // stored type
};

struct TensorChoice {
  DType type;        // type to write
  bool quantizable;  // false: kept as stored (norms, 1-D tensors, ...)
  std::string note;  // non-empty when a fallback was taken ("ncols 172 not divisible by 256 ...")
};

// The llama-quantize visiting order: tensors of "blk.N." by N, others first (-1), then name.
std::vector<size_t> llama_quantize_order(const std::vector<TensorDesc>& tensors);

// llama-quantize's --output-tensor-type / --token-embedding-type: output.weight (and tied
// token embeddings) / token_embd.weight get this type. An explicit token-embedding or output
// type is taken as is (no fallback), as llama-quantize does.
struct TypeOverrides {
  std::optional<DType> output;
  std::optional<DType> token_embd;
};

// Target types of `tensors` (result index = input index). pure: every quantizable tensor gets
// the default type (llama-quantize --pure), fallbacks still apply.
std::vector<TensorChoice> choose_tensor_types(const std::vector<TensorDesc>& tensors,
                                              const ModelShape& model, const GgufFileType& ftype,
                                              bool has_imatrix, bool pure,
                                              const TypeOverrides& overrides = {});

}  // namespace lowbit::io
