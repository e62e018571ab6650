#!/usr/bin/env python3
"""Tiny random Llama / Qwen2 models stored as AWQ, GPTQ and compressed-tensors checkpoints, with
Hugging Face transformers reference logits computed from the dequantized weights.

Writes, for every variant in MODELS below (fixed seeds):
  tests/fixtures/tiny_quant/<name>/{config.json, model.safetensors, generation_config.json
                               [, quantize_config.json]}
      an HF model directory whose decoder linears are quantized round-to-nearest (the
      quantizers of FORMATS.md §1.4 / §2.3 / §3.3, no calibration: the format is what is tested)
      and packed with the numpy packers below, written from ../shared/docs/FORMATS.md
      (AWQ GEMM interleave §1.3, GPTQ LSB-first bitstreams incl. 3-bit §2.2, v1 zeros - 1,
      act-order g_idx §2.4, compressed-tensors pack_to_int32 §3.4). Embeddings, norms and
      lm_head stay F16 (what the real tools leave unquantized).
  tests/fixtures/tiny_quant/<name>.json + <name>.logits.f32
      reference greedy tokens and logits (same fixture format as tools/gen_tiny_models.py, read
      by tests/models/model_test_util.h) from transformers in fp32 with every quantized weight
      replaced by its dequantized value, computed in float64 and exactly representable in fp32
      ((q - z) · fp16 scale).
Each dequantized weight is also decoded back from the packed tensors by an independent unpacker
here, so a packer bug cannot hide behind a matching reference.

Rerun (from the repository root; CPU only, ~30 s):
  pip install torch --index-url https://download.pytorch.org/whl/cpu
  pip install transformers safetensors numpy
  python3 tools/gen_quant_tiny_models.py           # all variants
  python3 tools/gen_quant_tiny_models.py awq_llama # only some
Generated with torch 2.15.0, transformers 5.23.0, numpy 2.4.6 (see "versions" in each .json).
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tiny_models as tiny  # noqa: E402  (randomize, run_case, versions, prompt settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny_quant")

# Sizes every method can pack: in_features 64 / 128 (multiples of 32 for 3-bit GPTQ and of the
# group sizes), out_features 32 / 64 / 128.
BASE = dict(vocab_size=tiny.VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            bos_token_id=tiny.BOS, eos_token_id=tiny.EOS, hidden_act="silu", rope_theta=10000.0,
            rms_norm_eps=1e-5, tie_word_embeddings=False)

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

MODELS = [
    dict(name="awq_llama", cls=LlamaConfig, seed=201, method="awq", group=32,
         skip=["layers.1.mlp.down_proj"],
         desc="tiny random Llama, AWQ GEMM 4-bit g32 with zero points, one module not converted"),
    dict(name="gptq_qwen2_act_order", cls=Qwen2Config, seed=202, method="gptq", bits=4, group=32,
         sym=False, desc_act=True, fmt="gptq",
         desc="tiny random Qwen2 (q/k/v bias), GPTQ 4-bit g32 asym, desc_act g_idx, v1 zeros"),
    dict(name="gptq_llama_3bit_v2", cls=LlamaConfig, seed=203, method="gptq", bits=3, group=64,
         sym=False, desc_act=False, fmt="gptq_v2", side_file=True,
         desc="tiny random Llama, GPTQ 3-bit g64 asym, gptq_v2 zeros, config in "
              "quantize_config.json"),
    dict(name="gptq_llama_8bit_sym", cls=LlamaConfig, seed=204, method="gptq", bits=8, group=-1,
         sym=True, desc_act=False, fmt="gptq",
         desc="tiny random Llama, GPTQ 8-bit per-channel sym, v1"),
    dict(name="ct_llama_w4a16_asym", cls=LlamaConfig, seed=205, method="ct", bits=4, group=32,
         sym=False, actorder=True, scale_dtype=torch.bfloat16,
         desc="tiny random Llama, compressed-tensors pack-quantized W4A16_ASYM g32, actorder "
              "group, BF16 scales, ignore lm_head + one regex"),
    dict(name="ct_qwen2_w8a16", cls=Qwen2Config, seed=206, method="ct", bits=8, group=-1,
         sym=True, actorder=False, scale_dtype=torch.float16,
         desc="tiny random Qwen2 (q/k/v bias), compressed-tensors pack-quantized W8A16 channel"),
]


# ---------------------------------------------------------------------------------------------
# Packers (FORMATS.md) and independent unpackers


def pack_stream(values, bits, axis):
    """LSB-first bitstream of `bits`-bit unsigned values along `axis` into int32 words
    (value j at bits [bits*j, bits*j + bits) of the concatenated little-endian words)."""
    v = np.moveaxis(np.asarray(values, dtype=np.uint64), axis, -1)
    n = v.shape[-1]
    words = (n * bits + 31) // 32
    bitarr = ((v[..., :, None] >> np.arange(bits, dtype=np.uint64)) & 1).reshape(
        *v.shape[:-1], n * bits)
    pad = words * 32 - n * bits
    bitarr = np.concatenate([bitarr, np.zeros((*v.shape[:-1], pad), np.uint64)], axis=-1)
    w = (bitarr.reshape(*v.shape[:-1], words, 32) << np.arange(32, dtype=np.uint64)).sum(-1)
    return np.moveaxis(w.astype(np.uint32).view(np.int32), -1, axis)


def unpack_stream(words, bits, n, axis):
    w = np.moveaxis(np.asarray(words).view(np.uint32).astype(np.uint64), axis, -1)
    out = np.zeros((*w.shape[:-1], n), np.int64)
    for j in range(n):
        bit = j * bits
        lo = w[..., bit // 32] >> np.uint64(bit % 32)
        if bit % 32 + bits > 32:
            lo |= w[..., bit // 32 + 1] << np.uint64(32 - bit % 32)
        out[..., j] = (lo & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.moveaxis(out, -1, axis)


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_pack(q):
    """[rows, n] 4-bit -> int32 [rows, n/8], slot i of word c holding column 8c + ORDER[i]."""
    q = np.asarray(q, np.uint32)
    out = np.zeros((q.shape[0], q.shape[1] // 8), np.uint32)
    for i, col in enumerate(AWQ_ORDER):
        out |= q[:, col::8] << np.uint32(4 * i)
    return out.view(np.int32)


def awq_unpack(words, n):
    w = np.asarray(words).view(np.uint32)
    rev = [AWQ_ORDER.index(j) for j in range(8)]
    out = np.zeros((w.shape[0], n), np.int64)
    for j in range(8):
        out[:, j::8] = (w >> np.uint32(4 * rev[j])) & 0xF
    return out


def f16(x):
    return np.asarray(x, np.float32).astype(np.float16)


# ---------------------------------------------------------------------------------------------
# Quantizers: each returns (tensors by suffix, dequantized weight [N, K] float64)


def quant_awq(w, group):
    """AutoAWQ pseudo_quantize_tensor (zero_point=True) per group of `group` inputs."""
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    mx, mn = g.max(-1), g.min(-1)
    scale = f16(np.maximum(mx - mn, 1e-5) / 15).astype(np.float64)
    zero = np.clip(-np.round(mn / scale), 0, 15)
    q = np.clip(np.round(g / scale[..., None]) + zero[..., None], 0, 15)
    deq = ((q - zero[..., None]) * scale[..., None]).reshape(n, k)
    q = q.reshape(n, k).astype(np.int64)
    t = {"qweight": awq_pack(q.T), "qzeros": awq_pack(zero.T.astype(np.int64)),
         "scales": f16(scale.T)}
    # Independent decode of what was written.
    dq = awq_unpack(t["qweight"], n).T
    dz = awq_unpack(t["qzeros"], n).T
    ds = t["scales"].astype(np.float64).T
    again = (dq - np.repeat(dz, group, 1)) * np.repeat(ds, group, 1)
    assert np.array_equal(again, deq)
    return t, deq


def quant_gptq(w, bits, group, sym, desc_act, v2, rng):
    """AutoGPTQ Quantizer.find_params per group (RTN, no Hessian updates); act-order groups
    are formed along a random column order and g_idx is stored un-permuted (§2.4)."""
    n, k = w.shape
    G = k if group < 0 else group
    maxq = 2 ** bits - 1
    order = rng.permutation(k) if desc_act else np.arange(k)
    g_idx = np.empty(k, np.int32)
    g_idx[order] = np.arange(k) // G
    scale = np.zeros((k // G, n))
    zero = np.zeros((k // G, n))
    for gi in range(k // G):
        cols = w[:, g_idx == gi]
        xmin = np.minimum(cols.min(1), 0)
        xmax = np.maximum(cols.max(1), 0)
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = -xmax
        s = f16((xmax - xmin) / maxq).astype(np.float64)
        scale[gi] = s
        zero[gi] = np.full(n, (maxq + 1) // 2) if sym else np.round(-xmin / s)
    sc = scale[g_idx].T  # [n, k]
    zc = zero[g_idx].T
    q = np.clip(np.round(w / sc) + zc, 0, maxq)
    deq = (q - zc) * sc
    stored = zero.astype(np.int64) if v2 else (zero.astype(np.int64) - 1) & maxq
    t = {"qweight": pack_stream(q.T.astype(np.int64), bits, 0),
         "qzeros": pack_stream(stored, bits, 1),
         "scales": f16(scale), "g_idx": g_idx}
    dq = unpack_stream(t["qweight"], bits, k, 0)  # [k, n]
    dz = unpack_stream(t["qzeros"], bits, n, 1)  # [k/G, n]
    if not v2:
        dz = (dz + 1) & maxq
    ds = t["scales"].astype(np.float64)
    again = ((dq - dz[g_idx]) * ds[g_idx]).T
    assert np.array_equal(again, deq)
    return t, deq


def quant_ct(w, bits, group, sym, actorder, scale_dtype, rng):
    """compressed-tensors minmax quantization (§3.3), pack-quantized layout (§3.4)."""
    n, k = w.shape
    G = k if group < 0 else group
    qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    order = rng.permutation(k) if actorder else np.arange(k)
    g_idx = np.empty(k, np.int32)
    g_idx[order] = np.arange(k) // G
    scale = np.zeros((n, k // G))
    zp = np.zeros((n, k // G))
    to_dtype = lambda x: torch.tensor(x, dtype=torch.float32).to(scale_dtype).to(
        torch.float64).numpy()
    for gi in range(k // G):
        cols = w[:, g_idx == gi]
        mn = np.minimum(cols.min(1), 0)
        mx = np.maximum(cols.max(1), 0)
        if sym:
            s = np.maximum(np.abs(mn), np.abs(mx)) / ((qmax - qmin) / 2)
            s = to_dtype(s)
            z = np.zeros(n)
        else:
            s = to_dtype((mx - mn) / (qmax - qmin))
            z = np.clip(np.round(qmin - mn / s), qmin, qmax)
        scale[:, gi] = s
        zp[:, gi] = z
    sc = scale[:, g_idx]
    zc = zp[:, g_idx]
    q = np.clip(np.round(w / sc + zc), qmin, qmax)
    deq = (q - zc) * sc
    off = 2 ** (bits - 1)
    t = {"weight_packed": pack_stream((q + off).astype(np.int64), bits, 1),
         "weight_scale": torch.tensor(scale, dtype=scale_dtype),
         "weight_shape": np.array([n, k], np.int64)}
    if not sym:
        t["weight_zero_point"] = pack_stream((zp + off).astype(np.int64), bits, 0)
    if actorder:
        t["weight_g_idx"] = g_idx
    dq = unpack_stream(t["weight_packed"], bits, k, 1) - off
    dz = unpack_stream(t["weight_zero_point"], bits, n, 0) - off if not sym else 0 * zp
    again = (dq - dz[:, g_idx]) * t["weight_scale"].to(torch.float64).numpy()[:, g_idx]
    assert np.array_equal(again, deq)
    return t, deq


# ---------------------------------------------------------------------------------------------


def quant_config(spec):
    if spec["method"] == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": spec["group"],
                "zero_point": True, "version": "gemm",
                "modules_to_not_convert": spec.get("skip")}
    if spec["method"] == "gptq":
        return {"quant_method": "gptq", "bits": spec["bits"], "group_size": spec["group"],
                "desc_act": spec["desc_act"], "sym": spec["sym"],
                "checkpoint_format": spec["fmt"], "damp_percent": 0.01,
                "true_sequential": True, "static_groups": False, "lm_head": False}
    weights = {"num_bits": spec["bits"], "type": "int", "symmetric": spec["sym"],
               "dynamic": False, "observer": "minmax",
               "strategy": "group" if spec["group"] > 0 else "channel",
               "group_size": spec["group"] if spec["group"] > 0 else None,
               "actorder": "group" if spec["actorder"] else None}
    return {"quant_method": "compressed-tensors", "format": "pack-quantized",
            "quantization_status": "compressed", "global_compression_ratio": None,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": None,
                                          "output_activations": None, "format": None}},
            "ignore": ["lm_head", "re:.*layers\\.1\\.self_attn\\.o_proj$"],
            "kv_cache_scheme": None, "sparsity_config": {}, "transform_config": {},
            "version": "0.12.0"}


def skipped(spec, prefix):
    if spec["method"] == "awq":
        return any(s in prefix for s in spec.get("skip") or [])
    if spec["method"] == "ct":
        return prefix.endswith("layers.1.self_attn.o_proj")
    return False


def build(spec):
    kwargs = dict(BASE)
    if spec["cls"] is Qwen2Config:
        kwargs.update(use_sliding_window=False, sliding_window=None)
    config = spec["cls"](**kwargs)
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tiny.randomize(model, spec["seed"])
    with torch.no_grad():  # every stored float tensor is F16 (parameters only: model.half()
        for p in model.parameters():  # would also round the rope inv_freq buffer)
            p.copy_(p.half().float())
    rng = np.random.default_rng(spec["seed"])
    sd = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            sd[name] = p.detach().half()
        for layer in range(config.num_hidden_layers):
            for lin in LINEARS:
                prefix = f"model.layers.{layer}.{lin}"
                if skipped(spec, prefix):
                    continue
                mod = model.get_submodule(prefix)
                w = mod.weight.detach().double().numpy()
                if spec["method"] == "awq":
                    t, deq = quant_awq(w, spec["group"])
                elif spec["method"] == "gptq":
                    t, deq = quant_gptq(w, spec["bits"], spec["group"], spec["sym"],
                                        spec["desc_act"], spec["fmt"] == "gptq_v2", rng)
                else:
                    t, deq = quant_ct(w, spec["bits"], spec["group"], spec["sym"],
                                      spec["actorder"], spec["scale_dtype"], rng)
                assert np.array_equal(deq.astype(np.float32).astype(np.float64), deq)
                mod.weight.copy_(torch.from_numpy(deq.astype(np.float32)))
                del sd[prefix + ".weight"]
                for suffix, v in t.items():
                    sd[f"{prefix}.{suffix}"] = v if isinstance(v, torch.Tensor) else \
                        torch.from_numpy(np.ascontiguousarray(v))
    d = os.path.join(OUT, spec["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["architectures"] = ["Qwen2ForCausalLM" if spec["cls"] is Qwen2Config
                            else "LlamaForCausalLM"]
    cfg["torch_dtype"] = "float16"
    cfg.pop("dtype", None)
    rp = dict(cfg.pop("rope_parameters", None) or {})
    cfg["rope_theta"] = rp.get("rope_theta", BASE["rope_theta"])
    qc = quant_config(spec)
    if spec.get("side_file"):
        side = dict(qc)
        side.pop("quant_method")
        with open(os.path.join(d, "quantize_config.json"), "w") as f:
            json.dump(side, f, indent=2, sort_keys=True)
            f.write("\n")
    else:
        cfg["quantization_config"] = qc
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": tiny.BOS, "eos_token_id": tiny.EOS, "do_sample": False}, f,
                  indent=2)
        f.write("\n")
    model.eval()
    model.set_attn_implementation("eager")
    return model


def write_reference(spec, model):
    rng = np.random.default_rng(spec["seed"] + 1000)
    cases, blobs = [], []
    for n in tiny.PROMPT_LENGTHS:
        for attempt in range(100):
            ids = [int(x) for x in rng.integers(0, tiny.BOS, size=n)]
            greedy, rows, margin = tiny.run_case(model, ids)
            if margin >= tiny.MIN_MARGIN:
                break
        else:
            raise RuntimeError(f"{spec['name']}: no prompt of length {n} with margin >= 1e-3")
        cases.append({"prompt": f"{n} random token ids (seeded, attempt {attempt})",
                      "input_ids": ids, "greedy_ids": greedy, "logit_rows": int(rows.shape[0]),
                      "min_margin": margin})
        blobs.append(rows.astype("<f4"))
        print(f"  {spec['name']} len {n}: greedy {greedy} min_margin {margin:.4f}")
    v = tiny.versions()
    v.pop("gguf", None)
    meta = {"model": spec["desc"], "generator": "tools/gen_quant_tiny_models.py",
            "versions": v, "vocab_size": tiny.VOCAB, "cases": cases}
    with open(os.path.join(OUT, spec["name"] + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    np.concatenate(blobs).astype("<f4").tofile(os.path.join(OUT, spec["name"] + ".logits.f32"))


def main():
    only = set(sys.argv[1:])
    os.makedirs(OUT, exist_ok=True)
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        print(spec["name"])
        model = build(spec)
        write_reference(spec, model)


if __name__ == "__main__":
    main()
