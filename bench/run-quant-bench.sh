#!/usr/bin/env bash
# Weight-only quantization benchmark (issue 3): decode and prompt tokens/s of lowbit's online
# int4 / int8 / nf4 against the bf16 path of the same real model, and against llama.cpp's Q4_0
# and Q8_0 of that model, all with the same thread count, in one run.
#
# Usage:  bench/run-quant-bench.sh [--threads N] [--reps R] [--gen-tokens G] [--prompt-tokens P]
# Model:  SmolLM2-135M-Instruct (the default model, Q4_1 GGUF from scripts/fetch-default-model.sh),
#         requantized once with llama.cpp's llama-quantize --allow-requantize into BF16, Q4_0 and
#         Q8_0 files under ~/.cache/lowbit/bench/ (every engine reads the same weights' values).
# Rows:   lowbit bf16        BF16 GGUF, dense bf16 kernels (the baseline)
#         lowbit int4/int8/nf4   the BF16 GGUF with --quantization int4 | int8 | bitsandbytes
#         lowbit Q4_0/Q8_0   llama.cpp's files through lowbit's gguf method
#         llama.cpp Q4_0/Q8_0    llama-bench -t N on the same files
# Ratios are against lowbit bf16 (same process family, same machine state) and llama.cpp's
# same-bit-width file; the bound column is read bandwidth (bench/membw.cpp) ÷ the weight bytes
# lowbit reads per generated token (its own weight_bytes_per_token report).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=2
REPS=3
GEN=128
PROMPT=512
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --gen-tokens) GEN="$2"; shift 2 ;;
    --prompt-tokens) PROMPT="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run-quant-bench: unknown option '$1'" >&2; exit 2 ;;
  esac
done

LOWBIT="${LOWBIT_BIN:-build/bin/lowbit}"
[[ -x "$LOWBIT" ]] || { echo "run-quant-bench: $LOWBIT not built (run make)" >&2; exit 1; }
LLAMA_BIN="${LLAMA_CPP_BIN:-$(tools/build-llama-cpp.sh | tail -n 1)}"
BASE="$(scripts/fetch-default-model.sh | tail -n 1)"
DIR="${LOWBIT_CACHE:-$HOME/.cache/lowbit}/bench"
mkdir -p "$DIR"
for t in BF16 Q4_0 Q8_0; do
  f="$DIR/smollm2-$t.gguf"
  [[ -f "$f" ]] || "$LLAMA_BIN/llama-quantize" --allow-requantize "$BASE" "$f" "$t" 2 >/dev/null 2>&1 \
    || { echo "run-quant-bench: llama-quantize to $t failed" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p build-bench
MEMBW=build-bench/membw
if [[ ! -x "$MEMBW" || bench/membw.cpp -nt "$MEMBW" ]]; then
  g++ -O3 -march=native -fopenmp -std=c++20 bench/membw.cpp -o "$MEMBW"
fi
"$MEMBW" --threads "$THREADS" --json >"$WORK/membw.json"

run_lowbit() {  # name file [--quantization q]
  local name="$1" file="$2"
  shift 2
  echo "== lowbit $name" >&2
  if "$LOWBIT" bench --model "$file" "$@" --threads "$THREADS" --prompt-tokens "$PROMPT" \
      --gen-tokens "$GEN" --json >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    grep '^{' "$WORK/$name.out" | tail -n 1 >"$WORK/lowbit-$name.json"
  else
    echo "lowbit $name failed: $(tail -n 2 "$WORK/$name.err")" >&2
  fi
}
run_lowbit bf16 "$DIR/smollm2-BF16.gguf"
run_lowbit int4 "$DIR/smollm2-BF16.gguf" --quantization int4
run_lowbit int8 "$DIR/smollm2-BF16.gguf" --quantization int8
run_lowbit nf4 "$DIR/smollm2-BF16.gguf" --quantization bitsandbytes
run_lowbit Q4_0 "$DIR/smollm2-Q4_0.gguf"
run_lowbit Q8_0 "$DIR/smollm2-Q8_0.gguf"
for t in Q4_0 Q8_0; do
  echo "== llama-bench $t" >&2
  "$LLAMA_BIN/llama-bench" -m "$DIR/smollm2-$t.gguf" -t "$THREADS" -p "$PROMPT" -n "$GEN" \
    -r "$REPS" -o json >"$WORK/llama-$t.json" 2>"$WORK/llama-$t.err" \
    || echo "llama-bench $t failed: $(tail -n 2 "$WORK/llama-$t.err")" >&2
done

python3 - "$WORK" "$THREADS" "$PROMPT" "$GEN" <<'PY'
import json, os, sys

work, threads, prompt, gen = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def load(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


bw = load("membw.json") or {}
read_bps = float(bw.get("read_gbps", 0)) * 1e9
rows = {}
for name in ["bf16", "int4", "int8", "nf4", "Q4_0", "Q8_0"]:
    r = load(f"lowbit-{name}.json")
    if r:
        rows[f"lowbit {name}"] = (r.get("pp_tok_s"), r.get("tg_tok_s"),
                                  r.get("weight_bytes_per_token"))
for t in ["Q4_0", "Q8_0"]:
    pp = tg = None
    for r in load(f"llama-{t}.json") or []:
        if r.get("n_prompt") == prompt and r.get("n_gen") == 0:
            pp = float(r["avg_ts"])
        if r.get("n_gen") == gen and r.get("n_prompt") == 0:
            tg = float(r["avg_ts"])
    rows[f"llama.cpp {t}"] = (pp, tg, None)


def f(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


base_tg = rows.get("lowbit bf16", (None, None, None))[1]
peer = {"int4": "llama.cpp Q4_0", "Q4_0": "llama.cpp Q4_0", "int8": "llama.cpp Q8_0",
        "Q8_0": "llama.cpp Q8_0", "nf4": "llama.cpp Q4_0"}
print(f"\nSmolLM2-135M-Instruct, threads={threads}, pp{prompt}/tg{gen}; "
      f"read bandwidth {read_bps / 1e9:.2f} GB/s")
print(f"{'engine':<18}{'pp tok/s':>10}{'tg tok/s':>10}{'MB/token':>10}{'tg/bound':>10}"
      f"{'tg vs bf16':>12}  {'tg vs llama.cpp':>25}")
for name, (pp, tg, bpt) in rows.items():
    bound = read_bps / bpt if bpt and read_bps else None
    vs_bf16 = tg / base_tg if tg and base_tg and name.startswith("lowbit") else None
    key = name.split()[-1]
    p = rows.get(peer.get(key, ""), (None, None, None))[1] if name.startswith("lowbit") else None
    vs_peer = tg / p if tg and p else None
    print(f"{name:<18}{f(pp):>10}{f(tg):>10}{f(bpt / 1e6 if bpt else None, '.1f'):>10}"
          f"{f(100 * tg / bound if tg and bound else None, '.0f') + '%':>10}"
          f"{f(vs_bf16, '.2f'):>12}  "
          f"{f(vs_peer, '.2f') + ' (' + peer.get(key, '-') + ')' if vs_peer else '-':>25}")
PY
