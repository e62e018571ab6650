#!/usr/bin/env python3
"""Fixture for tests/kernels/q8_activation_test.cpp: llama.cpp Q8_0 / Q8_1 activation blocks.

Q8_0 bytes come from gguf-py (gguf.quants.quantize(x, GGMLQuantizationType.Q8_0), documented
as bit-exact with ggml-quants.c quantize_row_q8_0_ref). gguf-py has no Q8_1 quantizer, so the
Q8_1 bytes are computed here in numpy from quantize_row_q8_1_ref: same d and qs as Q8_0, plus
s = fp16(float32(sum(qs)) * d) with d the fp32 scale before its fp16 rounding.

Rerun (from the repo root; needs `pip install gguf numpy`):
    python3 tools/gen_q8_activation_fixture.py tests/fixtures/kernels/q8_activation.bin
Layout (little-endian): int32 rows, int32 k, float32 x[rows*k],
    Q8_0 blocks (34 B each) for all rows, then Q8_1 blocks (36 B each) for all rows.
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize


def main(out_path: str) -> None:
    rng = np.random.default_rng(20261123)
    rows, k = 4, 160
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[1] *= np.float32(1e-3)
    x[1, 32:64] = 0.0  # a zero block: d = 0, id = 0
    x[2] *= np.float32(1e3)
    # Ties: amax 127 gives d = 1 exactly, so x·id = 62.5 etc. (roundf rounds away from 0).
    x[3, 0:32] = np.array([127, -62.5, 62.5, 0.5, -0.5, 1.5, -1.5, 2.5] + list(range(-24, 0)),
                          dtype=np.float32)
    q80 = quantize(x.reshape(-1), GGMLQuantizationType.Q8_0).tobytes()

    blocks = x.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (blocks * inv).astype(np.float32)
    a = np.abs(v)
    qs = (np.sign(v) * (np.floor(a) + np.floor(2 * (a - np.floor(a))))).astype(np.int8)
    s = (qs.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float32)
    q81 = b"".join(
        d[i].astype(np.float16).tobytes() + s[i].astype(np.float16).tobytes() + qs[i].tobytes()
        for i in range(blocks.shape[0]))
    # Q8_0 from gguf-py and the numpy qs/d must agree (same definition).
    assert all(q80[34 * i + 2:34 * i + 34] == qs[i].tobytes() for i in range(blocks.shape[0]))

    with open(out_path, "wb") as f:
        f.write(struct.pack("<ii", rows, k))
        f.write(x.tobytes())
        f.write(q80)
        f.write(q81)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/kernels/q8_activation.bin")
