#!/usr/bin/env bash
# Builds the llama.cpp reference tools that lowbit is compared against (perplexity parity, speed).
#
# Debian 12 has no llama.cpp package, so the source comes from PyPI: the `llama-cpp-python`
# source distribution vendors the full llama.cpp tree (vendor/llama.cpp, with its git metadata
# under .git/modules, so the exact llama.cpp commit is known).
#
# Usage:   tools/build-llama-cpp.sh            # prints the bin dir as the LAST stdout line
#          BIN=$(tools/build-llama-cpp.sh | tail -n1)
# Env:     LOWBIT_CACHE            cache root (default: $HOME/.cache/lowbit)
#          LLAMA_CPP_PY_VERSION    llama-cpp-python sdist version (default below)
#          LLAMA_CPP_JOBS          parallel build jobs (default: nproc)
#          LLAMA_CPP_FORCE=1       rebuild even if the stamp exists
#
# Output:  $LOWBIT_CACHE/llama.cpp/<version>/bin/{llama-perplexity,llama-bench,llama-quantize,
#          llama-simple,llama-completion,llama-imatrix} and .../VERSION (llama-cpp-python version + llama.cpp
#          commit). Idempotent: a finished build (stamp file) is reused without any network access.
# Build:   CMake Release, GGML_NATIVE=ON (host ISA, e.g. AVX-512), CPU only (no CUDA/Metal/Vulkan),
#          no curl/openssl, static libs. Takes ~10-20 min on 2 cores; run it in the background.
# Note:    in this llama.cpp version `llama-cli` needs the server/UI build; `llama-completion` is
#          the former `main` (plain text completion) and is built instead.
set -euo pipefail

VERSION="${LLAMA_CPP_PY_VERSION:-0.3.36}"
CACHE="${LOWBIT_CACHE:-$HOME/.cache/lowbit}"
ROOT="$CACHE/llama.cpp/$VERSION"
BIN="$ROOT/bin"
STAMP="$ROOT/.built"
JOBS="${LLAMA_CPP_JOBS:-$(nproc)}"
TARGETS=(llama-perplexity llama-bench llama-quantize llama-simple llama-completion llama-imatrix)

log() { echo "[build-llama-cpp] $*" >&2; }

if [[ -f "$STAMP" && "${LLAMA_CPP_FORCE:-0}" != 1 ]]; then
  ok=1
  for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    log "already built: $(cat "$ROOT/VERSION" 2>/dev/null | tr '\n' ' ')"
    echo "$BIN"
    exit 0
  fi
fi

for tool in cmake python3 tar; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' not found (needed to build llama.cpp)" >&2; exit 1; }
done
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

mkdir -p "$ROOT"
SDIST_DIR="$ROOT/sdist"
SRC="$ROOT/src"   # the extracted sdist; llama.cpp lives in $SRC/vendor/llama.cpp
if [[ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]]; then
  mkdir -p "$SDIST_DIR"
  TARBALL="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
  if [[ ! -f "$TARBALL" ]]; then
    log "downloading llama-cpp-python==$VERSION sdist from PyPI"
    python3 -m pip download --no-binary :all: --no-deps --no-build-isolation \
      "llama-cpp-python==$VERSION" -d "$SDIST_DIR" >&2 ||
      python3 -m pip download --no-binary :all: --no-deps \
        "llama-cpp-python==$VERSION" -d "$SDIST_DIR" >&2
  fi
  [[ -f "$TARBALL" ]] || { echo "error: expected $TARBALL after pip download" >&2; exit 1; }
  log "extracting $TARBALL"
  rm -rf "$SRC" "$ROOT/extract"
  mkdir -p "$ROOT/extract"
  tar xzf "$TARBALL" -C "$ROOT/extract"
  mv "$ROOT/extract/llama_cpp_python-$VERSION" "$SRC"
  rmdir "$ROOT/extract"
fi
LLAMA_SRC="$SRC/vendor/llama.cpp"

# The sdist keeps the submodule's git dir (.git/modules/vendor/llama.cpp); read HEAD directly so
# this works without git installed.
COMMIT="unknown"
if [[ -f "$SRC/.git/modules/vendor/llama.cpp/HEAD" ]]; then
  COMMIT="$(head -c 40 "$SRC/.git/modules/vendor/llama.cpp/HEAD")"
fi
log "llama-cpp-python $VERSION, llama.cpp commit $COMMIT"

BUILD="$ROOT/build"
log "configuring ($BUILD)"
cmake -S "$LLAMA_SRC" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_RPC=OFF \
  -DGGML_OPENMP=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON >&2
log "building ${TARGETS[*]} with -j$JOBS"
cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" >&2

mkdir -p "$BIN"
for t in "${TARGETS[@]}"; do
  [[ -x "$BUILD/bin/$t" ]] || { echo "error: $BUILD/bin/$t was not built" >&2; exit 1; }
  cp -f "$BUILD/bin/$t" "$BIN/$t"
done
{
  echo "llama-cpp-python $VERSION"
  echo "llama.cpp commit $COMMIT"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with GGML_NATIVE=ON on $(uname -m)"
} >"$ROOT/VERSION"
touch "$STAMP"
log "done: $(tr '\n' ' ' <"$ROOT/VERSION")"
echo "$BIN"
