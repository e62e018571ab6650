// Attention of query tokens over a paged KV cache (decode and prefill alike): query token t of
// sequence token_seq[t] attends to positions 0 .. ctx_lens[t] - 1 of its sequence (causal
// prefill gives token at position p a context of p + 1). GQA: num_heads / num_kv_heads query
// heads share one kv head. KV in bf16 or FP8 (e4m3 / e5m2) with per-layer or per-head scales.
//
// Work split (flash-decoding): one block of 4 warps per (token, kv head, chunk of query heads
// (up to 8 for bf16, 4 for FP8), split of the context); each warp streams its share of the
// split through a cp.async ring with its own running softmax; with more than one split,
// partial results go to a workspace and a second kernel merges them. The KV block size must
// be a power of two. Caches of head_dim 128 (block size >= 16) run a tensor-core kernel that
// fills its ring with bulk copies on Hopper (paged_attention_mma.cu; LOWBIT_ATTENTION_MMA=0 /
// LOWBIT_ATTENTION_BULK=0 turn either off for A/B runs).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/attention/paged_kv.h"

namespace lowbit::kernels::cuda {

struct AttentionArgs {
  const __nv_bfloat16* q = nullptr;  // [n, q_stride]: head h at q + t·q_stride + h·head_dim
  int64_t q_stride = 0;
  __nv_bfloat16* out = nullptr;  // [n, num_heads · head_dim]
  int64_t n = 0;
  int32_t num_heads = 0;
  float scale = 0;                        // softmax scale, usually 1/sqrt(head_dim)
  const int32_t* token_seq = nullptr;     // [n] row of block_tables
  const int32_t* ctx_lens = nullptr;      // [n] positions each query attends to (>= 1)
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  int32_t num_splits = 1;      // context splits per (token, head); 1 = no workspace
  float* workspace = nullptr;  // attention_workspace_floats(n, num_heads, head_dim, splits)
};

// Floats of workspace needed with num_splits > 1.
int64_t attention_workspace_floats(int64_t n, int64_t num_heads, int64_t head_dim,
                                   int64_t num_splits);

// A split count that fills one wave of the GPU (2 blocks on each of `sms` multiprocessors)
// for contexts up to max_ctx, each split at least 64 positions long.
int32_t attention_splits(int64_t n, int64_t num_heads, int64_t num_kv_heads, int64_t max_ctx,
                         int sms);

// Checks the shapes (head_dim a multiple of 8, at most 256) and launches.
void paged_attention(const AttentionArgs& args, const PagedKvLayer& cache, cudaStream_t stream);

}  // namespace lowbit::kernels::cuda
