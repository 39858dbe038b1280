"""The project's error classes: everything a user can cause (bad data, settings, time limits, exports).

Every class the block reports as a plain `ERR:` line derives from `ProjectError`, so an entry point catches
exactly these (plus OSError) and anything else is reported as an internal error with a debugging hint
instead of being dressed up as the user's fault. Each keeps its builtin base (ValueError, RuntimeError) so
ordinary PyTorch-style code that catches those still works.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable


class ProjectError(Exception):
    """Base of every error phrased for the user (one line naming the problem)."""


class ConfigError(ProjectError, ValueError):
    """An impossible or inconsistent setting, raised by the configs' `validate()`."""


class TimeLimitError(ProjectError, RuntimeError):
    """The run cannot finish within EI's maxTrainingTimeSeconds."""


def first_line(e: BaseException, typed: bool = False) -> str:
    """The first non-empty line of an exception's message (library messages may span many), at most 300
    chars; `typed` prefixes the exception's type, which names a library failure when its text is terse."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")[:300]
    if typed:
        return f"{type(e).__name__}: {text}".rstrip(": ")
    return text or type(e).__name__


def error_line(e: BaseException) -> str:
    """What an entry point prints after `ERR: `: the user's problem as is, or an internal error."""
    if isinstance(e, (ProjectError, OSError)):
        return first_line(e)
    return f"internal error {type(e).__name__}: {first_line(e)} (DENDRITIC_DEBUG=1 shows the traceback)"


def exit_code(work: Callable[[], int]) -> int:
    """Run an entry point's work: every failure becomes one `ERR:` line on stderr and a non-zero exit
    (1, or 130 on Ctrl-C), never a traceback, unless DENDRITIC_DEBUG is set."""
    try:
        return work()
    except KeyboardInterrupt:
        print("ERR: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:
        if os.environ.get("DENDRITIC_DEBUG"):
            raise
        print(f"ERR: {error_line(e)}", file=sys.stderr, flush=True)
        return 1
