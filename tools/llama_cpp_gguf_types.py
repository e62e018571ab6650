#!/usr/bin/env python3
"""Generates tests/fixtures/llama_cpp/gguf_types.json (+ tests/fixtures/llama_cpp/types/*.gguf):
stories260K quantized by llama-quantize into every type it offers, with llama.cpp's perplexity
and greedy tokens for each, for tests/models/llama_cpp_gguf_types_test.cpp.

Rerun (from the repo root; llama.cpp built by tools/build-llama-cpp.sh, ~20 min, once):
    LLAMA_CPP_BIN=~/.cache/lowbit/llama.cpp/0.3.36/bin python3 tools/llama_cpp_gguf_types.py \
        [--only Q4_K_M IQ2_XXS ...]      # default: every variant below
Helpers (perplexity parsing, greedy runner) are shared with tools/llama_cpp_reference.py.

stories260K rows are 64 (and ffn_down's 172) elements long: llama-quantize can only store them
in 32-element block types, so for K / IQ / TQ mixes it falls back per tensor (Q4_K -> Q5_0,
IQ* -> IQ4_NL, ..., 172-long rows -> F16 etc.); the JSON records the type every tensor got.
To exercise the 32-element non-linear types directly, IQ4_NL and MXFP4 are also made with
--pure / --tensor-type. The IQ / Q2_K_S mixes use an importance matrix computed by
llama-imatrix on the TinyStories text. Identical output files (same sha256) are stored once.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp_reference as ref  # noqa: E402

REPO = ref.REPO
FIXDIR = os.path.join(REPO, "tests", "fixtures", "llama_cpp")
TYPEDIR = os.path.join(FIXDIR, "types")
MAX_FIXTURE_BYTES = 400 * 1024

# (name, llama-quantize arguments before IN OUT, ftype). Q1_0 / Q2_0 / NVFP4 are left out:
# lowbit's DType has no id for them yet.
IMAT = "@imatrix"
VARIANTS = [
    ("Q2_K", [], "Q2_K"), ("Q2_K_S", [IMAT], "Q2_K_S"), ("Q3_K_S", [], "Q3_K_S"),
    ("Q3_K_M", [], "Q3_K_M"), ("Q3_K_L", [], "Q3_K_L"), ("Q4_K_S", [], "Q4_K_S"),
    ("Q4_K_M", [], "Q4_K_M"), ("Q5_K_S", [], "Q5_K_S"), ("Q5_K_M", [], "Q5_K_M"),
    ("Q6_K", [], "Q6_K"), ("IQ1_S", [IMAT], "IQ1_S"), ("IQ1_M", [IMAT], "IQ1_M"),
    ("IQ2_XXS", [IMAT], "IQ2_XXS"), ("IQ2_XS", [IMAT], "IQ2_XS"), ("IQ2_S", [IMAT], "IQ2_S"),
    ("IQ2_M", [IMAT], "IQ2_M"), ("IQ3_XXS", [IMAT], "IQ3_XXS"), ("IQ3_XS", [IMAT], "IQ3_XS"),
    ("IQ3_S", [IMAT], "IQ3_S"), ("IQ3_M", [IMAT], "IQ3_M"), ("IQ4_XS", [IMAT], "IQ4_XS"),
    ("IQ4_NL", [IMAT], "IQ4_NL"), ("IQ4_NL_pure", [IMAT, "--pure"], "IQ4_NL"),
    ("TQ1_0", [], "TQ1_0"), ("TQ2_0", [], "TQ2_0"), ("MXFP4_MOE", [], "MXFP4_MOE"),
    ("MXFP4_all", ["--pure", "--tensor-type", "attn=mxfp4", "--tensor-type", "ffn_gate=mxfp4",
                   "--tensor-type", "ffn_up=mxfp4", "--token-embedding-type", "mxfp4"], "Q8_0"),
    ("F16", [], "F16"), ("BF16", [], "BF16"),
]
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
                   9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
                   15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
                   20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 30: "BF16",
                   34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0", 42: "Q2_0"}


def tensor_types(path):
    """{tensor name: ggml type name} in file order, via the gguf package's reader."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    return {t.name: GGML_TYPE_NAMES.get(int(t.tensor_type), str(int(t.tensor_type)))
            for t in r.tensors}


CHUNKS = 16  # of 256 tokens (a multiple of llama-perplexity's 8 sequences per batch: with 20 it
# scores 19 and prints no final estimate); the test uses the same --chunks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="variant names to make (default: all)")
    args_ns = ap.parse_args()
    variants = [v for v in VARIANTS if not args_ns.only or v[0] in args_ns.only]
    bin_dir = os.environ.get("LLAMA_CPP_BIN") or os.path.expanduser(
        "~/.cache/lowbit/llama.cpp/0.3.36/bin")
    threads = 2
    version_file = os.path.join(os.path.dirname(bin_dir), "VERSION")
    version = open(version_file).read().strip().splitlines() if os.path.exists(version_file) else []
    work = os.path.join(os.path.dirname(bin_dir), "quantized-types")
    os.makedirs(work, exist_ok=True)
    os.makedirs(TYPEDIR, exist_ok=True)

    imatrix = os.path.join(work, "stories260K.imatrix.gguf")
    ref.run([os.path.join(bin_dir, "llama-imatrix"), "-m", ref.STORIES_F32, "-f", ref.TINYSTORIES,
             "-c", "256", "--chunks", "32", "-t", str(threads), "-o", imatrix])

    exe = ref.build_greedy(bin_dir)
    out = {"generator": "tools/llama_cpp_gguf_types.py (see its header to rerun)",
           "llama_cpp": version, "threads": threads,
           "imatrix": f"llama-imatrix -m {ref.STORIES_F32} -f {ref.TINYSTORIES} -c 256 --chunks 32",
           "models": []}
    stored = {}  # sha256 -> repo-relative path
    for name, extra, ftype in variants:
        tmp = os.path.join(work, f"stories260K-{name}.gguf")
        args = [a for a in extra]
        if IMAT in args:
            i = args.index(IMAT)
            args[i:i + 1] = ["--imatrix", imatrix]
        ref.run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize"] + args +
                [ref.STORIES_F32, tmp, ftype, str(threads)])
        digest = ref.sha256(tmp)
        size = os.path.getsize(tmp)
        if digest not in stored:
            if size > MAX_FIXTURE_BYTES:
                raise SystemExit(f"{tmp}: {size} bytes, over the fixture limit")
            dst = os.path.join(TYPEDIR, f"stories260K-{name}.gguf")
            shutil.copyfile(tmp, dst)
            stored[digest] = os.path.relpath(dst, REPO)
        model = stored[digest]
        types = tensor_types(tmp)
        hist = {}
        for t in types.values():
            hist[t] = hist.get(t, 0) + 1
        shown = " ".join("--imatrix IMATRIX" if a == imatrix else a for a in args)
        entry = {"name": name, "ftype": ftype, "file": model, "bytes": size, "sha256": digest,
                 "command": f"llama-quantize --allow-requantize {shown} {ref.STORIES_F32} OUT "
                            f"{ftype} {threads}".replace("  ", " "),
                 "tensor_types": types, "type_counts": hist,
                 "perplexity": None,
                 "greedy": ref.greedy(exe, model, 64, threads)}
        try:
            entry["perplexity"] = ref.perplexity(bin_dir, model, ref.TINYSTORIES, 256, threads,
                                                 CHUNKS)
        except SystemExit as e:  # seen: llama-perplexity stopping one chunk short, no final line
            ref.log(f"{name}: skipped, {e}")
            continue
        out["models"].append(entry)
        ref.log(f"{name}: PPL {entry['perplexity']['ppl']:.4f} types {hist}")
        for p in ("per_chunk",):
            entry["perplexity"].pop(p, None)  # the final value is what the test compares
        entry["greedy"].pop("step0_logits", None)
    path = os.path.join(FIXDIR, "gguf_types.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    ref.log(f"wrote {os.path.relpath(path, REPO)} and {len(stored)} files in "
            f"{os.path.relpath(TYPEDIR, REPO)}")


if __name__ == "__main__":
    main()
