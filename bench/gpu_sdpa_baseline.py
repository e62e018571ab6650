# PyTorch SDPA on the decode shapes that gpu_decode_bench times for the paged-attention kernel
# (32 query heads, 8 kv heads, head_dim 128, one query token per sequence, bf16, contiguous KV).
# Run on the GPU machine: python3 bench/gpu_sdpa_baseline.py  (scripts/gpu-check runs it)
import torch
import torch.nn.functional as F


def time_us(fn, reps=50):
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return sorted(times)[len(times) // 2]


print("\nPyTorch SDPA (bf16, contiguous KV, enable_gqa), us per call:")
print(f"{'batch':>6} {'ctx':>6} {'us':>10}")
for batch in (1, 16):
    for ctx in (128, 4096):
        q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
        us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        print(f"{batch:>6} {ctx:>6} {us:>10.1f}")
