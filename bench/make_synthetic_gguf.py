#!/usr/bin/env python3
"""A Llama-3.2-1B-shaped GGUF with random F16 weights, for CPU speed benchmarks of a model that
does not fit in the cache (the default SmolLM2-135M does, on machines with a large L3).

  python3 bench/make_synthetic_gguf.py --tokenizer-from SMOLLM2.gguf --out llama1b-F16.gguf
  llama-quantize llama1b-F16.gguf llama1b-Q4_0.gguf Q4_0      # then bench/run-cpu-bench.sh

Shape: hidden 2048, 16 layers, 32 query / 8 KV heads of 64, MLP 8192, tied embeddings; the
vocabulary (and the tokenizer metadata) is copied from --tokenizer-from, so both engines load
it. Weights are uniform in ±sqrt(3 / fan_in) (the variance of a trained layer), norms near 1:
the text it generates is noise, its speed is that of a real model of this shape.
"""
import argparse

import gguf
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-from", required=True, help="a llama-architecture GGUF")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    src = gguf.GGUFReader(a.tokenizer_from)
    hidden, layers, heads, kv_heads, head_dim, inter = 2048, 16, 32, 8, 64, 8192
    tokens = src.fields["tokenizer.ggml.tokens"]
    vocab = len(tokens.data)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("synthetic Llama-3.2-1B-shaped (random weights)")
    w.add_context_length(8192)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # The tokenizer as stored in the source file.
    for name, field in src.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                vals = [bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data]
            else:
                vals = [field.parts[i].tolist()[0] for i in field.data]
            w.add_array(name, vals)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vtype)

    rng = np.random.default_rng(a.seed)

    def uniform(shape, fan_in):
        s = np.sqrt(3.0 / fan_in)
        return rng.uniform(-s, s, size=shape).astype(np.float16)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", uniform((vocab, hidden), hidden))
    w.add_tensor("output_norm.weight", norm(hidden))
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm(hidden))
        w.add_tensor(p + "attn_q.weight", uniform((heads * head_dim, hidden), hidden))
        w.add_tensor(p + "attn_k.weight", uniform((kv_heads * head_dim, hidden), hidden))
        w.add_tensor(p + "attn_v.weight", uniform((kv_heads * head_dim, hidden), hidden))
        w.add_tensor(p + "attn_output.weight", uniform((hidden, heads * head_dim), heads * head_dim))
        w.add_tensor(p + "ffn_norm.weight", norm(hidden))
        w.add_tensor(p + "ffn_gate.weight", uniform((inter, hidden), hidden))
        w.add_tensor(p + "ffn_up.weight", uniform((inter, hidden), hidden))
        w.add_tensor(p + "ffn_down.weight", uniform((hidden, inter), inter))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}: vocab {vocab}, {layers} layers of hidden {hidden}")


if __name__ == "__main__":
    main()
