#!/usr/bin/env python3
"""Fixtures for tests/kernels/dequantize_fixture_test.cpp: random weight blocks and the fp32
values the PyPI `gguf` package (gguf.quants.dequantize, an implementation independent of
lowbit) decodes them to.

Rerun (deterministic, seed 1234):
    pip install gguf==0.19.0 numpy
    python3 tools/gen_kernel_fixtures.py            # writes tests/fixtures/kernels/

For each format T it writes tests/fixtures/kernels/T.bin (raw bytes of ROWS rows of K
elements) and T.f32 (the ROWS×K expected fp32 values, little-endian). Scales are random
finite fp16 values (normal and subnormal, both signs), quants random bytes, so every bit
pattern of the packed fields occurs; F16/BF16 are random finite values.
"""
import os

import numpy as np
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

ROWS, K = 3, 256  # 8 blocks of 32 per row
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "kernels")


def random_f16(rng, n):
    """Finite fp16 values spanning subnormals to ~2^6 in magnitude, never zero."""
    mant = rng.uniform(1.0, 2.0, n)
    exp = rng.integers(-26, 6, n).astype(np.float64)
    sign = rng.choice([-1.0, 1.0], n)
    v = (sign * mant * np.exp2(exp)).astype(np.float16)
    v[v == 0] = np.float16(2.0 ** -24)
    return v


def blocks(rng, qtype, n_blocks):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # d (and m for the *_1 types) are the leading fp16 fields.
    n_scales = 2 if qtype in (T.Q4_1, T.Q5_1) else 1
    for s in range(n_scales):
        raw[:, 2 * s:2 * s + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def main():
    rng = np.random.default_rng(1234)
    os.makedirs(OUT, exist_ok=True)
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        raw = blocks(rng, qtype, ROWS * K // 32).reshape(ROWS, -1)
        expected = quants.dequantize(raw, qtype).astype(np.float32).reshape(ROWS, K)
        write(qtype.name, raw.tobytes(), expected)
    f16 = random_f16(rng, ROWS * K)
    write("F16", f16.tobytes(), quants.dequantize(f16.view(np.uint8).reshape(ROWS, -1), T.F16)
          .astype(np.float32).reshape(ROWS, K))
    # BF16: random fp32 values cut to their top 16 bits (finite by construction).
    f32 = (rng.standard_normal(ROWS * K) * np.exp2(rng.integers(-20, 20, ROWS * K))).astype(
        np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    write("BF16", bf16.tobytes(), quants.dequantize(bf16.view(np.uint8).reshape(ROWS, -1), T.BF16)
          .astype(np.float32).reshape(ROWS, K))


def write(name, raw, expected):
    assert np.all(np.isfinite(expected)), name
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(raw)
    with open(os.path.join(OUT, name + ".f32"), "wb") as f:
        f.write(expected.astype("<f4").tobytes())
    print(f"{name}: {len(raw)} bytes -> {expected.size} floats")


if __name__ == "__main__":
    main()
