#!/usr/bin/env python3
"""Expected bytes for lowbit's GGUF quantizers (src/kernels/cpu/gguf_quantize.h).

Makes tests/fixtures/quantizer/:
  input.f32          ROWS x COLS float32 rows (mixed distributions: gaussian, uniform,
                     outliers, one-signed, tiny, huge, an all-zero 32-block and 256-block)
  imatrix.f32        COLS positive float32 importance weights
  <TYPE>.bin         llama.cpp's bytes for the rows without an importance matrix
  <TYPE>.imatrix.bin the same with imatrix.f32 (types whose quantizer uses it)
The bytes come from llama.cpp itself: tools/ggml_quantize_oracle.c calls ggml_quantize_chunk
(what llama-quantize runs) from the libggml-base.a of tools/build-llama-cpp.sh's build. The
32-element types are cross-checked against the PyPI gguf package's gguf/quants.py.

Rerun (needs gcc, numpy, gguf==0.19.0 and a llama.cpp build from tools/build-llama-cpp.sh):
  LLAMA_CPP_DIR=~/.cache/lowbit/llama.cpp/0.3.36 python3 tools/gen_gguf_quantize_fixtures.py
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/quantizer"
ROWS, COLS = 12, 512
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "F16", "BF16",
         "IQ3_XXS", "IQ3_S", "IQ2_S", "IQ1_M"]
# ggml's quantizers of these assert an importance matrix: only <TYPE>.imatrix.bin.
IMATRIX_ONLY_TYPES = ["IQ2_XXS", "IQ2_XS", "IQ1_S"]
IMATRIX_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                 "IQ4_NL", "IQ4_XS", "IQ3_XXS", "IQ3_S", "IQ2_S", "IQ1_M"] + IMATRIX_ONLY_TYPES


def build_oracle(llama_dir: Path) -> Path:
    src = llama_dir / "src/vendor/llama.cpp"
    lib = llama_dir / "build/ggml/src/libggml-base.a"
    exe = Path(tempfile.gettempdir()) / "ggml_quantize_oracle"
    subprocess.run(["gcc", "-O2", f"-I{src}/ggml/include", str(ROOT / "tools/ggml_quantize_oracle.c"),
                    str(lib), "-lm", "-lpthread", "-fopenmp", "-lstdc++", "-o", str(exe)], check=True)
    return exe


def make_rows(rng: np.random.Generator) -> np.ndarray:
    x = np.empty((ROWS, COLS), np.float32)
    x[0] = rng.standard_normal(COLS)
    x[1] = rng.uniform(-1, 1, COLS)
    x[2] = rng.standard_normal(COLS) * 0.02
    x[2][rng.integers(0, COLS, 6)] = rng.choice([-1.5, 2.0, 3.0], 6)  # outliers
    x[3] = np.abs(rng.standard_normal(COLS)) + 0.1  # all positive
    x[4] = -np.abs(rng.standard_normal(COLS)) * 3  # all negative
    x[5] = rng.standard_normal(COLS) * 1e-5  # tiny
    x[6] = rng.standard_normal(COLS) * 300  # large
    x[7] = rng.standard_t(2, COLS)  # heavy tails
    x[8] = rng.standard_normal(COLS)
    x[8][64:96] = 0  # one all-zero 32-block
    x[9] = rng.standard_normal(COLS)
    x[9][256:512] = 0  # one all-zero super-block
    x[10] = np.round(rng.standard_normal(COLS) * 4) / 4  # ties on a grid
    x[11] = rng.laplace(0, 0.05, COLS)
    return x


def main() -> None:
    llama_dir = Path(os.environ.get("LLAMA_CPP_DIR", Path.home() / ".cache/lowbit/llama.cpp/0.3.36"))
    exe = build_oracle(llama_dir)
    rng = np.random.default_rng(20261123)
    x = make_rows(rng)
    imatrix = (rng.gamma(0.7, 1.0, COLS) + 1e-3).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "input.f32").write_bytes(x.tobytes())
    (OUT / "imatrix.f32").write_bytes(imatrix.tobytes())
    for name in TYPES + IMATRIX_ONLY_TYPES:
        tid = int(T[name])
        variants = [False, True] if name in IMATRIX_TYPES else [False]
        if name in IMATRIX_ONLY_TYPES:
            variants = [True]
        for with_im in variants:
            out = OUT / (f"{name}.imatrix.bin" if with_im else f"{name}.bin")
            cmd = [str(exe), str(tid), str(ROWS), str(COLS), str(OUT / "input.f32"), str(out)]
            if with_im:
                cmd.append(str(OUT / "imatrix.f32"))
            subprocess.run(cmd, check=True)
            got = out.read_bytes()
            if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16") and not with_im:
                ref = quants.quantize(x, T[name]).tobytes()
                if ref != got:
                    sys.exit(f"{name}: ggml and gguf-py disagree")
            print(f"{out.relative_to(ROOT)}: {len(got)} bytes")


if __name__ == "__main__":
    main()
