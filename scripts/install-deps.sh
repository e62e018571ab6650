#!/usr/bin/env bash
# Installs what building and testing lowbit needs on Debian 12, saying what it installs.
# Only missing packages are installed; nothing happens when everything is present.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev
          libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev libcurl4-openssl-dev
          libicu-dev python3 python3-pip python3-venv unzip
          clang libclang-rt-14-dev)  # clang: the libFuzzer target (cmake/fuzz.cmake)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lowbit: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}" >&2
fi
