#!/usr/bin/env python3
"""Checks `lowbit quantize` against llama.cpp's llama-quantize / llama-perplexity (local only:
CI has no llama.cpp) and writes the per-tensor type fixture of tests/quantizer.

1. Synthetic llama GGUFs whose rows are multiples of 256 (so the K/IQ types apply; random
   weights, stories260K's tokenizer): "gqa" (16 layers, 4 query heads per KV head, untied
   output) and "tied" (8 layers, no GQA, no output.weight), plus a random imatrix GGUF. For
   every file type, with and without --imatrix, lowbit's output must have the same tensor types
   and bytes as llama-quantize's. The types go to tests/fixtures/quantizer/type_rules.json.
2. stories260K (rows of 64 and 172: fallbacks everywhere): per file type, same bytes as
   llama-quantize, llama-perplexity PPL of both files and their KL divergence from the F32
   model (--kl-divergence-base), and lowbit's own perplexity of its file. Prints a markdown
   table (docs/formats.md, "GGUF export").
3. `lowbit imatrix` vs llama-imatrix on stories260K (same entries and counts, in_sum2 close).
4. With --kld-model M.gguf (a real model with rows of 256+, e.g. SmolLM2-135M in BF16): an
   imatrix from `lowbit imatrix`, then every i-quant file type quantized by both tools with it;
   same bytes, and llama-perplexity's KL divergence of each file from M. Prints a table.

Rerun (numpy, gguf==0.19.0, llama.cpp from tools/build-llama-cpp.sh, lowbit built):
  LLAMA_CPP_BIN=~/.cache/lowbit/llama.cpp/0.3.36/bin LOWBIT=build/bin/lowbit \
    python3 tools/check_gguf_export.py [--skip-synthetic] [--skip-stories] [--skip-imatrix] \
    [--kld-model ~/.cache/lowbit/bench/smollm2-BF16.gguf --kld-chunks 20]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "../shared/models/stories260K/gguf/stories260K-F32.gguf"
TEXT = ROOT / "../shared/data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"
FTYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S",
          "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
          "TQ1_0", "TQ2_0", "MXFP4_MOE", "IQ3_S", "IQ3_M"]
# These put tensors in types that need an imatrix (llama-quantize's tensor_requires_imatrix):
# checked with one, and both tools must refuse them without.
IMATRIX_ONLY = ["Q2_K_S", "IQ3_XXS", "IQ3_XS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S",
                "IQ1_M"]
# The grid-search i-quants: llama.cpp must also load and run lowbit's synthetic-model files.
RUN_IN_LLAMA = ["IQ3_S", "IQ3_M"] + IMATRIX_ONLY[1:]


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace")
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:])
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}")
    return p.stdout


def copy_tokenizer(src: GGUFReader, w: GGUFWriter):
    for f in src.fields.values():
        if not f.name.startswith("tokenizer."):
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            vals = [f.parts[i] for i in f.data]
            if f.types[1] == gguf.GGUFValueType.STRING:
                w.add_array(f.name, [bytes(v).decode("utf-8", "replace") for v in vals])
            else:
                w.add_array(f.name, [v.tolist()[0] for v in vals])
        elif f.types[0] == gguf.GGUFValueType.STRING:
            w.add_string(f.name, bytes(f.parts[-1]).decode())
        else:
            w.add_key_value(f.name, f.parts[-1].tolist()[0], f.types[0])


def make_synthetic(path: Path, n_layer, dim, ffn, n_head, n_head_kv, tied, seed):
    rng = np.random.default_rng(seed)
    src = GGUFReader(STORIES)
    vocab = 512
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(dim // n_head)
    w.add_file_type(0)
    copy_tokenizer(src, w)
    hd = dim // n_head

    def t(name, *shape, scale=0.05):
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        x[rng.random(shape) < 0.001] *= 20  # a few outliers
        w.add_tensor(name, x)

    t("token_embd.weight", vocab, dim)
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    if not tied:
        t("output.weight", vocab, dim)
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32))
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32))
        t(p + "attn_q.weight", dim, dim)
        t(p + "attn_k.weight", n_head_kv * hd, dim)
        t(p + "attn_v.weight", n_head_kv * hd, dim)
        t(p + "attn_output.weight", dim, dim)
        t(p + "ffn_gate.weight", ffn, dim)
        t(p + "ffn_up.weight", ffn, dim)
        t(p + "ffn_down.weight", dim, ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_imatrix(model: Path, path: Path, seed):
    rng = np.random.default_rng(seed)
    r = GGUFReader(model)
    w = GGUFWriter(str(path), "")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 4)
    w.add_uint32("imatrix.chunk_size", 128)
    for t in r.tensors:
        if len(t.shape) < 2 or "norm" in t.name or t.name == "token_embd.weight":
            continue
        n_in = int(t.shape[0])
        w.add_tensor(t.name + ".in_sum2", (rng.gamma(0.8, 1.0, (1, n_in)) * 512).astype(np.float32))
        w.add_tensor(t.name + ".counts", np.full((1, 1), 512, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tensors_of(path):
    return {t.name: (t.tensor_type.name, t.data.tobytes()) for t in GGUFReader(path).tensors}


def compare(ours, theirs, label):
    a, b = tensors_of(ours), tensors_of(theirs)
    if a.keys() != b.keys():
        raise SystemExit(f"{label}: tensor names differ")
    diffs = [n for n in a if a[n] != b[n]]
    for n in diffs[:5]:
        print(f"  {label}: {n}: lowbit {a[n][0]}, llama.cpp {b[n][0]}"
              f"{' (same type, other bytes)' if a[n][0] == b[n][0] else ''}")
    return a, len(diffs)


def quantize_both(args, model, ftype, out_dir, imatrix=None, extra=()):
    tag = ftype + ("+imatrix" if imatrix else "")
    ours = out_dir / f"lowbit-{tag}.gguf"
    theirs = out_dir / f"llama-{tag}.gguf"
    cmd = [args.lowbit, "quantize", "-q", "-m", model, "-o", ours, "--type", ftype]
    if imatrix:
        cmd += ["--imatrix", imatrix]
    run(cmd)
    cmd = [Path(args.llama_bin) / "llama-quantize", *extra]
    if imatrix:
        cmd += ["--imatrix", imatrix]
    run(cmd + [model, theirs, ftype])
    return ours, theirs, tag


def refused_by_both(args, model, ftype, out_dir):
    """Without --imatrix both tools must refuse (a file type that needs one)."""
    ours, theirs = out_dir / "refused-lowbit.gguf", out_dir / "refused-llama.gguf"
    a = subprocess.run([str(args.lowbit), "quantize", "-q", "-m", str(model), "-o", str(ours),
                        "--type", ftype], capture_output=True, text=True)
    b = subprocess.run([str(Path(args.llama_bin) / "llama-quantize"), str(model), str(theirs),
                        ftype], capture_output=True, text=True)
    ok = a.returncode != 0 and b.returncode != 0 and "importance matrix" in a.stderr + a.stdout
    for p in (ours, theirs):
        if p.exists():
            os.remove(p)
    return ok


def runs_in_llama(args, model):
    """llama-perplexity loads the file and computes a finite perplexity."""
    # llama.cpp's asynchronous logger sometimes drops its last lines when piped: a run that
    # exits 0 without printing a perplexity is retried.
    for _ in range(4):
        ppl, _, out = llama_ppl(args, model, ["--chunks", "2"])
        if ppl is None:
            per_chunk = re.findall(r"\[\d+\]([0-9.]+|nan|inf)", out)
            ppl = float(per_chunk[-1]) if per_chunk else None
        if ppl is not None:
            return bool(np.isfinite(ppl))
    return False


def synthetic(args, tmp: Path):
    fixture = {"models": {}}
    failures = 0
    for name, cfg in {"gqa": dict(n_layer=16, dim=256, ffn=768, n_head=4, n_head_kv=1, tied=False),
                      "tied": dict(n_layer=8, dim=256, ffn=512, n_head=4, n_head_kv=4, tied=True)}.items():
        model = tmp / f"syn-{name}.gguf"
        make_synthetic(model, seed=11, **cfg)
        im = tmp / f"syn-{name}.imatrix.gguf"
        make_imatrix(model, im, seed=12)
        r = GGUFReader(model)
        entry = {"config": cfg,
                 "tensors": [[t.name, [int(d) for d in reversed(t.shape)], t.tensor_type.name] for t in r.tensors],
                 "types": {}}
        for ftype in IMATRIX_ONLY:
            refused = refused_by_both(args, model, ftype, tmp)
            failures += 0 if refused else 1
            print(f"{name:5s} {ftype:16s} without imatrix: {'refused by both' if refused else 'NOT refused by both'}")
        for ftype in FTYPES + IMATRIX_ONLY:
            for imatrix in ([im] if ftype in IMATRIX_ONLY else [None, im]):
                ours, theirs, tag = quantize_both(args, model, ftype, tmp, imatrix)
                types, n_diff = compare(ours, theirs, f"{name} {tag}")
                failures += n_diff
                note = ""
                if ftype in RUN_IN_LLAMA:
                    ran = runs_in_llama(args, ours)
                    failures += 0 if ran else 1
                    note = ", llama-perplexity runs it" if ran else ", llama-perplexity FAILED"
                print(f"{name:5s} {tag:16s} {'OK' if n_diff == 0 else f'{n_diff} tensors differ'}{note}")
                entry["types"][tag] = [types[t[0]][0] for t in entry["tensors"]]
                os.remove(ours)
                os.remove(theirs)
        # Requantizing a quantized input (Q8_0 -> Q4_K_M) decodes the same way as llama.cpp.
        q8, _, _ = quantize_both(args, model, "Q8_0", tmp)
        ours, theirs, tag = quantize_both(args, q8, "Q4_K_M", tmp, extra=["--allow-requantize"])
        _, n_diff = compare(ours, theirs, f"{name} Q8_0->Q4_K_M")
        failures += n_diff
        print(f"{name:5s} Q8_0 -> Q4_K_M    {'OK' if n_diff == 0 else f'{n_diff} tensors differ'}")
        fixture["models"][name] = entry
    out = ROOT / "tests/fixtures/quantizer/type_rules.json"
    out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
    return failures


def llama_ppl(args, model, extra=()):
    out = run([Path(args.llama_bin) / "llama-perplexity", "-m", model, "-f", TEXT, "-c", "128",
               "--chunks", str(args.chunks), "-t", "2", *extra])
    ppl = (re.search(r"Final estimate: PPL = ([0-9.]+)", out) or
           re.search(r"Mean PPL\(Q\)\s*:\s*([0-9.]+)", out))  # --kl-divergence prints this
    kld = re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", out)
    return (float(ppl.group(1)) if ppl else None), (float(kld.group(1)) if kld else None), out


def lowbit_ppl(args, model):
    out = run([args.lowbit, "perplexity", "-m", model, "-f", TEXT, "-c", "128", "--chunks",
               str(args.chunks), "-t", "2"])
    m = re.search(r"PPL = ([0-9.]+)", out)
    return float(m.group(1)) if m else None


def stories(args, tmp: Path):
    base = tmp / "stories-f32.kld"
    f32_ppl, _, out = llama_ppl(args, STORIES, ["--kl-divergence-base", base])
    if f32_ppl is None:  # the base run prints its PPL per chunk only
        f32_ppl = float(re.findall(r"\[\d+\]([0-9.]+)", out)[-1])
    rows, failures = [], 0
    for ftype in FTYPES:
        ours, theirs, tag = quantize_both(args, STORIES, ftype, tmp)
        _, n_diff = compare(ours, theirs, f"stories {tag}")
        failures += n_diff
        p_ours, k_ours, _ = llama_ppl(args, ours, ["--kl-divergence-base", base, "--kl-divergence"])
        p_theirs, k_theirs, _ = llama_ppl(args, theirs, ["--kl-divergence-base", base, "--kl-divergence"])
        rows.append((ftype, os.path.getsize(ours), os.path.getsize(theirs), n_diff == 0,
                     lowbit_ppl(args, ours), p_ours, p_theirs, k_ours, k_theirs))
        print(rows[-1], flush=True)
    print(f"\nstories260K, TinyStories valid first 100, -c 128, {args.chunks} chunks; "
          f"F32 llama.cpp PPL {f32_ppl:.4f}\n")
    print("| type | bytes (lowbit / llama-quantize) | same tensors | PPL lowbit run | PPL llama.cpp (lowbit file / llama file) | KLD vs F32 (lowbit file / llama file) |")
    print("|---|---|---|---|---|---|")
    def f(v, spec):  # a llama-perplexity run that printed no result shows as "-"
        return "-" if v is None else format(v, spec)

    for r in rows:
        print(f"| {r[0]} | {r[1]} / {r[2]} | {'yes' if r[3] else 'NO'} | {f(r[4], '.4f')} | "
              f"{f(r[5], '.4f')} / {f(r[6], '.4f')} | {f(r[7], '.6f')} / {f(r[8], '.6f')} |")
    return failures


def imatrix_check(args, tmp: Path):
    ours, theirs = tmp / "lowbit.imatrix.gguf", tmp / "llama.imatrix.gguf"
    common = ["-m", STORIES, "-f", TEXT, "-c", "128", "--chunks", "20", "-t", "2", "-o"]
    run([args.lowbit, "imatrix", *common, ours])
    run([Path(args.llama_bin) / "llama-imatrix", *common, theirs])
    a = {t.name: np.array(t.data, np.float64) for t in GGUFReader(ours).tensors}
    b = {t.name: np.array(t.data, np.float64) for t in GGUFReader(theirs).tensors}
    if a.keys() != b.keys():
        raise SystemExit(f"imatrix entries differ: {sorted(a.keys() ^ b.keys())[:5]}")
    worst = 0.0
    for k in b:
        if k.endswith(".counts"):
            if not np.array_equal(a[k].ravel(), b[k].ravel()):
                raise SystemExit(f"imatrix {k}: counts {a[k].ravel()} vs {b[k].ravel()}")
        else:
            worst = max(worst, float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()))
    print(f"imatrix: {len(a) // 2} matrices, equal counts, in_sum2 max relative difference {worst:.2e}")
    if worst > 1e-2:
        raise SystemExit("imatrix in_sum2 differs by more than 1%")


def kld_model(args, tmp: Path):
    model = Path(args.kld_model)
    base = tmp / "kld-model.kld"
    ctx = ["-f", TEXT, "-c", "128", "--chunks", str(args.kld_chunks), "-t", "2"]
    run([Path(args.llama_bin) / "llama-perplexity", "-m", model, *ctx, "--kl-divergence-base", base])
    im = tmp / "kld-model.imatrix.gguf"
    run([args.lowbit, "imatrix", "-m", model, "-f", TEXT, "-c", "128", "--chunks", "20", "-t", "2",
         "-o", im])
    rows, failures = [], 0
    for ftype in ["IQ3_S", "IQ3_M", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS",
                  "IQ1_M", "IQ1_S"]:
        ours, theirs, tag = quantize_both(args, model, ftype, tmp, im)
        types, n_diff = compare(ours, theirs, f"kld-model {tag}")
        failures += n_diff
        klds = []
        for f in (ours, theirs):
            out = run([Path(args.llama_bin) / "llama-perplexity", "-m", f, *ctx,
                       "--kl-divergence-base", base, "--kl-divergence"])
            m = re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", out)
            klds.append(float(m.group(1)) if m else None)
        counts = {}
        for t, _ in types.values():
            counts[t] = counts.get(t, 0) + 1
        rows.append((tag, os.path.getsize(ours), n_diff == 0, klds[0], klds[1],
                     ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))))
        print(rows[-1], flush=True)
        os.remove(ours)
        os.remove(theirs)
    print(f"\n{model.name}, imatrix from lowbit (20 chunks), TinyStories valid first 100, -c 128, "
          f"{args.kld_chunks} chunks\n")
    print("| file type (+imatrix) | bytes | tensors identical | KLD vs base (lowbit file / llama-quantize file) | tensor types |")
    print("|---|---|---|---|---|")
    for r in rows:
        k = lambda v: "-" if v is None else f"{v:.6f}"
        print(f"| {r[0]} | {r[1]} | {'yes' if r[2] else 'NO'} | {k(r[3])} / {k(r[4])} | {r[5]} |")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-stories", action="store_true")
    ap.add_argument("--skip-imatrix", action="store_true")
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--kld-model", help="real GGUF model for the i-quant KL divergence table")
    ap.add_argument("--kld-chunks", type=int, default=20)
    args = ap.parse_args()
    args.llama_bin = os.environ.get("LLAMA_CPP_BIN", str(Path.home() / ".cache/lowbit/llama.cpp/0.3.36/bin"))
    args.lowbit = os.environ.get("LOWBIT", str(ROOT / "build/bin/lowbit"))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="lowbit-gguf-export-") as d:
        if not args.skip_synthetic:
            failures += synthetic(args, Path(d))
        if not args.skip_imatrix:
            imatrix_check(args, Path(d))
        if not args.skip_stories:
            failures += stories(args, Path(d))
        if args.kld_model:
            failures += kld_model(args, Path(d))
    if failures:
        raise SystemExit(f"{failures} tensors differ from llama-quantize")
    print("all outputs identical to llama-quantize's")


if __name__ == "__main__":
    main()
