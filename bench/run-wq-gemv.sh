#!/usr/bin/env bash
# On the GPU machine, one call: build (sm_90a) the W4A16/W8A16 tests and benchmarks; run the
# wq_gemv / wq_gemm / GpuLinear / quantized-model tests; in the same run the decode-size GEMM
# bench (8B shapes, m = 1, 4, 8, 16; torch.matmul bf16 baseline) and the end-to-end decode bench
# with the GEMV enabled (after) and disabled (before); compute-sanitizer memcheck on the GEMV
# tests last. Logs into $OUT (or build-gpu/gemv-logs).
#
#   bench/run-wq-gemv.sh [--no-tests]
set -uo pipefail
cd "$(dirname "$0")/.."
tests=1
for a in "$@"; do [ "$a" = --no-tests ] && tests=0; done
out=${OUT:-build-gpu/gemv-logs}
mkdir -p "$out"
carry=build-cuda-carry
if ! pkg-config --exists libpcre2-8 && [ -d $carry/pcre2 ]; then
  export PKG_CONFIG_PATH="$PWD/$carry/pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi
[ -f $carry/stories260K/config.json ] && export LOWBIT_STORIES260K_HF="$PWD/$carry/stories260K"
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOWBIT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real >"$out/configure.log" 2>&1 \
  || { tail -20 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target lowbit_cuda_tests gpu_wq_gemm_bench gpu_decode_bench \
  >"$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
shapes=4096x6144,4096x4096,4096x28672,14336x4096
if [ $tests = 1 ]; then
  timeout 200 build-gpu/bin/lowbit_cuda_tests \
    --gtest_filter='CudaWqGemv.*:CudaWqGemm.*:GpuLinear.*:CudaModel.RandomQuantizedModelsAgreeAcrossPaths' \
    >"$out/test.log" 2>&1
  echo "tests: rc $? $(grep -E '^\[  (PASSED|FAILED) ' "$out/test.log" | tr '\n' ' ')"
  grep -E "Failure|error|FAILED" -A3 "$out/test.log" | head -30
fi
timeout 90 python3 bench/gpu_quant_gemm_baseline.py --shapes $shapes --ms 1,4,8,16 \
  --out "$out/torch.csv" >"$out/torch.log" 2>&1
echo "torch baseline: rc $? $(grep -c . "$out/torch.csv" 2>/dev/null) rows"
timeout 120 build-gpu/bin/gpu_wq_gemm_bench --shapes $shapes --ms 1,4,8,16 \
  --baseline "$out/torch.csv" >"$out/bench.log" 2>&1
echo "wq bench: rc $?"
grep -v '^RESULT' "$out/bench.log"
# The GEMV's k-split (cluster size) forced to 1 and 4 at m = 1 (default: fill SMs · 2 slots).
for knob in LOWBIT_WQ_GEMV_SPLITS=1 LOWBIT_WQ_GEMV_SPLITS=4; do
  env $knob timeout 60 build-gpu/bin/gpu_wq_gemm_bench --shapes $shapes --ms 1 \
    --baseline "$out/torch.csv" 2>&1 | grep -E "^[0-9]" | sed "s/^/$knob /"
done
args=(--quick --batches 1 --contexts 128 --weights bf16,int4,int8 --kv bf16 --attention-batches 1)
timeout 150 build-gpu/bin/gpu_decode_bench "${args[@]}" >"$out/decode_after.log" 2>&1
echo "decode (wq_gemv): rc $?"
grep -v "^ *$" "$out/decode_after.log" | tail -25
args[6]=int4,int8
LOWBIT_DISABLE_KERNELS=wq_gemv timeout 120 build-gpu/bin/gpu_decode_bench "${args[@]}" \
  >"$out/decode_before.log" 2>&1
echo "decode (wq_gemv disabled): rc $?"
grep -v "^ *$" "$out/decode_before.log" | tail -20
if [ $tests = 1 ]; then
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 7 build-gpu/bin/lowbit_cuda_tests \
    --gtest_filter='CudaWqGemv.AllLayouts*:CudaWqGemv.RowLimit*' >"$out/memcheck.log" 2>&1
  echo "memcheck: rc $? $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
fi
echo "total: $(( $(date +%s) - t0 )) s"
