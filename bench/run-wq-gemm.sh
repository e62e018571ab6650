#!/usr/bin/env bash
# On the GPU machine, one call: build the W4A16/W8A16 test and benchmark (sm_90a), run the
# wq_gemm tests, compute-sanitizer memcheck on a short filter, the torch baseline and the bench
# (ratios from the same run). Logs into $OUT (or build-gpu/wq-logs); a summary is printed last.
#
#   bench/run-wq-gemm.sh [--quick] [--no-bench] [--no-memcheck]
set -uo pipefail
cd "$(dirname "$0")/.."
quick="" bench=1 memcheck=1
for a in "$@"; do
  case $a in
    --quick) quick=--quick ;;
    --no-bench) bench=0 ;;
    --no-memcheck) memcheck=0 ;;
  esac
done
out=${OUT:-build-gpu/wq-logs}
mkdir -p "$out"
carry=build-cuda-carry
if ! pkg-config --exists libpcre2-8 && [ -d $carry/pcre2 ]; then
  export PKG_CONFIG_PATH="$PWD/$carry/pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOWBIT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real >"$out/configure.log" 2>&1 \
  || { tail -20 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target lowbit_cuda_tests gpu_wq_gemm_bench \
  >"$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
build-gpu/bin/lowbit_cuda_tests --gtest_filter='CudaWqGemm.*' >"$out/test.log" 2>&1
echo "tests: rc $? $(grep -E '^\[  (PASSED|FAILED) ' "$out/test.log" | tr '\n' ' ')"
grep -E "Failure|error|FAILED" -A3 "$out/test.log" | head -30
if [ $memcheck = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 7 build-gpu/bin/lowbit_cuda_tests \
    --gtest_filter='CudaWqGemm.AllLayouts*:CudaWqGemm.GraphCapture' >"$out/memcheck.log" 2>&1
  echo "memcheck: rc $? $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
fi
if [ $bench = 1 ]; then
  timeout 240 python3 bench/gpu_quant_gemm_baseline.py $quick --out "$out/torch.csv" \
    >"$out/torch.log" 2>&1
  echo "torch baseline: rc $? $(grep -c . "$out/torch.csv" 2>/dev/null) rows; $(grep '^#' "$out/torch.log" | head -3)"
  timeout 300 build-gpu/bin/gpu_wq_gemm_bench $quick --baseline "$out/torch.csv" \
    >"$out/bench.log" 2>&1
  echo "bench: rc $?"
  grep -v '^RESULT' "$out/bench.log"
fi
echo "total: $(( $(date +%s) - t0 )) s"
