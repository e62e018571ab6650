#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF fuzz target (fuzz/corpus/gguf/) with llama.cpp's own
writer (gguf-py), so the fuzzer starts from files an independent implementation produced.

Rerun:  pip install gguf==0.19.0 numpy && python3 tools/gen_io_fixtures.py
Output: fuzz/corpus/gguf/*.gguf (each well under 4 KiB; deterministic for a fixed seed).
"""
import os

import numpy as np
import gguf

OUT = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "gguf")


def write(name, fill, alignment=None):
    path = os.path.join(OUT, name)
    w = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(path, os.path.getsize(path), "bytes")


def every_value_type(w):
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -300)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -7)
    w.add_float32("t.f32", 0.125)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "hello gguf")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 3.5)
    w.add_array("t.arr_str", ["a", "bc", ""])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -1.5])
    rng = np.random.default_rng(1)
    w.add_tensor("w.f32", rng.standard_normal((3, 5)).astype(np.float32))


def quantized_types(w):
    rng = np.random.default_rng(2)
    # Raw block bytes: Q8_0 (34 bytes / 32 elements), Q4_0 (18 / 32).
    w.add_tensor("q8", rng.integers(0, 255, (2, 34), dtype=np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q4", rng.integers(0, 255, (1, 36), dtype=np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("f16", rng.standard_normal((4,)).astype(np.float16))


def tiny(w):
    w.add_tensor("x", np.arange(4, dtype=np.float32))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write("every_value_type.gguf", every_value_type)
    write("quantized_types.gguf", quantized_types, alignment=64)
    write("tiny.gguf", tiny, alignment=8)
