#!/usr/bin/env python3
"""Is a perplexity gap between two runs systematic, or noise? Paired per-chunk statistics.

llama-perplexity and `lowbit perplexity` print the running estimate after every chunk
([1]x,[2]y,...; the reference fixture keeps them as per_chunk). With n scored tokens per chunk
(the same in every chunk) the running estimate after chunk c is exp(sum of the first c chunk
NLLs / (c n)), so each chunk's mean NLL is recovered exactly:
    nll_c = c ln P_c - (c - 1) ln P_{c-1}.
Two runs over the same chunks give paired differences d_c = nll_c(b) - nll_c(a). Their mean is
ln(P_b / P_a); their standard error se = sd(d) / sqrt(chunks) says how far apart two runs land
when nothing differs systematically, only last-bit arithmetic (which, on a model whose
activations are quantized to Q8 blocks, flips roundings and decorrelates the per-token NLLs).
Printed per run: mean d, sd, se, t = mean / se, and the 1-sigma width of the final perplexity
gap, P_a * se. |t| well below 2 means the gap is within what arithmetic noise produces.

Usage:
    tools/perplexity_chunk_stats.py REF.log OTHER.log [OTHER2.log ...]
    tools/perplexity_chunk_stats.py --fixture N OTHER.log ...   # reference.json perplexity[N]
    tools/perplexity_chunk_stats.py --fixture Q4_1 OTHER.log    # its quantized stories260K entry
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def running_estimates(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    values = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", text)]
    if not values:
        sys.exit(f"{path}: no running estimates ([1]x,[2]y,...) found")
    return values


def chunk_nlls(running):
    nll, prev = [], 0.0
    for c, p in enumerate(running, start=1):
        total = c * math.log(p)
        nll.append(total - prev)
        prev = total
    return nll


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ref", nargs="?", help="reference log (or use --fixture)")
    ap.add_argument("others", nargs="*")
    ap.add_argument("--fixture", help="index into reference.json's perplexity list, or a type "
                    "of its quantized list (Q4_1, ...)")
    a = ap.parse_args()
    others = a.others
    if a.fixture is not None:
        with open(os.path.join(REPO, "tests/fixtures/llama_cpp/reference.json")) as f:
            fixture = json.load(f)
        if a.fixture.isdigit():
            entry = fixture["perplexity"][int(a.fixture)]
        else:
            entry = next((q["perplexity"] for q in fixture["quantized"] if q["type"] == a.fixture),
                         None)
            if entry is None:
                sys.exit(f"reference.json has no quantized entry of type {a.fixture}")
        ref, ref_name = entry["per_chunk"], f"fixture[{a.fixture}] {entry['command']}"
        others = ([a.ref] if a.ref else []) + others
    else:
        if not a.ref:
            ap.error("give a reference log or --fixture N")
        ref, ref_name = running_estimates(a.ref), a.ref
    print(f"reference: {ref_name}: PPL {ref[-1]:.4f} after {len(ref)} chunks")
    ref_nll = chunk_nlls(ref)
    for path in others:
        run = running_estimates(path)
        n = min(len(run), len(ref))
        if n < 2:
            sys.exit(f"{path}: {n} common chunks; need 2 or more")
        d = [b - r for b, r in zip(chunk_nlls(run[:n]), ref_nll[:n])]
        mean, sd = statistics.fmean(d), statistics.stdev(d)
        se = sd / math.sqrt(n)
        print(f"{path}: PPL {run[n - 1]:.4f} (ref {ref[n - 1]:.4f}, gap {run[n - 1] - ref[n - 1]:+.4f})"
              f"  per-chunk dNLL mean {mean:+.5f} sd {sd:.5f} se {se:.5f} t {mean / se:+.2f}"
              f"  1-sigma PPL gap {ref[n - 1] * se:.4f}  chunks {n}")


if __name__ == "__main__":
    main()
