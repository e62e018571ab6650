#!/usr/bin/env python3
"""Tiny random Llama-family models + Hugging Face transformers reference outputs.

Writes, for every variant in MODELS below (fixed seeds, so reruns give the same bytes for the
same library versions):
  tests/fixtures/tiny/<name>/{config.json, model.safetensors, generation_config.json}
      an HF model directory; weights stored in the variant's dtype (F32 / F16 / BF16);
  tests/fixtures/tiny/<name>.json + <name>.logits.f32
      reference greedy tokens and logits from transformers (fp32 CPU, eager attention),
      computed from the model reloaded from that directory with dtype=float32, i.e. from
      exactly the stored (rounded) weights. Fixture format (shared with
      tools/gen_hf_reference.py, read by tests/models/model_test_util.h):
        {"model", "generator", "versions", "vocab_size",
         "cases": [{"prompt", "input_ids", "greedy_ids", "logit_rows", "min_margin"}]}
      .logits.f32 = little-endian float32, each case's logit_rows rows of vocab_size floats;
      row 0 is at the last prompt position (predicts greedy_ids[0]), row i follows feeding
      greedy_ids[i-1]. A prompt whose top-1/top-2 logit gap gets below 1e-3 at any step is
      redrawn, so greedy comparisons are not fragile.
  tests/fixtures/tiny/<name>.gguf  for the variants with gguf=True: the same weights as F32
      tensors with llama.cpp names and metadata (docs FORMATS.md §8; Q/K rows permuted for
      arch "llama" as convert_hf_to_gguf does, llama3 rope scaling as rope_freqs.weight) and a
      small byte-level BPE tokenizer block ("gpt2", 300 tokens). They reuse <name>.json.

The variants cover what lowbit's llama.cpp must match: llama (tied, SmolLM-like), llama3 rope
scaling (all three frequency bands hit), linear rope scaling, explicit head_dim != hidden/heads
with attention_bias + mlp_bias and untied lm_head, mistral, qwen2 (q/k/v bias, untied), qwen3
(q/k RMSNorm, head_dim 32, tied, attention_bias so o_proj has a bias too). Most config.json files
use the transformers-4 keys found on the Hub (rope_theta + rope_scaling); two keep the
transformers-5 "rope_parameters" object.

Rerun (from the repository root; CPU only, ~1 minute):
  pip install torch --index-url https://download.pytorch.org/whl/cpu
  pip install transformers safetensors gguf numpy
  python3 tools/gen_tiny_models.py            # all models
  python3 tools/gen_tiny_models.py qwen3_tiny # only some
Generated with torch 2.15.0, transformers 5.23.0, gguf 0.19.0, numpy 2.4.6 (see "versions").
"""

import json
import math
import os
import shutil
import sys

import gguf
import numpy as np
import safetensors
import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny")
VOCAB = 300
BOS, EOS = 298, 299  # the two special tokens of the GGUF tokenizer below
N_NEW = 8
PROMPT_LENGTHS = (7, 13)
MIN_MARGIN = 1e-3

# Shared shape: small enough that an F32 directory stays ~250 KB (vocab 300 is fixed).
BASE = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            bos_token_id=BOS, eos_token_id=EOS, hidden_act="silu")

MODELS = [
    dict(name="llama_tied_f32", cls=LlamaConfig, dtype=torch.float32, seed=101, legacy_rope=True,
         desc="tiny random Llama (SmolLM-like: tied embeddings), F32",
         cfg=dict(rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    dict(name="llama3_rope_f32", cls=LlamaConfig, dtype=torch.float32, seed=102,
         legacy_rope=True, gguf=True,
         desc="tiny random Llama 3.2-style (llama3 rope scaling, tied), F32",
         # head_dim 12, theta 5e5: wavelengths 6.3, 56, 500, ... against original context 64
         # (high-freq cut 16, low-freq cut 64) hit the unchanged, smoothed and divided bands.
         cfg=dict(rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 64})),
    dict(name="llama_linear_f32", cls=LlamaConfig, dtype=torch.float32, seed=103,
         legacy_rope=False, desc="tiny random Llama, linear rope scaling x2 (rope_parameters), F32",
         cfg=dict(rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_scaling={"rope_type": "linear", "factor": 2.0})),
    dict(name="llama_hd24_bias_bf16", cls=LlamaConfig, dtype=torch.bfloat16, seed=104,
         legacy_rope=True, gguf=True,
         desc="tiny random Llama, head_dim 24 != 48/4, attention_bias + mlp_bias, untied, BF16",
         cfg=dict(head_dim=24, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                  rope_theta=10000.0, rms_norm_eps=1e-5)),
    dict(name="mistral_f32", cls=MistralConfig, dtype=torch.float32, seed=105, legacy_rope=True,
         desc="tiny random Mistral (untied, theta 1e6, intermediate 40), F32",
         cfg=dict(intermediate_size=40, rope_theta=1000000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  sliding_window=None)),
    dict(name="qwen2_f16", cls=Qwen2Config, dtype=torch.float16, seed=106, legacy_rope=True,
         gguf=True, desc="tiny random Qwen2 (q/k/v bias, untied, theta 1e6), F16",
         cfg=dict(rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  use_sliding_window=False, sliding_window=None)),
    dict(name="qwen3_bf16", cls=Qwen3Config, dtype=torch.bfloat16, seed=107, legacy_rope=False,
         gguf=True,
         desc="tiny random Qwen3 (q/k norm, head_dim 32, attention_bias, tied; rope_parameters), "
              "BF16",
         cfg=dict(head_dim=32, attention_bias=True, tie_word_embeddings=True,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False,
                  sliding_window=None)),
]


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "gguf": _gguf_version(),
            "numpy": np.__version__}


def _gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "unknown"


def randomize(model, seed):
    """Non-trivial init: logits far from flat, norms around 1, non-zero biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.15 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.3 * noise)
            elif name.startswith("lm_head"):
                p.copy_(0.25 * noise)
            else:
                p.copy_(0.15 * noise)


def make_config(spec):
    kwargs = dict(BASE)
    kwargs.update(spec["cfg"])
    scaling = kwargs.pop("rope_scaling", None)
    theta = kwargs.pop("rope_theta")
    rope = {"rope_type": "default", "rope_theta": theta}
    if scaling:
        rope.update(scaling)
    return spec["cls"](rope_parameters=rope, **kwargs), rope


def write_hf_dir(spec):
    """Saves the random model in its dtype; returns (directory, intended rope parameters)."""
    config, rope = make_config(spec)
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize(model, spec["seed"])
    model = model.to(spec["dtype"])
    d = os.path.join(OUT, spec["name"])
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    for f in os.listdir(d):  # keep exactly the three files
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    if spec["legacy_rope"]:
        # The layout of configs written by transformers 4 (most Hub checkpoints).
        rp = dict(cfg.pop("rope_parameters"))
        cfg["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = rp
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": BOS, "eos_token_id": EOS, "do_sample": False}, f, indent=2)
        f.write("\n")
    return d, rope


def load_reference_model(d, spec, rope):
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    got = dict(model.config.rope_parameters)
    for k, v in rope.items():  # the file must mean what we intended
        assert got.get(k) == v, f"{d}: rope parameter {k} read back as {got.get(k)}, wanted {v}"
    for p in model.parameters():
        assert p.dtype == torch.float32
    return model


@torch.no_grad()
def run_case(model, ids):
    """Greedy decoding with full recomputation (no cache): returns tokens, rows [N_NEW, V]."""
    seq = list(ids)
    rows = []
    for _ in range(N_NEW):
        logits = model(torch.tensor([seq])).logits[0, -1].to(torch.float32)
        rows.append(logits.numpy().copy())
        seq.append(int(torch.argmax(logits)))
    greedy = seq[len(ids):]
    margins = []
    for r in rows:
        top = np.sort(r)[-2:]
        margins.append(float(top[1] - top[0]))
    return greedy, np.stack(rows), min(margins)


def write_reference(spec, model):
    rng = np.random.default_rng(spec["seed"] + 1000)
    cases, blobs = [], []
    for n in PROMPT_LENGTHS:
        for attempt in range(100):
            ids = [int(x) for x in rng.integers(0, BOS, size=n)]
            greedy, rows, margin = run_case(model, ids)
            if margin >= MIN_MARGIN:
                break
        else:
            raise RuntimeError(f"{spec['name']}: no prompt of length {n} with margin >= 1e-3")
        cases.append({"prompt": f"{n} random token ids (seeded, attempt {attempt})",
                      "input_ids": ids, "greedy_ids": greedy, "logit_rows": int(rows.shape[0]),
                      "min_margin": margin})
        blobs.append(rows.astype("<f4"))
        spread = float(rows.max() - rows.min())
        print(f"  {spec['name']} len {n}: greedy {greedy} min_margin {margin:.4f} "
              f"logit range {spread:.2f}")
    meta = {"model": spec["desc"], "generator": "tools/gen_tiny_models.py",
            "versions": versions(), "vocab_size": VOCAB, "cases": cases}
    with open(os.path.join(OUT, spec["name"] + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    np.concatenate(blobs).astype("<f4").tofile(os.path.join(OUT, spec["name"] + ".logits.f32"))


# ---------------------------------------------------------------------------------------------
# GGUF


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode character table (byte-level BPE)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_bpe(n_merges):
    """256 byte tokens + n_merges merges learned on a fixed English text (plain BPE)."""
    table = bytes_to_unicode()
    tokens = [table[b] for b in range(256)]
    text = ("Once upon a time there was a little girl named Lily. She liked to play in the park "
            "with her friends. One day she saw a big red ball under the tree and she was happy. "
            "The sun was shining and the birds were singing in the trees.")
    words = [[table[b] for b in (" " + w if i else w).encode()] for i, w in
             enumerate(text.split(" "))]
    merges = []
    while len(merges) < n_merges:
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(f"{best[0]} {best[1]}")
        tokens.append(best[0] + best[1])
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i:i + 2] = [best[0] + best[1]]
                i += 1
    return tokens, merges


def permute_rows(w, n_head):
    """convert_hf_to_gguf LlamaModel.permute: rotate_half pairs -> adjacent pairs (§8.4)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2)
            .reshape(w.shape))


def llama3_rope_factors(theta, head_dim, rs):
    """convert_hf_to_gguf LlamaModel.generate_extra_tensors: rope_freqs.weight."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    orig, lo, hi, factor = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                            rs["high_freq_factor"], rs["factor"])
    low_wavelen, high_wavelen = orig / lo, orig / hi
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (orig / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(spec, model):
    cfg = model.config
    arch = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}[cfg.model_type]
    nh, nkv, H = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
    hd = getattr(cfg, "head_dim", None) or H // nh
    rope = cfg.rope_parameters
    path = os.path.join(OUT, spec["name"] + ".gguf")
    w = gguf.GGUFWriter(path, arch)
    w.add_name(spec["name"])
    w.add_file_type(0)  # ALL_F32
    w.add_quantization_version(2)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(H)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_rope_dimension_count(hd)
    if hd != H // nh:
        w.add_key_length(hd)
        w.add_value_length(hd)
    w.add_vocab_size(cfg.vocab_size)
    if rope["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])

    tokens, merges = tiny_bpe(VOCAB - 2 - 256)
    tokens += ["<|begin_of_text|>", "<|end_of_text|>"]
    assert len(tokens) == VOCAB and len(set(tokens)) == VOCAB
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch != "llama" else "llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([1] * (VOCAB - 2) + [3, 3])
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_add_bos_token(False)

    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    tied = cfg.tie_word_embeddings

    def put(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    if arch == "llama" and rope["rope_type"] == "llama3":
        put("rope_freqs.weight", llama3_rope_factors(rope["rope_theta"], hd, rope))
    put("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        pre = f"model.layers.{i}."
        for hf, gg in names.items():
            for kind in ("weight", "bias"):
                key = pre + hf + "." + kind
                if key not in sd:
                    continue
                arr = sd[key]
                if arch == "llama" and hf == "self_attn.q_proj":
                    arr = permute_rows(arr, nh)
                elif arch == "llama" and hf == "self_attn.k_proj":
                    arr = permute_rows(arr, nkv)
                put(f"blk.{i}.{gg}.{kind}", arr)
    put("output_norm.weight", sd["model.norm.weight"])
    if not tied:
        put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    check_gguf(path, sd, arch, nh, nkv)


def check_gguf(path, sd, arch, nh, nkv):
    """Reads the file back with gguf-py: names, ne order and values as intended."""
    r = gguf.GGUFReader(path)
    t = {x.name: x for x in r.tensors}
    q = t["blk.0.attn_q.weight"]
    ref = sd["model.layers.0.self_attn.q_proj.weight"]
    assert list(q.shape) == [ref.shape[1], ref.shape[0]], q.shape  # ne = [K, N]
    data = np.array(q.data).reshape(ref.shape)
    expect = permute_rows(ref, nh) if arch == "llama" else ref
    assert np.array_equal(data, expect)
    assert np.array_equal(np.array(t["token_embd.weight"].data).reshape(-1),
                          sd["model.embed_tokens.weight"].reshape(-1))


def gguf_numpy_logits(path, ids):
    """Independent check of a written GGUF: a numpy forward pass with llama.cpp's semantics
    (adjacent-pair RoPE for arch llama, NEOX pairs otherwise; rope_freqs divide frequencies),
    reading only the file. Returns logits [len(ids), vocab] (float64)."""
    r = gguf.GGUFReader(path)
    kv = {f.name: f.contents() for f in r.fields.values()}
    arch = kv["general.architecture"]
    t = {x.name: np.array(x.data, dtype=np.float64).reshape(
        [int(d) for d in reversed(x.shape)]) for x in r.tensors}
    H, nh = kv[f"{arch}.embedding_length"], kv[f"{arch}.attention.head_count"]
    nkv, eps = kv[f"{arch}.attention.head_count_kv"], kv[f"{arch}.attention.layer_norm_rms_epsilon"]
    hd = kv.get(f"{arch}.attention.key_length", H // nh)
    inv = 1.0 / (np.float64(kv[f"{arch}.rope.freq_base"]) ** (np.arange(0, hd, 2) / hd))
    if kv.get(f"{arch}.rope.scaling.type") == "linear":
        inv = inv / kv[f"{arch}.rope.scaling.factor"]
    if "rope_freqs.weight" in t:
        inv = inv / t["rope_freqs.weight"]
    n = len(ids)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # [n, heads, hd]
        if arch == "llama":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
            return out
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def lin(x, name):
        y = x @ t[name + ".weight"].T
        return y + t[name + ".bias"] if name + ".bias" in t else y

    x = t["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(kv[f"{arch}.block_count"]):
        b = f"blk.{i}."
        h = norm(x, t[b + "attn_norm.weight"])
        q = lin(h, b + "attn_q").reshape(n, nh, hd)
        k = lin(h, b + "attn_k").reshape(n, nkv, hd)
        v = lin(h, b + "attn_v").reshape(n, nkv, hd)
        if b + "attn_q_norm.weight" in t:
            q, k = norm(q, t[b + "attn_q_norm.weight"]), norm(k, t[b + "attn_k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + lin(np.einsum("hqk,khd->qhd", p, v).reshape(n, nh * hd), b + "attn_output")
        h = norm(x, t[b + "ffn_norm.weight"])
        g = lin(h, b + "ffn_gate")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, b + "ffn_up"), b + "ffn_down")
    out = t.get("output.weight", t["token_embd.weight"])
    return norm(x, t["output_norm.weight"]) @ out.T


def verify_gguf(spec):
    """The GGUF file alone, run by numpy, reproduces the transformers logits rows."""
    path = os.path.join(OUT, spec["name"] + ".gguf")
    with open(os.path.join(OUT, spec["name"] + ".json")) as f:
        meta = json.load(f)
    ref = np.fromfile(os.path.join(OUT, spec["name"] + ".logits.f32"), dtype="<f4")
    ref = ref.reshape(-1, meta["vocab_size"])
    row = 0
    for c in meta["cases"]:
        seq = c["input_ids"] + c["greedy_ids"][:-1]
        got = gguf_numpy_logits(path, seq)[len(c["input_ids"]) - 1:]
        want = ref[row:row + c["logit_rows"]]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5, f"{path}: numpy forward differs from transformers by {err}"
        row += c["logit_rows"]
    print(f"  {spec['name']}.gguf: numpy llama.cpp-style forward matches (rel err {err:.2e})")


def main(argv):
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    wanted = set(argv)
    for spec in MODELS:
        if wanted and spec["name"] not in wanted:
            continue
        d, rope = write_hf_dir(spec)
        model = load_reference_model(d, spec, rope)
        write_reference(spec, model)
        if spec.get("gguf"):
            write_gguf(spec, model)
            verify_gguf(spec)
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        print(f"  {spec['name']}: {sizes}")


if __name__ == "__main__":
    main(sys.argv[1:])
