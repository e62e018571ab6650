#!/usr/bin/env python3
"""bitsandbytes checkpoints made by the real bitsandbytes package (CPU) for tests/quant/bitsandbytes_test.cpp.

Rerun from the repository root:
    pip install bitsandbytes==0.50.2 transformers==5.23.0 torch safetensors numpy
    python3 tools/gen_bnb_fixtures.py

(was run with bitsandbytes 0.50.2, transformers 5.23.0, torch 2.15.0 CPU)

Writes tests/fixtures/bnb/:
  tiny_nf4_dq/     tests/fixtures/tiny/llama3_rope_f32 saved by transformers with
                   BitsAndBytesConfig(load_in_4bit, nf4, double quantization) — nested absmax,
                   blocks that straddle rows (in_features 48 / 72, blocksize 64), tied lm_head
  tiny_fp4/        tests/fixtures/tiny/llama_hd24_bias_bf16 (biases, untied lm_head), fp4, no
                   double quantization
  tiny_int8/       the same model with load_in_8bit (LLM.int8: I8 weight + SCB + weight_format)
  <name>.json + <name>.logits.f32: reference logits of each — transformers' fp32 forward of the
                   float model whose quantized Linear weights were replaced by bitsandbytes' own
                   dequantization (its default-backend 4-bit decode, see bnb_dequantize_4bit; or
                   CB * SCB / 127 for int8); the bnb CPU 4-bit matmul itself does not run on
                   these shapes.
  layers.safetensors: single layers quantized with bitsandbytes.functional.quantize_4bit at the
                   block sizes transformers never uses (32, 128, 256, 4096) and odd shapes, nf4/fp4,
                   with and without nested absmax, serialized like Linear4bit._save_to_state_dict
                   (QuantState.as_dict(packed=True)), plus "<prefix>.reference" = bitsandbytes'
                   fp32 decode; layers.json lists them.
"""
import json
import os
import shutil

import bitsandbytes
import bitsandbytes.functional as F
import numpy as np
import torch
import transformers
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/bnb")
TINY = os.path.join(ROOT, "tests/fixtures/tiny")
PROMPTS = [[1, 17, 42, 99, 7, 250, 3], [5, 9, 200]]


def bnb_dequantize_4bit(packed, qs):
    """bitsandbytes' reference 4-bit decode, in fp32.

    bitsandbytes 0.50.2's native CPU kernel (cdequantize_blockwise_cpu_*, chosen by
    F.dequantize_4bit on CPU) indexes absmax per row, which is wrong whenever blocks straddle
    rows (in_features not a multiple of blocksize) — most of these fixtures. Its pure-torch
    "default" backend decodes flat blocks as the format defines them, so that one is used; the
    nested absmax is still decoded by F.dequantize_blockwise.
    """
    absmax = qs.absmax
    if qs.nested:
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2).float() + qs.offset
    code = _get_4bit_code(qs.quant_type, packed.device)
    return _dequantize_4bit_compute(packed.view(torch.uint8).reshape(-1), absmax.float(), code,
                                    qs.blocksize, tuple(qs.shape), torch.float32)


def dequantized_linear_weights(qmodel):
    """name -> fp32 weight [out, in] as bitsandbytes decodes it, for every quantized Linear."""
    out = {}
    for name, mod in qmodel.named_modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            out[name] = bnb_dequantize_4bit(mod.weight.data, mod.weight.quant_state)
        elif isinstance(mod, bitsandbytes.nn.Linear8bitLt):
            cb = mod.weight.data.to(torch.float32)
            scb = mod.weight.SCB.to(torch.float32)
            out[name] = cb * scb[:, None] / 127.0
    return out


def make_checkpoint(name, base, config):
    src = os.path.join(TINY, base)
    dst = os.path.join(OUT, name)
    shutil.rmtree(dst, ignore_errors=True)
    qmodel = AutoModelForCausalLM.from_pretrained(
        src, quantization_config=config, device_map="cpu", dtype=torch.float32)
    qmodel.save_pretrained(dst)
    weights = dequantized_linear_weights(qmodel)
    assert weights, "nothing was quantized"

    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        for mod_name, w in weights.items():
            ref.get_submodule(mod_name).weight.copy_(w)
    cases, rows = [], []
    with torch.no_grad():
        for ids in PROMPTS:
            logits = ref(torch.tensor([ids])).logits[0]  # [len, vocab]
            rows.append(logits.numpy().astype(np.float32))
            cases.append({"input_ids": ids, "logit_rows": len(ids)})
    meta = {
        "model": f"tests/fixtures/bnb/{name}",
        "base": f"tests/fixtures/tiny/{base}",
        "quantized_modules": sorted(weights),
        "vocab_size": int(ref.config.vocab_size),
        "cases": cases,
        "bitsandbytes": bitsandbytes.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
    np.concatenate(rows).tofile(os.path.join(OUT, name + ".logits.f32"))
    print(name, "quantized", len(weights), "modules")


def make_layers():
    torch.manual_seed(1234)
    tensors, layers = {}, []
    specs = [  # (prefix, n, k, quant_type, blocksize, nested)
        ("nf4_bs32", 24, 40, "nf4", 32, False),
        ("nf4_bs128_nested", 20, 100, "nf4", 128, True),
        ("fp4_bs256", 33, 48, "fp4", 256, False),
        ("fp4_bs128_nested", 16, 136, "fp4", 128, True),
        ("nf4_bs4096_nested", 70, 70, "nf4", 4096, True),
        ("nf4_bs64_odd", 7, 9, "nf4", 64, False),  # n·k odd: a half-filled last byte
    ]
    for prefix, n, k, qtype, bs, nested in specs:
        w = torch.randn(n, k) * torch.exp(torch.randn(n, 1))
        packed, qs = F.quantize_4bit(w, blocksize=bs, quant_type=qtype, compress_statistics=nested)
        tensors[prefix + ".weight"] = packed
        for key, value in qs.as_dict(packed=True).items():
            tensors[prefix + ".weight." + key] = value
        ref = bnb_dequantize_4bit(packed, qs)
        # The round trip is within half a code step of the input (the largest NF4/FP4 gap is
        # 1/3 of the block's absmax): guards against a decode that is consistent but wrong.
        flat = w.reshape(-1)
        block_amax = torch.stack([flat[i:i + bs].abs().max() for i in range(0, flat.numel(), bs)])
        slack = 0.05 if nested else 1e-6  # nested: absmax itself carries 8-bit error
        bound = block_amax.repeat_interleave(bs)[:flat.numel()] * (0.5 / 3 + slack)
        worst = ((ref.reshape(-1) - flat).abs() / bound).max().item()
        print(prefix, "worst error / bound", worst)
        assert worst <= 1, prefix
        tensors[prefix + ".reference"] = ref.contiguous()
        layers.append({"prefix": prefix, "out_features": n, "in_features": k, "quant_type": qtype,
                       "blocksize": bs, "nested": nested})
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, "layers.safetensors"))
    with open(os.path.join(OUT, "layers.json"), "w") as f:
        json.dump({"bitsandbytes": bitsandbytes.__version__, "layers": layers}, f, indent=1)
    print("layers:", len(layers))


def main():
    os.makedirs(OUT, exist_ok=True)
    make_checkpoint("tiny_nf4_dq", "llama3_rope_f32",
                    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                       bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=torch.float32))
    make_checkpoint("tiny_fp4", "llama_hd24_bias_bf16",
                    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4",
                                       bnb_4bit_compute_dtype=torch.float32))
    make_checkpoint("tiny_int8", "llama_hd24_bias_bf16", BitsAndBytesConfig(load_in_8bit=True))
    make_layers()


if __name__ == "__main__":
    main()
