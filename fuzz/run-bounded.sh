#!/usr/bin/env bash
# Runs a libFuzzer target for a bounded time over its committed corpus (CI: test
# gguf_fuzz_bounded). New inputs the fuzzer finds go to a scratch directory, never into the
# committed corpus; a crash, sanitizer report, leak or timeout fails the run and leaves the
# reproducer in the scratch directory, whose path is printed.
#   fuzz/run-bounded.sh FUZZER CORPUS_DIR SECONDS
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
scratch=$(mktemp -d "${TMPDIR:-/tmp}/lowbit_fuzz.XXXXXX")
echo "fuzzing $fuzzer for ${seconds}s over $corpus (new inputs, crashes: $scratch)"
mkdir "$scratch/new"
cd "$scratch"  # crash artifacts land here
"$fuzzer" -max_total_time="$seconds" -timeout=10 -max_len=4096 -rss_limit_mb=2048 \
  -print_final_stats=1 "$scratch/new" "$corpus" 2>fuzz.log || {
  tail -60 fuzz.log
  echo "FAILED: reproducer(s) in $scratch" >&2
  exit 1
}
grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" fuzz.log || true
rm -rf "$scratch"
