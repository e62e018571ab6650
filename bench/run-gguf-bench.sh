#!/usr/bin/env bash
# GGUF quantization types: lowbit vs llama.cpp, one table over several files of one model.
#
# Usage:  bench/run-gguf-bench.sh [MODEL.gguf] [--types "Q4_0 Q4_K_M Q6_K Q8_0 IQ4_XS"]
#                                 [--threads N] [--reps R] [--json-out FILE]
#         (default model: the project's default, SmolLM2-135M-Instruct Q4_1, as in
#          bench/run-cpu-bench.sh)
# Steps:  1. llama-quantize --allow-requantize MODEL -> F16, then F16 -> each type (llama.cpp's
#            tools from tools/build-llama-cpp.sh, or $LLAMA_CPP_BIN). Files are cached in
#            $LOWBIT_CACHE/models/gguf-bench/<model>/<TYPE>.gguf (default ~/.cache/lowbit) and
#            reused when newer than MODEL.
#         2. For each file, bench/run-cpu-bench.sh: membw read bandwidth, llama-bench -t N pp512 /
#            tg128, `lowbit bench --json` on the same file, the generation bound
#            bytes_per_token / read_bandwidth (all in one run, file after file).
#         3. One table: tok/s of both engines, lowbit / llama.cpp ratios, lowbit's % of the bound.
# Note:   for a model whose rows are not a multiple of 256 (SmolLM2-135M: hidden 576),
#         llama-quantize stores most matrices of a K/IQ type in a 32-element fallback type
#         (Q4_K -> Q5_0, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL); the table lists each file's tensor types.
# Run on an otherwise idle machine (see docs/benchmarks.md); the load average is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

TYPES="Q4_0 Q4_K_M Q6_K Q8_0 IQ4_XS"
THREADS=2
REPS=3
MODEL=""
JSON_OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --types) TYPES="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --json-out) JSON_OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "run-gguf-bench: unknown option '$1'" >&2; exit 2 ;;
    *) MODEL="$1"; shift ;;
  esac
done

if [[ -z "$MODEL" ]]; then
  if [[ -x scripts/fetch-default-model.sh ]]; then
    MODEL="$(scripts/fetch-default-model.sh | tail -n 1)"
  else
    echo "run-gguf-bench: no model given and scripts/fetch-default-model.sh is missing" >&2
    exit 1
  fi
fi
[[ -f "$MODEL" ]] || { echo "run-gguf-bench: model '$MODEL' not found" >&2; exit 1; }

LLAMA_BIN="${LLAMA_CPP_BIN:-}"
if [[ -z "$LLAMA_BIN" ]]; then
  LLAMA_BIN="$(tools/build-llama-cpp.sh | tail -n 1)"
fi
export LLAMA_CPP_BIN="$LLAMA_BIN"  # run-cpu-bench.sh reuses it

# ---- 1. quantized files ----------------------------------------------------------------------
CACHE="${LOWBIT_CACHE:-$HOME/.cache/lowbit}"
DIR="$CACHE/models/gguf-bench/$(basename "$MODEL" .gguf)"
mkdir -p "$DIR"
quantize() {  # quantize SRC DST TYPE [--allow-requantize]
  local src="$1" dst="$2" type="$3"
  shift 3
  if [[ -f "$dst" && "$dst" -nt "$src" ]]; then return 0; fi
  echo "== llama-quantize $* $(basename "$src") -> $type" >&2
  "$LLAMA_BIN/llama-quantize" "$@" "$src" "$dst.tmp" "$type" "$THREADS" >"$dst.log" 2>&1 ||
    { tail -n 20 "$dst.log" >&2; exit 1; }
  mv "$dst.tmp" "$dst"
}
quantize "$MODEL" "$DIR/F16.gguf" F16 --allow-requantize
for t in $TYPES; do quantize "$DIR/F16.gguf" "$DIR/$t.gguf" "$t"; done

# ---- 2. one run-cpu-bench.sh per file ----------------------------------------------------------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/load" >&2
for t in $TYPES; do
  echo "== $t" >&2
  bench/run-cpu-bench.sh "$DIR/$t.gguf" --threads "$THREADS" --reps "$REPS" \
    --json-out "$WORK/$t.json" >"$WORK/$t.out" 2>"$WORK/$t.err" ||
    { cat "$WORK/$t.err" >&2; exit 1; }
  grep -E "lowbit: (bench failed|not built)" "$WORK/$t.err" "$WORK/$t.out" >&2 || true
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$WORK/load" >&2

# ---- 3. table ------------------------------------------------------------------------------------
python3 - "$WORK" "$DIR" "$JSON_OUT" $TYPES <<'PY'
import json, os, struct, sys

work, qdir, json_out, types = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL", 23: "IQ4_XS", 30: "BF16"}


def tensor_types(path):
    """{type name: count} of the 2-D tensors of a GGUF file (header only)."""
    counts = {}
    with open(path, "rb") as f:
        rd = lambda fmt: struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]
        rstr = lambda: f.read(rd("Q")).decode("utf-8", "replace")
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def skip(t):
            if t in sizes:
                f.seek(sizes[t], 1)
            elif t == 8:
                rstr()
            elif t == 9:
                et, n = rd("I"), rd("Q")
                for _ in range(n):
                    skip(et)
            else:
                raise SystemExit(f"{path}: unknown GGUF value type {t}")

        assert f.read(4) == b"GGUF", path
        rd("I")
        n_tensors, n_kv = rd("Q"), rd("Q")
        for _ in range(n_kv):
            rstr()
            skip(rd("I"))
        for _ in range(n_tensors):
            rstr()
            dims = [rd("Q") for _ in range(rd("I"))]
            t = rd("I")
            rd("Q")
            if len(dims) >= 2 and dims[1] > 1:
                name = NAMES.get(t, str(t))
                counts[name] = counts.get(name, 0) + 1
    return counts


rows = []
for t in types:
    try:
        with open(os.path.join(work, t + ".json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = {}
    r["type"] = t
    r["tensor_types"] = tensor_types(os.path.join(qdir, t + ".gguf"))
    rows.append(r)


def f(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


print()
print("| file | matrices | MB/token | read GB/s | llama.cpp pp512 | lowbit pp512 | pp ratio |"
      " llama.cpp tg128 | lowbit tg128 | tg ratio | tg bound | lowbit % of bound |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    ll, lb = r.get("llama_cpp", {}), r.get("lowbit", {})
    bw = float(r.get("membw", {}).get("read_gbps", 0) or 0)
    bound = r.get("tg_bound_tok_s")
    mats = ", ".join(f"{n}×{k}" for k, n in sorted(r["tensor_types"].items(), key=lambda kv: -kv[1]))
    pct = None if bound is None or lb.get("tg_tok_s") is None else 100 * lb["tg_tok_s"] / bound
    print(f"| {r['type']} | {mats} | {f((r.get('bytes_per_token') or 0) / 1e6, '.2f')} | {bw:.1f} "
          f"| {f(ll.get('pp_tok_s'))} | {f(lb.get('pp_tok_s'))} "
          f"| {f(ratio(lb.get('pp_tok_s'), ll.get('pp_tok_s')), '.2f')}x "
          f"| {f(ll.get('tg_tok_s'))} | {f(lb.get('tg_tok_s'))} "
          f"| {f(ratio(lb.get('tg_tok_s'), ll.get('tg_tok_s')), '.2f')}x "
          f"| {f(bound)} | {f(pct)} |")
print()
print(open(os.path.join(work, "load")).read().strip().replace("\n", "; "))
if json_out:
    with open(json_out, "w") as fo:
        json.dump(rows, fo, indent=1)
        fo.write("\n")
PY
