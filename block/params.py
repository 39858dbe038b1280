"""Block arguments, built from parameters.json so the Studio UI and the CLI can never drift apart.

Studio runs the image with `--data-directory`, `--out-directory`, `--info-file` and one `--<param> <value>`
per parameters.json item (ei-contract §2.3, §3.1). EI's local runner adds flags of its own, so unknown
arguments are ignored with a warning instead of failing the job, and it passes no directories, so those
default to where it mounts the data (see DATA_DIRECTORY).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

# block/parameters.json links to the root's parameters.json (the file EI reads), so an installed package
# (pip install ., which copies the link's target) finds the same file as the checkout.
PARAMETERS_JSON = Path(__file__).resolve().parent / "parameters.json"
# `edge-impulse-blocks runner` (edge-impulse-cli, cli/block-runner.ts, BlockRunnerTransferLearning) unzips
# the project's exported block data into ./ei-block-data/<projectId>/ and runs
#   docker run --rm -v $PWD/ei-block-data/<projectId>:/home <image> --epochs E --learning-rate LR
#       <its legacy validation-set size flag> V --input-shape S [--extra-args ...]
# i.e. the data (X/Y_split_*.npy, and train_input.json unless ./train_input.json already exists on the host,
# where the runner moves it) is at /home and no --data-directory/--out-directory is passed; afterwards it
# prints "Block output is in: ei-block-data/<projectId>". These defaults make a plain `edge-impulse-blocks
# runner` work, with the outputs in ei-block-data/<projectId>/out on the host. Studio always passes both
# flags (its paths are not documented), so the defaults never apply there.
DATA_DIRECTORY = "/home"
OUT_DIRECTORY = "/home/out"
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


def budget(text: str | int) -> str | int:
    """--max-params and --search-trials: 'auto' or a non-negative count (EI's UI field is a string)."""
    word = str(text).strip().lower()
    return "auto" if word == "auto" else non_negative_int(word)


BY_PARAM: dict[str, Callable] = {"max-params": budget, "search-trials": budget}  # parameters whose values need more than their EI type
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
        usage="%(prog)s [--data-directory DIR] [--out-directory DIR] [--info-file FILE] "
              "[--<param> VALUE ...]",
        description="Dendritic NN: Edge Impulse learning block for MFCC keyword spotting.",
        allow_abbrev=False,  # a runner flag must never be taken as an abbreviation of one of ours
    )
    parser.add_argument("--data-directory", default=DATA_DIRECTORY,
                        help="EI data dir with X/Y_split_{train,test}.npy (default: %(default)s, where "
                             "`edge-impulse-blocks runner` mounts it)")
    parser.add_argument("--out-directory", default=OUT_DIRECTORY,
                        help="where the model files are written (default: %(default)s)")
    parser.add_argument("--info-file", "--input-file", dest="info_file", default=None,
                        help="train_input.json (optional; <data-directory>/train_input.json is used if present)")
    parser.add_argument("--holdout-directory", default=None,
                        help="local extension: a dir with X_test.npy/Y_test.npy to report holdout accuracy")
    for item in params:
        convert = BY_PARAM.get(item["param"]) or CONVERTERS.get(item["type"])
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


def defaults_note(args: argparse.Namespace, params: list[dict] | None = None) -> str | None:
    """One log line when `epochs` or `learning-rate` differ from their parameters.json defaults, else None.

    `edge-impulse-blocks runner` always passes `--epochs` and `--learning-rate` (prompting with 30 and 0.0005
    when they are not given on its command line), so a local run silently uses its values, not the block's.
    """
    by_param = {p["param"]: p for p in (load_parameters() if params is None else params)}
    differ = []
    for param in ("epochs", "learning-rate"):
        item, value = by_param.get(param), getattr(args, dest(param), None)
        if item is None or value is None:
            continue
        default = CONVERTERS[item["type"]](item["value"])
        if value != default:
            differ.append((param, value, default))
    if not differ:
        return None
    if len(differ) == 1:
        (param, value, default), = differ
        return (f"note: {param}={value} differs from the block's default ({default}); "
                f"the EI runner passes its own value")
    return (f"note: {' and '.join(f'{p}={v}' for p, v, _ in differ)} differ from the block's defaults "
            f"({', '.join(str(d) for _, _, d in differ)}); the EI runner passes its own values")


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
