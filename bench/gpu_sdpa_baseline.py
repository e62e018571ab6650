# PyTorch SDPA on the decode shapes that gpu_decode_bench times for the paged-attention kernel
# (32 query heads, 8 kv heads, head_dim 128, one query token per sequence, bf16, contiguous KV).
# Run on the GPU machine: python3 bench/gpu_sdpa_baseline.py [--paged bench.log]
# (scripts/gpu-check runs it). With --paged, the attention-only rows of a gpu_decode_bench log
# from the same run are printed beside SDPA's.
import argparse
import re

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


def copy_rate():
    """Device-to-device copy, bytes read + written per second (as gpu_decode_bench counts)."""
    a = torch.empty(1 << 30, device="cuda", dtype=torch.bfloat16).uniform_()
    b = torch.empty_like(a)
    us = time_us(lambda: b.copy_(a), reps=10)
    return 2 * a.numel() * 2 / (us * 1e-6)


def paged_rows(path):
    """{(kv, batch, ctx): us} from the attention-only table of a gpu_decode_bench log."""
    rows = {}
    pat = re.compile(r"^(bf16|fp8_e4m3|fp8_e5m2)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+\d+\s+[\d.]+%")
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                rows[(m[1], int(m[2]), int(m[3]))] = float(m[4])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paged", help="gpu_decode_bench log to print beside SDPA")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--contexts", default="128,4096")
    args = ap.parse_args()
    paged = paged_rows(args.paged) if args.paged else {}
    bw = copy_rate()
    print(f"\nPyTorch SDPA (bf16, contiguous KV, enable_gqa); copy {bw / 1e9:.0f} GB/s")
    print(f"{'batch':>6} {'ctx':>6} {'sdpa us':>9} {'% copy':>7}"
          + (f" {'paged bf16':>10} {'% copy':>7} {'fp8 e4m3':>9} {'vs sdpa':>8}" if paged else ""))
    for batch in map(int, args.batches.split(",")):
        for ctx in map(int, args.contexts.split(",")):
            q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
            us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            bytes_ = 2 * k.numel() * 2
            line = f"{batch:>6} {ctx:>6} {us:>9.1f} {100 * bytes_ / (us * 1e-6) / bw:>6.1f}%"
            pb = paged.get(("bf16", batch, ctx))
            p8 = paged.get(("fp8_e4m3", batch, ctx))
            if pb is not None and p8 is not None:
                line += (f" {pb:>10.1f} {100 * bytes_ / (pb * 1e-6) / bw:>6.1f}%"
                         f" {p8:>9.1f} {us / pb:>7.2f}x")
            print(line)
            del q, k, v


if __name__ == "__main__":
    main()
