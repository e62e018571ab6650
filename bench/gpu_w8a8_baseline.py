# PyTorch baselines for bench/gpu_w8a8_bench.cpp on the same shapes: torch.matmul bf16
# (cuBLAS), torch._scaled_mm fp8 e4m3 per-tensor and rowwise, torch._int_mm int8. Times are
# the GEMM alone (activations pre-quantized, no scale epilogue for _int_mm), median over
# CUDA-event-timed batches of 10 back-to-back calls, weights rotated over >= 256 MB. _scaled_mm needs m % 16 == 0: smaller
# m is padded to 16 rows (what vLLM does), and _int_mm needs m > 16: those rows say so.
# Writes CSV "op,k,n,m,us" to --out (and stdout).
#
#   python3 bench/gpu_w8a8_baseline.py [--quick] [--out torch.csv]
import argparse
import math

import torch

SHAPES = [(4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096),
          (8192, 10240), (8192, 8192), (8192, 57344), (28672, 8192)]
MS = [1, 4, 16, 32, 64, 128, 256, 1024, 4096]
QUICK_SHAPES = [(4096, 6144), (14336, 4096), (8192, 57344)]
QUICK_MS = [1, 4, 16, 128, 1024, 4096]


def median_us(fn, trials, batch=10):
    """us per call: median over event-timed batches of back-to-back calls (as the C++ bench)."""
    for i in range(3):
        fn(i)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times, nxt = [], 3
    for _ in range(trials):
        start.record()
        for _ in range(batch):
            fn(nxt)
            nxt += 1
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / batch)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    shapes, ms, reps = (QUICK_SHAPES, QUICK_MS, min(args.reps, 5)) if args.quick else (
        SHAPES, MS, args.reps)
    rows = ["op,k,n,m,us"]
    fp8 = torch.float8_e4m3fn
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    for k, n in shapes:
        rot16 = max(1, math.ceil(256e6 / (n * k * 2)))
        rot8 = max(1, math.ceil(256e6 / (n * k)))
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.05
        w16 = [w.clone() for _ in range(rot16)]
        w8 = [(w * 100).to(fp8) for _ in range(rot8)]  # [n, k]; .t() is column-major [k, n]
        wi8 = [torch.randint(-127, 128, (n, k), device="cuda", dtype=torch.int8)
               for _ in range(rot8)]
        del w
        for m in ms:
            first = len(rows)
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            us = median_us(lambda i: torch.matmul(x, w16[i % rot16].t()), reps)
            rows.append(f"bf16,{k},{n},{m},{us:.2f}")
            mp = max(16, (m + 15) // 16 * 16)
            xq = torch.randn(mp, k, device="cuda").to(fp8)
            one = torch.ones((), device="cuda")
            try:
                us = median_us(lambda i: torch._scaled_mm(xq, w8[i % rot8].t(), scale_a=one,
                                                          scale_b=one, out_dtype=torch.bfloat16),
                               reps)
                rows.append(f"scaled_mm_tensor,{k},{n},{m},{us:.2f}")
            except RuntimeError as e:
                print(f"# scaled_mm per-tensor k={k} n={n} m={m}: {str(e).splitlines()[0]}")
            sa = torch.rand(mp, 1, device="cuda") + 0.5
            sb = torch.rand(1, n, device="cuda") + 0.5
            try:
                us = median_us(lambda i: torch._scaled_mm(xq, w8[i % rot8].t(), scale_a=sa,
                                                          scale_b=sb, out_dtype=torch.bfloat16),
                               reps)
                rows.append(f"scaled_mm_row,{k},{n},{m},{us:.2f}")
            except RuntimeError as e:
                print(f"# scaled_mm rowwise k={k} n={n} m={m}: {str(e).splitlines()[0]}")
            if m > 16:
                xi = torch.randint(-127, 128, (m, k), device="cuda", dtype=torch.int8)
                try:
                    us = median_us(lambda i: torch._int_mm(xi, wi8[i % rot8].t()), reps)
                    rows.append(f"int_mm,{k},{n},{m},{us:.2f}")
                except RuntimeError as e:
                    print(f"# _int_mm k={k} n={n} m={m}: {str(e).splitlines()[0]}")
            print("\n".join(rows[first:]), flush=True)
        del w16, w8, wi8
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
