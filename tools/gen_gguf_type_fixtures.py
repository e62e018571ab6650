#!/usr/bin/env python3
"""Fixtures for tests/kernels/gguf_types_test.cpp: random blocks of every GGUF K / IQ / TQ /
MXFP4 format (and Q8_1 / Q8_K) with the fp32 values the PyPI `gguf` package
(gguf.quants.dequantize, independent of lowbit) decodes them to. Same layout and helpers as
tools/gen_kernel_fixtures.py (the Q4_0..Q8_0 fixtures).

Rerun (deterministic, seed 4321):
    pip install gguf==0.19.0 numpy
    python3 tools/gen_gguf_type_fixtures.py        # writes tests/fixtures/kernels/gguf/

For each format T: T.bin holds ROWS rows of BLOCKS_PER_ROW blocks (random bytes, so every
bit pattern of the packed fields occurs, with valid random fp16 scales: normal and subnormal,
both signs, never zero), T.f32 the ROWS×K expected values (little-endian fp32).
gguf-py has no decoder for the activation-side types Q8_1 and Q8_K; their expected values are
computed here as d·q (ggml's dequantize_row_q8_K; Q8_1 as Q8_0).
"""
import os
import sys

import numpy as np
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_kernel_fixtures import random_f16  # noqa: E402

ROWS, BLOCKS_PER_ROW = 2, 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "kernels", "gguf")

# Byte offsets of the fp16 fields in each block (ggml-common.h), made valid random scales.
FP16_FIELDS = {
    T.Q8_1: (0, 2), T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2),
    T.Q6_K: (208,), T.IQ2_XXS: (0,), T.IQ2_XS: (0,), T.IQ2_S: (0,), T.IQ3_XXS: (0,),
    T.IQ3_S: (0,), T.IQ1_S: (0,), T.IQ4_NL: (0,), T.IQ4_XS: (0,), T.TQ1_0: (52,),
    T.TQ2_0: (64,), T.IQ1_M: (), T.Q8_K: (), T.MXFP4: (),
}
BLOCK_BYTES = {T.Q8_1: 36}  # gguf-py's size table still says 40 for Q8_1 (ggml: 36)


def blocks(rng, qtype, n_blocks):
    block_bytes = BLOCK_BYTES.get(qtype, GGML_QUANT_SIZES[qtype][1])
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        raw[:, off:off + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.IQ1_M:
        # d is spread over the top nibbles of the four u16 scale words (bytes 48..55).
        d = random_f16(rng, n_blocks).view(np.uint16)
        words = raw[:, 48:56].copy().view("<u2")
        for i in range(4):
            words[:, i] = (words[:, i] & 0x0FFF) | (((d >> (4 * i)) & 0xF) << 12)
        raw[:, 48:56] = words.view(np.uint8)
    elif qtype == T.Q8_K:
        d = (rng.standard_normal(n_blocks) * np.exp2(rng.integers(-30, 4, n_blocks))).astype(
            "<f4")
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    elif qtype == T.MXFP4:
        # E8M0 exponents 0 and 1 (ggml's subnormal path) through 2^13; larger ones overflow.
        raw[:, 0] = np.concatenate([[0, 1], rng.integers(0, 141, n_blocks - 2)]).astype(np.uint8)
    return raw


def expected(raw, qtype):
    if qtype == T.Q8_1:
        d = raw[:, 0:2].copy().view("<f2").astype(np.float32)
        return d * raw[:, 4:].view(np.int8).astype(np.float32)
    if qtype == T.Q8_K:
        d = raw[:, 0:4].copy().view("<f4")
        return d * raw[:, 4:260].view(np.int8).astype(np.float32)
    return quants.dequantize(raw, qtype).astype(np.float32)


TYPES = (T.Q8_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S,
         T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M, T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0, T.MXFP4)


def main():
    rng = np.random.default_rng(4321)
    os.makedirs(OUT, exist_ok=True)
    for qtype in TYPES:
        block_elems = GGML_QUANT_SIZES[qtype][0]
        raw = blocks(rng, qtype, ROWS * BLOCKS_PER_ROW)
        want = expected(raw, qtype).reshape(ROWS, BLOCKS_PER_ROW * block_elems)
        assert np.all(np.isfinite(want)), qtype.name
        assert np.count_nonzero(want) > want.size // 4, qtype.name
        with open(os.path.join(OUT, qtype.name + ".bin"), "wb") as f:
            f.write(raw.tobytes())
        with open(os.path.join(OUT, qtype.name + ".f32"), "wb") as f:
            f.write(want.astype("<f4").tobytes())
        print(f"{qtype.name}: {raw.size} bytes -> {want.size} floats")


if __name__ == "__main__":
    main()
