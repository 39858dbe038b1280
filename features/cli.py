"""Plumbing the two command lines share: MFCC options, and bad input as one `ERR:` line, not a traceback
(the same prefix as train.py and the other tools)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from features.errors import InputError
from features.mfcc import DEFAULTS


def add_feature_args(parser: argparse.ArgumentParser) -> None:
    """Window options like EI's input block, --strict, and one --option per EI MFCC parameter (EI's names,
    with dashes; defaults = implementation version 4). Both CLIs take them: features must match training."""
    parser.add_argument("--window-ms", type=float, default=1000, help="window size in ms; default 1000")
    parser.add_argument("--window-increase-ms", type=float, default=500,
                        help="window step in ms for clips longer than a window; default 500")
    parser.add_argument("--strict", action="store_true", help="fail on an unreadable file, don't skip it")
    group = parser.add_argument_group("MFCC parameters (EI implementation version 4; must match training)")
    for name, default in DEFAULTS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                           help=f"default: {default}")


def feature_args(args: argparse.Namespace) -> dict[str, float | int]:
    """The keyword arguments of features.audio.wav_features that add_feature_args collected."""
    return {name: getattr(args, name) for name in ("window_ms", "window_increase_ms", *DEFAULTS)}


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Exit with main's code; InputError and OS errors (missing file, permissions) print one line, exit 1."""
    try:
        code = main(argv)
    except (InputError, OSError) as e:
        print(f"ERR: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("ERR: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
