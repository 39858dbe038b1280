"""Block arguments, built from parameters.json so the Studio UI and the CLI can never drift apart.

Studio runs the image with `--data-directory`, `--out-directory`, `--info-file` and one `--<param> <value>`
per parameters.json item (ei-contract §2.3, §3.1). EI's local runner adds flags of its own, so unknown
arguments are ignored with a warning instead of failing the job.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

PARAMETERS_JSON = Path(__file__).resolve().parent.parent / "parameters.json"
TRUE_WORDS = ("1", "true", "yes", "y", "t", "on")
FALSE_WORDS = ("0", "false", "no", "n", "f", "off")


def load_parameters(path: Path = PARAMETERS_JSON) -> list[dict]:
    """The `parameters` array of parameters.json."""
    return json.loads(Path(path).read_text())["parameters"]


def boolean(text: str | bool) -> bool:
    """EI's docs say booleans arrive as 1/0, blocks in the wild use true/false: accept both."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (use 1/0, true/false or yes/no)")


def non_negative_int(text: str | int) -> int:
    """Every int knob here is a count, size or seed, so a negative value is a typo to reject early."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return value


def non_negative_float(text: str | float) -> float:
    """Rates, std-devs and thresholds: negative (or NaN) values make no sense for any float knob here."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also catches NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative number")
    return value


CONVERTERS: dict[str, Callable] = {
    "int": non_negative_int,
    "float": non_negative_float,
    "boolean": boolean,
    "string": str,
    "select": str,
}


def select_values(item: dict) -> list[str]:
    """Allowed values of a select: `valid` holds plain strings or {label, value} objects."""
    return [str(v["value"]) if isinstance(v, dict) else str(v) for v in item["valid"]]


def dest(param: str) -> str:
    return param.replace("-", "_")


def build_parser(params: list[dict]) -> argparse.ArgumentParser:
    """Fixed EI arguments plus one typed `--<param>` per parameters.json item, defaulting to its value."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        usage="%(prog)s --data-directory DIR --out-directory DIR [--info-file FILE] [--<param> VALUE ...]",
        description="Dendritic NN: Edge Impulse learning block for MFCC keyword spotting.",
        allow_abbrev=False,  # a runner flag must never be taken as an abbreviation of one of ours
    )
    parser.add_argument("--data-directory", required=True, help="EI data dir with X/Y_split_{train,test}.npy")
    parser.add_argument("--out-directory", required=True, help="where the model files are written")
    parser.add_argument("--info-file", "--input-file", dest="info_file", default=None,
                        help="train_input.json (optional; <data-directory>/train_input.json is used if present)")
    parser.add_argument("--holdout-directory", default=None,
                        help="local extension: a dir with X_test.npy/Y_test.npy to report holdout accuracy")
    for item in params:
        convert = CONVERTERS.get(item["type"])
        if convert is None:
            raise ValueError(f"parameters.json: unsupported type {item['type']!r} for {item['param']}")
        kwargs: dict = {"dest": dest(item["param"]), "default": convert(item["value"]), "help": item.get("help")}
        if item["type"] == "select":
            kwargs["choices"] = select_values(item)
        kwargs["type"] = convert
        if item["type"] == "boolean":
            kwargs["metavar"] = "{1,0,true,false}"
        parser.add_argument(f"--{item['param']}", **kwargs)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the block's arguments; unknown ones (runner extras) are reported on one stderr line and ignored."""
    args, unknown = build_parser(load_parameters()).parse_known_args(argv)
    if unknown:
        print(f"WARNING: ignoring unknown arguments: {' '.join(unknown)}", file=sys.stderr)
    return args


def markdown_table(params: list[dict]) -> str:
    """The README's parameter table, generated from parameters.json (a test keeps the README in sync)."""
    lines = ["| parameter | default | values | what it does |", "|---|---|---|---|"]
    for p in params:
        values = ", ".join(str(v["value"] if isinstance(v, dict) else v) for v in p.get("valid", [])) or p["type"]
        where = f" ({p['section']})" if p.get("section") else ""
        cond = p.get("showIf")
        shown = (f" Shown when `{cond['parameter']}` {'=' if cond['operator'] == 'eq' else '≠'} `{cond['value']}`."
                 if cond else "")
        lines.append(f"| `--{p['param']}`{where} | `{p['value']}` | {values} | {p['help']}{shown} |")
    return "\n".join(lines) + "\n"
