#!/usr/bin/env python3
"""Per-kernel time of profiled decode steps, from an ncu CSV.

  ncu --profile-from-start off --metrics gpu__time_duration.sum --cache-control none \
      --clock-control none --csv --page raw \
      build/bin/gpu_decode_bench --batches 1 --contexts 128 --weights int4 --kv bf16 \
      --steps 4 --profile-steps 2 --attention-batches 1 > step.csv
  bench/ncu_step_summary.py step.csv 2      # 2 = the --profile-steps value

Prints, per kernel (template arguments dropped), the calls and microseconds per step and the
share of the summed kernel time; compare the total with the step time the bench prints (the
difference is launch gaps and host work).
"""
import csv
import re
import sys
from collections import defaultdict


def short_name(name: str) -> str:
    name = re.sub(r"\(anonymous namespace\)::|<?unnamed>::", "", name)
    name = re.sub(r"\(.*", "", name)  # drop the argument list
    depth, out = 0, []
    for ch in name:  # drop template arguments
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).split("::")[-1].strip()


def main() -> None:
    path, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rows = list(csv.reader(l for l in open(path) if l.startswith('"')))
    header = rows[0]
    name_col = header.index("Kernel Name")
    time_col = header.index("gpu__time_duration.sum")
    unit = rows[1][time_col] if len(rows) > 1 else "nsecond"  # second row: units
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
    total, calls = defaultdict(float), defaultdict(int)
    for r in rows[2:]:
        try:
            t = float(r[time_col].replace(",", "")) * scale
        except ValueError:
            continue
        k = short_name(r[name_col])
        total[k] += t
        calls[k] += 1
    all_us = sum(total.values())
    print(f"{'kernel':40s} {'calls/step':>10s} {'us/step':>10s} {'us/call':>9s} {'share':>7s}")
    for k in sorted(total, key=total.get, reverse=True):
        print(f"{k:40s} {calls[k] / steps:10.1f} {total[k] / steps:10.1f} "
              f"{total[k] / calls[k]:9.2f} {100 * total[k] / all_us:6.1f}%")
    print(f"{'sum of kernel times':40s} {sum(calls.values()) / steps:10.1f} {all_us / steps:10.1f}")


if __name__ == "__main__":
    main()
