"""parameters.json is committed byte for byte as `edge-impulse-blocks init` / `push` rewrite it, so running
the EI CLI never leaves a diff. The CLI (edge-impulse-cli, cli/blocks/block-config-manager.ts,
`saveParameters`) writes `JSON.stringify(parameters, null, 4)` with no trailing newline; `js_stringify` is
that serialisation in Python (4-space indent, "," item and ": " key separators, non-ASCII kept as is,
numbers in JavaScript's Number-to-string form), and node, where installed, cross-checks it."""
from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal

import pytest

from block.params import PARAMETERS_JSON


def js_number(value: float) -> str:
    """JavaScript's Number::toString (ECMA-262 §6.1.6.1.20) for a finite number: shortest round-trip digits,
    exponent form only below 1e-6 or from 1e21 on, and no ".0" on integral values."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exp = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), len(digits) + exp  # value = 0.digits x 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def js_stringify(value: object, indent: str = " " * 4, level: int = 0) -> str:
    """`JSON.stringify(value, null, 4)` for parsed JSON (dict order kept, strings not ASCII-escaped)."""
    pad, inner = indent * level, indent * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {js_stringify(v, indent, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [inner + js_stringify(v, indent, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return json.dumps(value, ensure_ascii=False)
    return js_number(value)


@pytest.mark.parametrize(("value", "js"), [
    (200, "200"), (0.005, "0.005"), (0.0001, "0.0001"), (1e-05, "0.00001"), (1e-06, "0.000001"),
    (1e-07, "1e-7"), (1.5e-07, "1.5e-7"), (100.0, "100"), (-2.5, "-2.5"), (0.0, "0"),
    (123456.789, "123456.789"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (1.25e22, "1.25e+22"),
    (0.1 + 0.2, "0.30000000000000004"),
])
def test_js_number_matches_javascript(value: float, js: str) -> None:
    assert js_number(value) == js


def test_js_stringify_matches_javascript_on_the_tricky_parts() -> None:
    doc = {"a": [], "b": {}, "c": [1, {"d": "é ≠ \u2028 \x01 \" \\"}], "e": True, "f": None, "g": 1e-7}
    expected = ('{\n    "a": [],\n    "b": {},\n    "c": [\n        1,\n        {\n'
                '            "d": "é ≠ \u2028 \\u0001 \\" \\\\"\n        }\n    ],\n'
                '    "e": true,\n    "f": null,\n    "g": 1e-7\n}')
    assert js_stringify(doc) == expected


def test_parameters_json_is_written_as_the_ei_cli_writes_it() -> None:
    text = PARAMETERS_JSON.read_text(encoding="utf-8")
    assert not text.endswith("\n"), "the EI CLI writes no trailing newline"
    assert text == js_stringify(json.loads(text)), "rewrite parameters.json as JSON.stringify(obj, null, 4)"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_agrees() -> None:
    """The same check with JavaScript itself, where node is installed."""
    script = ("const fs = require('fs'); const t = fs.readFileSync(process.argv[1], 'utf-8');"
              "process.stdout.write(JSON.stringify(JSON.parse(t), null, 4) === t ? 'same' : 'differs');")
    out = subprocess.run(["node", "-e", script, str(PARAMETERS_JSON)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out == "same"
