#!/usr/bin/env python3
"""Generates tests/fixtures/llama_cpp/kld_reference.json: llama.cpp's KL divergence of the
quantized stories260K files from the F32 model, which `lowbit eval` must reproduce.

Rerun (from the repo root, with llama.cpp built by tools/build-llama-cpp.sh):
    LLAMA_CPP_BIN=$(tools/build-llama-cpp.sh | tail -1) python3 tools/llama_cpp_kld_reference.py
Options: --threads N (default 2), --chunks K (default 16), --ctx N (default 256).
Run with llama.cpp 0.3.36 (llama-cpp-python sdist, commit 0c1e570), threads=2.

What it records, per quantized type (tests/fixtures/llama_cpp/stories260K-<TYPE>.gguf):
    llama-perplexity -m F32 -f TEXT -c CTX --chunks K --kl-divergence-base BASE
    llama-perplexity -m QUANT -f TEXT -c CTX --chunks K --kl-divergence-base BASE --kl-divergence
and parses "Mean KLD", "99.0% KLD", "Same top p" and "Mean PPL(Q)". llama.cpp stores the base
log-probabilities as 16-bit values and runs its own forward pass, so lowbit agrees to within a few
per cent on the KLD, not exactly.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STORIES_F32 = "../shared/models/stories260K/gguf/stories260K-F32.gguf"
TINYSTORIES = "../shared/data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"
QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def run(cmd, expect=None):
    # llama.cpp logs from a background thread; the last lines are sometimes lost at exit, so a
    # run whose output lacks `expect` is repeated.
    for attempt in range(5):
        print("[llama_cpp_kld_reference] " + " ".join(cmd), file=sys.stderr, flush=True)
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stdout + out.stderr)
        text = out.stdout + out.stderr
        if expect is None or re.search(expect, text):
            return text
    sys.exit(f"no '{expect}' in 5 runs of: {' '.join(cmd)}")


def number(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"not found in llama-perplexity output: {pattern}\n{text[-3000:]}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=256)
    args = ap.parse_args()
    bindir = os.environ.get("LLAMA_CPP_BIN")
    if not bindir:
        sys.exit("set LLAMA_CPP_BIN to llama.cpp's bin directory (tools/build-llama-cpp.sh)")
    ppl = os.path.join(bindir, "llama-perplexity")
    common = ["-f", TINYSTORIES, "-c", str(args.ctx), "--chunks", str(args.chunks),
              "-t", str(args.threads)]
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base.kld")
        run([ppl, "-m", STORIES_F32, *common, "--kl-divergence-base", base])
        for t in QUANT_TYPES:
            model = f"tests/fixtures/llama_cpp/stories260K-{t}.gguf"
            out = run([ppl, "-m", model, *common, "--kl-divergence-base", base,
                       "--kl-divergence"], expect=r"Same top p:\s+[0-9.]+")
            entries.append({
                "model": model,
                "kld": number(r"Mean\s+KLD:\s+(-?[0-9.]+)", out),
                "kld_p99": number(r"99\.0%\s+KLD:\s+(-?[0-9.]+)", out),
                "top1_percent": number(r"Same top p:\s+([0-9.]+)", out),
                "ppl": number(r"Mean PPL\(Q\)\s+:\s+([0-9.]+)", out),
            })
    result = {
        "generator": "tools/llama_cpp_kld_reference.py (see its header to rerun)",
        "reference": STORIES_F32,
        "text": TINYSTORIES,
        "n_ctx": args.ctx,
        "chunks": args.chunks,
        "threads": args.threads,
        "entries": entries,
    }
    path = os.path.join(REPO, "tests", "fixtures", "llama_cpp", "kld_reference.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
