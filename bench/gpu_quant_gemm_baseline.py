# PyTorch baselines for bench/gpu_wq_gemm_bench.cpp on the same shapes: torch.matmul bf16
# (cuBLAS), torch._weight_int4pack_mm (tinygemm W4A16, group 128, bf16) and torch._int_mm
# (int8 x int8, m > 16 only). Timed like the lowbit bench: N calls with the weights rotated over
# copies totalling >= 256 MB (5x the 50 MB L2), captured in one CUDA graph; median per call over
# replays timed with CUDA events. Random data.
# Writes CSV "op,k,n,m,us" (ops bf16, int4pack_mm, int_mm) to --out (and stdout).
#
#   python3 bench/gpu_quant_gemm_baseline.py [--quick] [--out torch.csv] [--shapes KxN,...] [--ms 1,4]
import argparse
import math

import torch

SHAPES = [(4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096),
          (8192, 10240), (8192, 8192), (8192, 57344), (28672, 8192)]
MS = [1, 4, 16, 32, 64, 128, 256, 1024, 4096]
QUICK_SHAPES = [(4096, 6144), (14336, 4096), (8192, 57344)]
QUICK_MS = [1, 16, 64, 256, 4096]
ROTATE = 256e6


def graph_us(fn, copies, est_us, reps):
    """Median µs per call of fn(i), i = 0..calls-1, captured in one CUDA graph."""
    calls = int(min(400, max(copies, 2000 / max(est_us, 1.0))))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(2):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i)
    g.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    del g
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--shapes", default="", help="KxN,... (default: the bench's list)")
    ap.add_argument("--ms", default="", help="m values, comma-separated")
    args = ap.parse_args()
    shapes, ms = (QUICK_SHAPES, QUICK_MS) if args.quick else (SHAPES, MS)
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.ms:
        ms = [int(v) for v in args.ms.split(",")]
    rows = ["op,k,n,m,us"]
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    for k, n in shapes:
        rot16 = max(1, math.ceil(ROTATE / (n * k * 2)))
        rot4 = max(1, math.ceil(ROTATE / (n * k // 2)))
        rot8 = max(1, math.ceil(ROTATE / (n * k)))
        w16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.05 for _ in range(rot16)]
        w4, sz = None, None
        try:
            codes = torch.randint(0, 256, (n, k // 2), device="cuda", dtype=torch.uint8)
            packed = torch._convert_weight_to_int4pack(codes, 8)
            w4 = [packed.clone() for _ in range(rot4)]
            sz = torch.rand(k // 128, n, 2, device="cuda", dtype=torch.bfloat16) * 0.01 + 0.005
            del codes
        except (RuntimeError, AttributeError) as e:
            print(f"# _weight_int4pack_mm k={k} n={n}: {str(e).splitlines()[0]}")
        wi8 = [torch.randint(-127, 128, (n, k), device="cuda", dtype=torch.int8)
               for _ in range(rot8)]
        for m in ms:
            first = len(rows)
            flops = 2.0 * m * n * k
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            est = max(flops / 5e8, n * k * 2 / 3e6)
            us = graph_us(lambda i: torch.matmul(x, w16[i % rot16].t()), rot16, est, args.reps)
            rows.append(f"bf16,{k},{n},{m},{us:.2f}")
            if w4 is not None:
                try:
                    us = graph_us(lambda i: torch._weight_int4pack_mm(x, w4[i % rot4], 128, sz),
                                  rot4, max(flops / 5e8, n * k / 2 / 3e6), args.reps)
                    rows.append(f"int4pack_mm,{k},{n},{m},{us:.2f}")
                except RuntimeError as e:
                    print(f"# _weight_int4pack_mm k={k} n={n} m={m}: {str(e).splitlines()[0]}")
            if m > 16:
                xi = torch.randint(-127, 128, (m, k), device="cuda", dtype=torch.int8)
                try:
                    us = graph_us(lambda i: torch._int_mm(xi, wi8[i % rot8].t()), rot8,
                                  max(flops / 5e8, n * k / 3e6), args.reps)
                    rows.append(f"int_mm,{k},{n},{m},{us:.2f}")
                except RuntimeError as e:
                    print(f"# _int_mm k={k} n={n} m={m}: {str(e).splitlines()[0]}")
            print("\n".join(rows[first:]), flush=True)
        del w16, w4, wi8
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
