#!/usr/bin/env python3
"""Real AWQ / GPTQ / compressed-tensors checkpoints made by the ecosystem's own tools on CPU, plus
reference logits from each tool's own dequantization run through an fp32 transformers forward.

Each tool lives in its own virtual environment (their pins conflict); run from the repository
root, one tool per run (the venvs take torch/transformers/gguf/... from the system site-packages,
see tools/gen_hf_reference.py for those):
    python3 -m venv --system-site-packages /tmp/venv-llmc && . /tmp/venv-llmc/bin/activate
    pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru==0.7.3
    pip install datasets==5.2.0 nvidia-ml-py pillow
    python3 tools/gen_quantized_checkpoints.py --tool llmcompressor [--model smol]

    python3 -m venv --system-site-packages /tmp/venv-gptq && . /tmp/venv-gptq/bin/activate
    BUILD_CUDA_EXT=0 pip install gptqmodel==7.7.0
    GPTQMODEL_CPU_WORKERS=2 python3 tools/gen_quantized_checkpoints.py --tool gptqmodel [--model smol]

    python3 -m venv --system-site-packages /tmp/venv-awq && . /tmp/venv-awq/bin/activate
    pip install autoawq==0.2.9
    python3 tools/gen_quantized_checkpoints.py --tool autoawq [--model smol]
Generated with torch 2.15.0 (CPU), transformers 5.23.0 and the tool versions above (recorded per
fixture under "versions"; llmcompressor 0.14.0.1 asks for transformers<=5.17 but runs with 5.23,
hence --no-deps). A few minutes per tool for stories260K on 2 cores; ~10-30 min for SmolLM2.

Models:
  --model stories (default): ../shared/models/stories260K/hf (fp32 Llama, dim 64, 5 layers,
      ffn 172, vocab 512, tied embeddings). Outputs tests/fixtures/quantized/<name>/{config.json,
      model.safetensors} and tests/fixtures/quantized/<name>.{json,logits.f32}.
  --model smol: SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-default-model.sh) dequantized to an
      fp32 HF dir by transformers' GGUF loader; same layout under
      ${LOWBIT_CACHE:-~/.cache/lowbit}/quantized/smollm2-135m/ (not committed; the model test reads
      it through LOWBIT_QUANT_CKPT_DIR).
Calibration: the TinyStories text ../shared/data/tinystories/*.txt split at <|endoftext|>, each
story tokenized by the model's own tokenizer (stories260K: transformers' tokenizer of
stories260K-F32.gguf, BOS first) and cut to 128 (stories) / 256 (smol) tokens; 64 stories.

Shapes: stories260K's in_features are 64 (q/k/v/o/gate/up) and 172 (down_proj); 172 is not a
multiple of 32, 8 (AWQ packs along N, so gate/up with N=172 cannot be AWQ-GEMM packed) nor of the
4-bit GPTQ pack factor. Each recipe says how it treats down_proj (and, for AWQ, the MLP).

Reference (<name>.json + <name>.logits.f32, the layout of tools/gen_hf_reference.py plus
"method", "tool", "recipe", "checks"): the checkpoint is read back with the tool's own
dequantization code (compressed-tensors' compressor.decompress, GPTQModel's loader +
TorchLinear.dequantize_weight, AutoAWQ's dequantize_gemm), scales upcast to float32 first so the
dequantized weights are exact; those weights (and the checkpoint's unquantized tensors, upcast to
fp32) go into a float32 LlamaForCausalLM (eager attention) which gives greedy ids and logits.
Independent check: this script's own numpy decoders of the on-disk formats (../shared/docs/
FORMATS.md §1-3) must reproduce the tool's dequantized weights exactly.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
STORIES_HF = os.path.join(SHARED, "models", "stories260K", "hf")
STORIES_GGUF_DIR = os.path.join(SHARED, "models", "stories260K", "gguf")
TINYSTORIES = os.path.join(SHARED, "data", "tinystories", "TinyStoriesV2-GPT4-valid.first100.txt")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "quantized")
CACHE = os.environ.get("LOWBIT_CACHE", os.path.expanduser("~/.cache/lowbit"))

MODELS = {
    "stories": {"prompts": ["Once upon a time", "Lily and Tom went to the park", "The cat sat on"],
                "n_new": 12, "calib_len": 128},
    "smol": {"prompts": ["The capital of France is",
                         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"],
             "n_new": 6, "calib_len": 256},
}
N_CALIB = 64
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
LINEARS = ATTN + ["gate_proj", "up_proj", "down_proj"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def versions(tool_pkgs):
    v = {"torch": torch.__version__, "transformers": version("transformers"),
         "safetensors": version("safetensors"), "numpy": np.__version__}
    for p in tool_pkgs:
        v[p] = version(p)
    return v


# ---------------------------------------------------------------------------------------------
# Source models (a complete HF dir with a tokenizer: the tools insist on one) and calibration.

def prepare_source(model, work):
    src = os.path.join(work, "source")
    os.makedirs(src, exist_ok=True)
    if model == "stories":
        for f in ["config.json", "model.safetensors"]:
            shutil.copy(os.path.join(STORIES_HF, f), src)
        tok = AutoTokenizer.from_pretrained(STORIES_GGUF_DIR, gguf_file="stories260K-F32.gguf")
        tok.save_pretrained(src)
        return src
    gguf_path = subprocess.run([os.path.join(ROOT, "scripts", "fetch-default-model.sh")],
                               check=True, stdout=subprocess.PIPE,
                               text=True).stdout.strip().splitlines()[-1]
    d, f = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    m = LlamaForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): copy its fp32
    # weights into a plain model of the same config.
    cfg = {k: v for k, v in m.config.to_dict().items() if k != "quantization_config"}
    plain = LlamaForCausalLM(LlamaConfig(**cfg)).float()
    plain.load_state_dict(m.state_dict())
    plain.save_pretrained(src)
    tok.save_pretrained(src)
    return src


def calibration_ids(tok, calib_len):
    text = open(TINYSTORIES, encoding="utf-8").read()
    stories = [s.strip() for s in text.split("<|endoftext|>") if s.strip()]
    ids = [tok(s)["input_ids"][:calib_len] for s in stories[:N_CALIB]]
    log(f"calibration: {len(ids)} stories, {sum(map(len, ids))} tokens")
    return ids


# ---------------------------------------------------------------------------------------------
# Recipes. Each returns (expected lowbit method, description); writes the checkpoint to `out`.

def llmc_recipes():
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    def args(bits, sym, strategy, group=None):
        return QuantizationArgs(num_bits=bits, type="int", symmetric=sym, strategy=strategy,
                                group_size=group)

    def scheme(targets, a):
        return QuantizationScheme(targets=targets, weights=a)

    not_down = ["re:.*(q|k|v|o|gate|up)_proj$"]
    down = ["re:.*down_proj$"]
    g = 32
    return {
        # GPTQ, int4 sym group 32 (actorder "static" = llm-compressor's default "weight" ordering:
        # no g_idx), down_proj int8 sym per channel; bf16 model => BF16 scales and embeddings.
        "ct_gptq_w4a16_g32_bf16": dict(
            algo="gptq", dtype=torch.bfloat16, fmt=None,
            groups={"group_0": scheme(not_down, args(4, True, "group", g)),
                    "group_1": scheme(down, args(8, True, "channel"))},
            desc="llm-compressor GPTQModifier: int4 sym group 32 (q/k/v/o/gate/up) + int8 sym "
                 "channel (down_proj), pack-quantized, bf16 model"),
        # GPTQ without activation ordering, int4 asym group 32 + int4 asym channel on down_proj
        # (K=172 is padded to 22 int32 words per row); fp16 model => F16 scales.
        "ct_gptq_w4a16_asym_g32_fp16": dict(
            algo="gptq", dtype=torch.float16, fmt=None, actorder=None,
            groups={"group_0": scheme(not_down, args(4, False, "group", g)),
                    "group_1": scheme(down, args(4, False, "channel"))},
            desc="llm-compressor GPTQModifier actorder=None: int4 asym group 32 + int4 asym "
                 "channel (down_proj, K=172 padded), pack-quantized, fp16 model"),
        # Round-to-nearest W8A16 preset: int8 sym per channel on every linear, fp32 model.
        "ct_rtn_w8a16_channel": dict(
            algo="rtn", dtype=torch.float32, fmt=None,
            groups={"group_0": scheme(["Linear"], args(8, True, "channel"))},
            desc="llm-compressor QuantizationModifier (RTN): int8 sym channel on all linears "
                 "(W8A16), pack-quantized, fp32 model"),
        # The same family unpacked: int8 asym group 32 / channel (down_proj), written with the
        # format forced to int-quantized (I8 weight + I8 zero point).
        "ct_rtn_w8a16_asym_int_quantized": dict(
            algo="rtn", dtype=torch.float32, fmt="int-quantized",
            groups={"group_0": scheme(not_down, args(8, False, "group", g)),
                    "group_1": scheme(down, args(8, False, "channel"))},
            desc="llm-compressor QuantizationModifier (RTN): int8 asym group 32 + int8 asym "
                 "channel (down_proj), saved with quantization_format=int-quantized"),
        # AWQ smoothing + int4 asym group 32 (W4A16_ASYM-like), down_proj int4 asym channel.
        # (fp32 model: AWQ's grid search runs many forwards and fp16 matmuls are slow on CPU.)
        "ct_awq_w4a16_asym_g32": dict(
            algo="awq", dtype=torch.float32, fmt=None,
            groups={"group_0": scheme(not_down, args(4, False, "group", g)),
                    "group_1": scheme(down, args(4, False, "channel"))},
            desc="llm-compressor AWQModifier + QuantizationModifier: int4 asym group 32 + int4 "
                 "asym channel (down_proj), pack-quantized, fp32 model"),
    }


def run_llmcompressor(name, r, src, tok, calib, out):
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    model = LlamaForCausalLM.from_pretrained(src, dtype=r["dtype"])
    if r["algo"] == "gptq":
        kw = {} if "actorder" not in r else {"actorder": r["actorder"]}
        recipe = [GPTQModifier(config_groups=r["groups"], ignore=["lm_head"],
                               dampening_frac=0.01, **kw)]
    elif r["algo"] == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier
        from llmcompressor.pipelines.cache import IntermediatesCache
        # AWQModifier pins cached activations (a host->GPU transfer optimisation with no effect
        # on the numbers); Tensor.pin_memory() raises "Found no NVIDIA driver" on a machine
        # without a GPU, so make pinning a no-op.
        IntermediatesCache.pin_memory = lambda self, *a, **k: None
        recipe = [AWQModifier(duo_scaling="both"),
                  QuantizationModifier(config_groups=r["groups"], ignore=["lm_head"])]
    else:
        recipe = [QuantizationModifier(config_groups=r["groups"], ignore=["lm_head"])]
    ds = Dataset.from_dict({"input_ids": calib, "attention_mask": [[1] * len(i) for i in calib]})
    model = oneshot(model=model, tokenizer=tok, dataset=ds, recipe=recipe,
                    num_calibration_samples=len(calib), max_seq_length=max(map(len, calib)))
    model.save_pretrained(out, save_compressed=True, quantization_format=r["fmt"])
    return "compressed-tensors"


def gptq_recipes():
    return {
        # desc_act on: g_idx is a real permutation of the groups. down_proj (K=172: 4-bit packing
        # needs K % 8 == 0) gets a `dynamic` override to 8-bit per channel.
        "gptq_w4_g32_sym_descact": dict(
            bits=4, group_size=32, desc_act=True, sym=True,
            dynamic={r"+:.*down_proj": {"bits": 8, "group_size": -1}},
            desc="GPTQModel: 4-bit sym group 32, desc_act=True; down_proj 8-bit per channel via "
                 "`dynamic`"),
        # desc_act off, asymmetric (GPTQModel saves v1 `gptq`: stored zero = zero - 1 word-wise);
        # down_proj left unquantized.
        "gptq_w4_g32_asym": dict(
            bits=4, group_size=32, desc_act=False, sym=False,
            dynamic={r"-:.*down_proj": {}},
            desc="GPTQModel: 4-bit asym group 32, desc_act=False, v1 zeros; down_proj not "
                 "quantized (dynamic -:)"),
        # 8-bit, group 32 with act-order (two groups per row, so g_idx is a real scatter);
        # down_proj (K=172, 8-bit packs 4 per word) per channel.
        "gptq_w8_g32_sym_descact": dict(
            bits=8, group_size=32, desc_act=True, sym=True,
            dynamic={r"+:.*down_proj": {"group_size": -1}},
            desc="GPTQModel: 8-bit sym group 32, desc_act=True; down_proj per channel"),
    }


def run_gptqmodel(name, r, src, tok, calib, out):
    from gptqmodel import GPTQModel, QuantizeConfig
    qc = QuantizeConfig(bits=r["bits"], group_size=r["group_size"], desc_act=r["desc_act"],
                        sym=r["sym"], dynamic=r["dynamic"], damp_percent=0.05)
    m = GPTQModel.load(src, qc, device="cpu", dtype=torch.float16)
    m.quantize([{"input_ids": i, "attention_mask": [1] * len(i)} for i in calib], tokenizer=tok,
               batch_size=1)
    m.save(out)
    return "gptq"


def awq_recipes(model):
    if model == "stories":
        return {"awq_w4_g32_gemm": dict(
            group_size=32, not_convert=["mlp"], clip=False,
            desc="AutoAWQ GEMM: 4-bit zero-point group 32 on q/k/v/o; the MLP is left fp16 "
                 "(gate/up N=172 is not a multiple of 8, down K=172 not of 32); weight clipping "
                 "off (its search needs out_features % 64 == 0, v/k_proj have 32)")}
    # fp32 model: AWQ's search runs many block forwards and fp16 matmuls are slow on CPU (the
    # packed scales are fp16 either way: WQLinear_GEMM.from_linear casts them).
    return {"awq_w4_g64_gemm": dict(group_size=64, not_convert=None, clip=True,
                                    dtype=torch.float32,
                                    desc="AutoAWQ GEMM: 4-bit zero-point group 64, all linears, "
                                         "fp32 model (fp16 scales)")}


def run_autoawq(name, r, src, tok, calib, out):
    from awq import AutoAWQForCausalLM
    if r["not_convert"]:
        # AutoAWQ's Llama scaling plan always looks up the MLP's captured inputs, which are not
        # captured for modules in modules_to_not_convert: keep only the entries whose inputs were
        # captured (a filter on the tool's own plan; the quantization and packing are untouched).
        from awq.models.llama import LlamaAWQForCausalLM
        plan = LlamaAWQForCausalLM.get_layers_for_scaling

        def captured_only(module, input_feat, module_kwargs):
            feat = collections.defaultdict(lambda: None, input_feat)
            return [x for x in plan(module, feat, module_kwargs) if x["inp"] is not None]
        LlamaAWQForCausalLM.get_layers_for_scaling = staticmethod(captured_only)
    model = AutoAWQForCausalLM.from_pretrained(src, dtype=r.get("dtype", torch.float16),
                                               device_map="cpu")
    qc = {"zero_point": True, "q_group_size": r["group_size"], "w_bit": 4, "version": "GEMM",
          "modules_to_not_convert": r["not_convert"]}
    model.quantize(tok, quant_config=qc, calib_data=calib, max_calib_samples=len(calib),
                   max_calib_seq_len=max(map(len, calib)), n_parallel_calib_samples=None,
                   apply_clip=r["clip"])
    model.save_quantized(out)
    return "awq"


TOOLS = {"llmcompressor": (lambda model: llmc_recipes(), run_llmcompressor,
                           ["llmcompressor", "compressed-tensors"]),
         "gptqmodel": (lambda model: gptq_recipes(), run_gptqmodel, ["gptqmodel"]),
         "autoawq": (awq_recipes, run_autoawq, ["autoawq"])}


# ---------------------------------------------------------------------------------------------
# Each tool's own dequantization: {module name: fp32 weight [N, K]} for the quantized linears.

def read_tensors(ckpt):
    with safe_open(os.path.join(ckpt, "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def modules_with(tensors, suffix):
    return sorted(k[:-len(suffix) - 1] for k in tensors if k.endswith("." + suffix))


def tool_dequant_ct(ckpt, tensors, src):
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name
    qc = QuantizationConfig.model_validate(
        json.load(open(os.path.join(ckpt, "config.json")))["quantization_config"])
    out = {}
    for mod in modules_with(tensors, "weight_scale"):
        schemes = [s for s in qc.config_groups.values()
                   if any(match_name(mod, t) for t in s.targets if t != "Linear")
                   or "Linear" in s.targets]
        assert len(schemes) == 1, f"{mod}: {len(schemes)} matching config groups"
        s = schemes[0]
        sd = {k[len(mod) + 1:]: v for k, v in tensors.items() if k.startswith(mod + ".")}
        sd["weight_scale"] = sd["weight_scale"].float()
        comp = BaseCompressor.get_value_from_registry(s.format or qc.format)
        out[mod] = comp.decompress(sd, s)["weight"].float()
    return out


def tool_dequant_gptq(ckpt, tensors, src):
    from gptqmodel import BACKEND, GPTQModel
    with tempfile.TemporaryDirectory() as d:  # GPTQModel.load insists on a tokenizer
        for f in os.listdir(ckpt):
            shutil.copy(os.path.join(ckpt, f), d)
        for f in os.listdir(src):
            if f.startswith("tokenizer"):
                shutil.copy(os.path.join(src, f), d)
        m = GPTQModel.load(d, device="cpu", backend=BACKEND.TORCH, dtype=torch.float16)
    out = {}
    for n, q in m.model.named_modules():
        if hasattr(q, "dequantize_weight") and hasattr(q, "qweight"):
            q.scales = q.scales.float()  # exact: fp16 scale x small integer fits in fp32
            out[n] = q.dequantize_weight().float().T.contiguous()
    return out


def tool_dequant_awq(ckpt, tensors, src):
    from awq.utils.packing_utils import dequantize_gemm
    g = json.load(open(os.path.join(ckpt, "config.json")))["quantization_config"]["group_size"]
    return {m: dequantize_gemm(tensors[m + ".qweight"], tensors[m + ".qzeros"],
                               tensors[m + ".scales"].float(), 4, g).float().T.contiguous()
            for m in modules_with(tensors, "qweight")}


TOOL_DEQUANT = {"compressed-tensors": tool_dequant_ct, "gptq": tool_dequant_gptq,
                "awq": tool_dequant_awq}


# ---------------------------------------------------------------------------------------------
# Independent numpy decoders of the on-disk formats (FORMATS.md §1-3). Return fp32 [N, K].

def unpack_lsb(words, bits, axis):
    """int32 words -> unsigned codes, slot i = bits [b*i, b*i+b), unpacked along `axis`."""
    w = np.asarray(words).view(np.uint32)
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    w = np.moveaxis(w, axis, -1)
    codes = (w[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    codes = codes.reshape(*w.shape[:-1], w.shape[-1] * per)
    return np.moveaxis(codes, -1, axis).astype(np.int64)


def f32(t):
    return t.float().numpy()


def own_ct(cfg, tensors, mod):
    qc = cfg["quantization_config"]
    groups = [g for g in qc["config_groups"].values()
              if "Linear" in g["targets"] or any(
                  t.startswith("re:") and __import__("re").match(t[3:], mod) for t in g["targets"])]
    a = groups[0]["weights"]
    fmt = groups[0].get("format") or qc["format"]
    bits = a["num_bits"]
    scale = f32(tensors[mod + ".weight_scale"])
    if fmt == "pack-quantized":
        n, k = tensors[mod + ".weight_shape"].tolist()
        q = unpack_lsb(tensors[mod + ".weight_packed"].numpy(), bits, 1)[:, :k] - (1 << (bits - 1))
        zp = np.zeros_like(scale, dtype=np.int64)
        if not a["symmetric"]:
            zp = unpack_lsb(tensors[mod + ".weight_zero_point"].numpy(), bits, 0)[:n]
            zp = zp - (1 << (bits - 1))
    elif fmt == "int-quantized":
        q = tensors[mod + ".weight"].numpy().astype(np.int64)
        n, k = q.shape
        zp = (tensors[mod + ".weight_zero_point"].numpy().astype(np.int64)
              if not a["symmetric"] else np.zeros_like(scale, dtype=np.int64))
    else:
        raise SystemExit(f"{mod}: format {fmt} not decoded here")
    gidx = np.arange(k) // (a["group_size"] if a["strategy"] == "group" else k)
    return ((q - zp[:, gidx]) * scale[:, gidx]).astype(np.float32)


def own_gptq(cfg, tensors, mod):
    qc = cfg["quantization_config"]
    qweight = tensors[mod + ".qweight"].numpy()
    scales = f32(tensors[mod + ".scales"])  # [groups, N]
    n = scales.shape[1]
    bits = qweight.shape[0] * 32 // tensors[mod + ".g_idx"].shape[0]
    k = tensors[mod + ".g_idx"].shape[0]
    q = unpack_lsb(qweight, bits, 0)[:k]  # [K, N]
    words = tensors[mod + ".qzeros"].numpy().view(np.uint32)
    if qc.get("checkpoint_format", qc.get("format", "gptq")) == "gptq":
        # v1: stored = zero - 1, applied to whole words by the writers (GPTQModel's v2->v1
        # conversion subtracts 0x11111111 from each word); undo it the same way.
        words = words + np.uint32(sum(1 << (bits * i) for i in range(32 // bits)))
    z = unpack_lsb(words.view(np.int32), bits, 1)[:, :n]
    g = tensors[mod + ".g_idx"].numpy().astype(np.int64)
    return ((q - z[g]) * scales[g]).T.astype(np.float32)


AWQ_REV = [0, 4, 1, 5, 2, 6, 3, 7]


def own_awq(cfg, tensors, mod):
    g = cfg["quantization_config"]["group_size"]

    def deinterleave(words):  # [R, N/8] -> [R, N]; column 8c+j sits in slot REV[j]
        codes = unpack_lsb(words, 4, 1).reshape(words.shape[0], -1, 8)
        return codes[:, :, AWQ_REV].reshape(words.shape[0], -1)
    q = deinterleave(tensors[mod + ".qweight"].numpy())  # [K, N]
    z = deinterleave(tensors[mod + ".qzeros"].numpy())
    s = f32(tensors[mod + ".scales"])
    gi = np.arange(q.shape[0]) // g
    return ((q - z[gi]) * s[gi]).T.astype(np.float32)


OWN_DEQUANT = {"compressed-tensors": own_ct, "gptq": own_gptq, "awq": own_awq}


def gptq_v1_per_slot_differs(cfg, tensors, mod):
    """True when reading v1 zeros per slot ((slot + 1) & mask, as AutoGPTQ's kernels do) gives a
    different zero point than undoing the word-wise subtraction (asym with a true zero of 0)."""
    qc = cfg["quantization_config"]
    if "qzeros" not in "".join(tensors) or qc.get("checkpoint_format", "gptq") != "gptq":
        return False
    bits = tensors[mod + ".qweight"].shape[0] * 32 // tensors[mod + ".g_idx"].shape[0]
    n = tensors[mod + ".scales"].shape[1]
    words = tensors[mod + ".qzeros"].numpy()
    per_slot = (unpack_lsb(words, bits, 1) + 1) & ((1 << bits) - 1)
    whole = unpack_lsb((words.view(np.uint32) + np.uint32(
        sum(1 << (bits * i) for i in range(32 // bits)))).view(np.int32), bits, 1)
    return not np.array_equal(per_slot[:, :n], whole[:, :n])  # padding slots do not count


# ---------------------------------------------------------------------------------------------
# Reference forward: fp32 LlamaForCausalLM with the tool's dequantized weights.

def dense_model(ckpt, tensors, deq):
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    cfg.pop("quantization_config")
    cfg["torch_dtype"] = cfg["dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig(**cfg)).float().eval()
    model.config._attn_implementation = "eager"
    sd = {}
    for k, v in tensors.items():
        if k.endswith(".weight") and k[:-len(".weight")] not in deq and v.is_floating_point():
            sd[k] = v.float()
    for m, w in deq.items():
        sd[m + ".weight"] = w
    if "lm_head.weight" not in sd:
        assert cfg.get("tie_word_embeddings"), "no lm_head.weight and embeddings not tied"
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.get("tie_word_embeddings"):
        model.tie_weights()
    return model


@torch.no_grad()
def greedy(model, ids, n_new):
    seq, out, rows, margins = list(ids), [], [], []
    for _ in range(n_new):
        logits = model(torch.tensor([seq])).logits[0, -1].float()
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        rows.append(logits.numpy().copy())
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        seq.append(nxt)
    return out, np.stack(rows), margins


def write_reference(out_dir, name, meta, blobs):
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    np.concatenate(blobs).astype("<f4").tofile(os.path.join(out_dir, name + ".logits.f32"))


def reference(model_key, out_dir, name, method, recipe, tool, tok, src):
    ckpt = os.path.join(out_dir, name)
    tensors = read_tensors(ckpt)
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    deq = TOOL_DEQUANT[method](ckpt, tensors, src)
    checks = []
    worst, diffs = 0.0, 0
    src_sd = read_tensors(src)
    wrel = []
    for m, w in deq.items():
        own = OWN_DEQUANT[method](cfg, tensors, m)
        if own.shape != tuple(w.shape) or not np.array_equal(own, w.numpy()):
            raise SystemExit(f"{name} {m}: own decoder differs from the tool's dequantization "
                             f"(max {np.abs(own - w.numpy()).max() if own.shape == tuple(w.shape) else own.shape})")
        orig = src_sd[m + ".weight"].float().numpy()
        wrel.append(float(np.abs(own - orig).max() / np.abs(orig).max()))
        if method == "gptq" and gptq_v1_per_slot_differs(cfg, tensors, m):
            diffs += 1
    checks.append(f"{len(deq)} quantized linears: this script's numpy decoders of the on-disk "
                  f"format equal the tool's dequantization bitwise; max |W_deq - W_orig| / max "
                  f"|W_orig| per layer: {min(wrel):.3g}..{max(wrel):.3g}" +
                  (" (AWQ folds per-input-channel scales into these weights and the preceding "
                   "norm/linear, so this is not their quantization error)"
                   if recipe.get("algo", method) == "awq" else ""))
    if method == "gptq" and cfg["quantization_config"].get("sym") is False:
        checks.append(f"v1 zeros: in {diffs} of {len(deq)} layers reading (stored slot + 1) & "
                      "mask per slot (AutoGPTQ kernels, lowbit) differs from undoing GPTQModel's "
                      "word-wise subtraction (it would where a true zero point is 0: the borrow "
                      "runs into the next slot); padding slots past out_features excluded")
    model = dense_model(ckpt, tensors, deq)
    base = LlamaForCausalLM.from_pretrained(src, dtype=torch.float32,
                                            attn_implementation="eager").eval()
    p = MODELS[model_key]
    cases, blobs = [], []
    for prompt in p["prompts"]:
        ids = tok(prompt)["input_ids"]
        g, rows, margins = greedy(model, ids, p["n_new"])
        with torch.no_grad():
            b = base(torch.tensor([ids])).logits[0, -1].float().numpy()
        worst = max(worst, float(np.abs(rows[0] - b).max() / np.abs(b).max()))
        cases.append({"prompt": prompt, "input_ids": ids, "greedy_ids": g,
                      "logit_rows": int(rows.shape[0]), "min_margin": min(margins)})
        blobs.append(rows)
        log(f"  {prompt[:30]!r} -> {tok.decode(g)!r} (min margin {min(margins):.3f})")
    checks.append(f"quantization error: first-row logits vs the unquantized fp32 model differ "
                  f"by max |diff| / max |logit| = {worst:.3g}")
    meta = {"model": recipe["desc"], "generator": "tools/gen_quantized_checkpoints.py",
            "tool": tool, "recipe": name, "method": method,
            "versions": versions(TOOLS[tool][2]), "vocab_size": model.config.vocab_size,
            "checks": checks, "cases": cases}
    write_reference(out_dir, name, meta, blobs)
    for c in checks:
        log("  check:", c)


def keep_only(ckpt):
    """The fixture is config.json + model.safetensors (+ GPTQModel's quantize_config.json)."""
    for f in os.listdir(ckpt):
        if f not in ("config.json", "model.safetensors", "quantize_config.json"):
            os.remove(os.path.join(ckpt, f))
    cfg_path = os.path.join(ckpt, "config.json")
    cfg = json.load(open(cfg_path))
    meta = cfg.get("quantization_config", {}).get("meta", {})
    if "offload_to_disk_path" in meta:  # a temp dir of the generating run: not reproducible
        meta["offload_to_disk_path"] = None
        json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    qc_path = os.path.join(ckpt, "quantize_config.json")
    if os.path.exists(qc_path):
        qc = json.load(open(qc_path))
        if "offload_to_disk_path" in qc.get("meta", {}):
            qc["meta"]["offload_to_disk_path"] = None
            json.dump(qc, open(qc_path, "w"), indent=2, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=sorted(TOOLS), required=True)
    ap.add_argument("--model", choices=sorted(MODELS), default="stories")
    ap.add_argument("--out", help="default: tests/fixtures/quantized (stories) or "
                    "$LOWBIT_CACHE/quantized/smollm2-135m (smol)")
    ap.add_argument("--only", nargs="*", help="recipe names")
    ap.add_argument("--reference-only", action="store_true",
                    help="recompute the references of existing checkpoints")
    a = ap.parse_args()
    out_dir = a.out or (FIXTURES if a.model == "stories"
                        else os.path.join(CACHE, "quantized", "smollm2-135m"))
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    recipes_fn, run, _ = TOOLS[a.tool]
    work = tempfile.mkdtemp(prefix="lowbit-quant-")
    src = prepare_source(a.model, work)
    tok = AutoTokenizer.from_pretrained(src)
    calib = calibration_ids(tok, MODELS[a.model]["calib_len"])
    for name, r in recipes_fn(a.model).items():
        if a.only and name not in a.only:
            continue
        log(f"== {name}: {r['desc']}")
        ckpt = os.path.join(out_dir, name)
        if not a.reference_only:
            shutil.rmtree(ckpt, ignore_errors=True)
            method = run(name, r, src, tok, calib, ckpt)
            keep_only(ckpt)
        method = {"llmcompressor": "compressed-tensors", "gptqmodel": "gptq",
                  "autoawq": "awq"}[a.tool]
        reference(a.model, out_dir, name, method, r, a.tool, tok, src)
        size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt))
        log(f"  wrote {ckpt} ({size} bytes)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
