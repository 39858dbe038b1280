"""Block arguments, built from parameters.json so the Studio UI and the CLI can never drift apart.

Studio runs the image with `--data-directory`, `--out-directory`, `--info-file` and one `--<param> <value>`
per parameters.json item (ei-contract §2.3, §3.1). EI's local runner adds flags of its own, so unknown
arguments are ignored with a warning instead of failing the job, and it passes no directories, so those
default to where it mounts the data (see DATA_DIRECTORY).
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from kws.errors import ArgumentParser

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
    if word == "auto":
        return "auto"
    try:
        return non_negative_int(word)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a non-negative integer") from None


def auto_or_rate(text: str | float) -> str | float:
    """--dropout: 'auto' (the network's measured default, block/configs.py) or a rate in [0, 1)."""
    word = str(text).strip().lower()
    if word == "auto":
        return "auto"
    value = non_negative_float(word)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: must be 'auto' or in [0, 1)")
    return value


BY_PARAM: dict[str, Callable] = {"max-params": budget, "search-trials": budget, "dropout": auto_or_rate}  # parameters whose values need more than their EI type

# Bounds the configs' validate() would otherwise enforce only after the data is loaded (kws/trainer.py,
# kws/nets/convfc.py, kws/augment.py, dendritic/pb.py, dendritic/schedule.py): the parser says it at once.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "epochs": (lambda v: v >= 1, ">= 1"),
    "learning-rate": (lambda v: v > 0, "> 0"),
    "batch-size": (lambda v: v >= 1, ">= 1"),
    "conv-layers": (lambda v: v <= 4, "0-4"),
    "conv-width": (lambda v: v >= 1, ">= 1"),
    "kernel-size": (lambda v: v % 2 == 1, "an odd number ('same' padding)"),
    "linear-layers": (lambda v: 1 <= v <= 3, "1-3"),
    "linear-width": (lambda v: v >= 1, ">= 1"),
    "augment-time-warp": (lambda v: v < 0.5, "in [0, 0.5)"),
    "label-smoothing": (lambda v: v < 1, "in [0, 1)"),
    "distill-weight": (lambda v: v <= 1, "in [0, 1]"),
    "distill-temperature": (lambda v: v > 0, "> 0"),
    "teacher-width": (lambda v: v >= 1, ">= 1"),
    "switch-patience": (lambda v: v >= 1, ">= 1"),
    "improvement-threshold": (lambda v: v < 1, "in [0, 1)"),
    "init-multiplier": (lambda v: v > 0, "> 0"),
    "dendrite-dilation": (lambda v: v >= 1, ">= 1"),
    "dendrite-kernel": (lambda v: v == 0 or v % 2 == 1, "0 (the neuron's own) or odd"),
    "dendrite-patience": (lambda v: v >= 1, ">= 1"),
    "candidate-pool": (lambda v: v >= 1, ">= 1"),
    "early-stopping-patience": (lambda v: v >= 1, ">= 1"),
    "mfcc-coefficients": (lambda v: v >= 1, ">= 1"),
}


def in_range(param: str, convert: Callable) -> Callable:
    """`convert`, then the parameter's bound from RANGES (argparse reports the error on the flag)."""
    ok, allowed = RANGES[param]

    def checked(text: str | float) -> float:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: must be {allowed}")
        return value

    return checked
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
    parser = ArgumentParser(
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
        if item["param"] in RANGES:
            convert = in_range(item["param"], convert)
        kwargs: dict = {"dest": dest(item["param"]), "default": convert(item["value"]), "help": item.get("help")}
        if item["type"] == "select":
            kwargs["choices"] = select_values(item)
        kwargs["type"] = convert
        if item["type"] == "boolean":
            kwargs["metavar"] = "{1,0,true,false}"
        parser.add_argument(f"--{item['param']}", **kwargs)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the block's arguments; unknown ones (runner extras) are reported on one stderr line and ignored,
    with a "did you mean" for a flag close to one of ours (`--epoch 5` would otherwise train 200 epochs).
    No arguments at all, with no EI data where the runner mounts it, is a usage error rather than a
    missing-file error about /home."""
    parser = build_parser(load_parameters())
    given = sys.argv[1:] if argv is None else argv
    if not given and not (Path(DATA_DIRECTORY) / "X_split_train.npy").is_file():
        parser.error(f"no arguments: pass --data-directory DIR and --out-directory DIR (see --help); the default "
                     f"{DATA_DIRECTORY}, where `edge-impulse-blocks runner` mounts the data, holds none")
    args, unknown = parser.parse_known_args(given)
    if unknown:
        print(f"WARNING: ignoring unknown arguments: {' '.join(unknown)}{did_you_mean(unknown, parser)}",
              file=sys.stderr)
    return args


def did_you_mean(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    """' (--epoch: did you mean --epochs?)' for each unknown flag within a typo of one of ours, else ''."""
    ours = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    hints = []
    for token in unknown:
        flag = token.split("=", 1)[0]
        close = difflib.get_close_matches(flag, ours, n=1, cutoff=0.85) if flag.startswith("--") else []
        if close:
            hints.append(f"{flag}: did you mean {close[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


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
