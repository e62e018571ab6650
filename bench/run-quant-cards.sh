#!/usr/bin/env bash
# Quant cards (issue 3) of lowbit's online weight-only methods on the real default model:
# `lowbit eval` of int4, int8 and NF4 (bitsandbytes) against the unquantized model on the same
# wikitext-2 chunks, written as markdown + JSON to docs/quant-cards/.
#
# Usage:  bench/run-quant-cards.sh [--threads N] [--ctx C] [--chunks K] [--out DIR]
#                                  [--methods "int4 int8 bitsandbytes"]
# Model:  SmolLM2-135M-Instruct. The registry route ships it only as Q4_1 GGUF
#         (scripts/fetch-default-model.sh), so the reference is that file's weights converted to
#         BF16 by `lowbit quantize --type BF16`; every method then quantizes the same BF16
#         weights while loading. Quality numbers therefore measure the
#         cost of requantizing those weights, not of quantizing the original bf16 release.
# Text:   ../shared/data/wikitext2/wiki.test.raw (llama-perplexity's chunking).
# Speed and peak RSS columns are only meaningful on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=2 CTX=512 CHUNKS=40 OUT=docs/quant-cards METHODS="int4 int8 bitsandbytes"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --ctx) CTX="$2"; shift 2 ;;
    --chunks) CHUNKS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --methods) METHODS="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run-quant-cards: unknown option '$1'" >&2; exit 2 ;;
  esac
done
LOWBIT="${LOWBIT_BIN:-build/bin/lowbit}"
[[ -x "$LOWBIT" ]] || { echo "run-quant-cards: $LOWBIT not built (run make)" >&2; exit 1; }
TEXT=../shared/data/wikitext2/wiki.test.raw
[[ -f "$TEXT" ]] || { echo "run-quant-cards: $TEXT not found (needs ../shared)" >&2; exit 1; }
BASE="$(scripts/fetch-default-model.sh | tail -n 1)"
DIR="${LOWBIT_CACHE:-$HOME/.cache/lowbit}/bench"
mkdir -p "$DIR" "$OUT"
REF="$DIR/smollm2-lowbit-BF16.gguf"
[[ -f "$REF" ]] || "$LOWBIT" quantize --model "$BASE" --out "$REF" --type BF16 >&2

for method in $METHODS; do
  name=$method
  [[ $method == bitsandbytes ]] && name=nf4
  echo "== lowbit eval --quantization $method" >&2
  "$LOWBIT" eval --model "$REF" --reference "$REF" --quantization "$method" --file "$TEXT" \
    --ctx "$CTX" --chunks "$CHUNKS" --threads "$THREADS" \
    --json "$OUT/smollm2-135m-$name.json" --markdown "$OUT/smollm2-135m-$name.md"
done
echo "quant cards written to $OUT/" >&2
