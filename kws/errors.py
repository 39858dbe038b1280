"""The block's error classes: everything a user can cause (bad data, settings, time limits, exports).

Every class the block reports as a plain `ERR:` line derives from `ProjectError` (or is the PB library's own
`kws.errors.ConfigError`, re-exported here), so an entry point catches exactly these (plus OSError)
and anything else is reported as an internal error with a debugging hint
instead of being dressed up as the user's fault. Each keeps its builtin base (ValueError, RuntimeError) so
ordinary PyTorch-style code that catches those still works.

`exit_code(work)` runs an entry point (train.py, `python -m export`): one `ERR:` line and a non-zero exit
for every failure, and SIGTERM or SIGINT at any moment stop the run through the same cleanup as an error
(`stop_on_signals`).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from dendritic.errors import ConfigError

__all__ = ["ArgumentParser", "ConfigError", "ProjectError", "Terminated", "TimeLimitError", "commit_results",
           "error_line", "exit_code", "first_line", "signals_deferred", "stop_on_signals", "stop_requested"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one error style: a bad flag or value prints the usage and one `ERR:` line
    (not argparse's `prog: error:`) and exits 2, as argparse does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"ERR: {message}\n")


class ProjectError(Exception):
    """Base of every error phrased for the user (one line naming the problem)."""


class TimeLimitError(ProjectError, RuntimeError):
    """The run cannot finish within EI's maxTrainingTimeSeconds."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (Studio cancelling the job, `docker stop`, a scheduler): raised in the main thread like Ctrl-C's
    KeyboardInterrupt, whose subclass it is, so every cleanup that handles an interrupt (the hidden build
    folders, a sweep re-queueing its trial) handles it too and no `except Exception` swallows it."""


class _Stop:
    """What the handlers installed by `stop_on_signals` saw: the first signal, and whether the job's results
    were already in place (`commit_results`) when it came."""

    signum: int | None = None
    committed = False
    deferring = 0  # > 0 inside `signals_deferred`
    deferred = False  # a signal came while deferring; it is raised when the outermost block ends


def _stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum: int, frame) -> None:
    if _Stop.committed or _Stop.signum is not None:
        return  # the results are in place, or the run is already unwinding: let its cleanup finish
    _Stop.signum = signum
    if _Stop.deferring:
        _Stop.deferred = True
        return
    raise _stop_exception(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a stop signal's exception until the block ends. For short stretches of Python code that a C++
    extension calls, where an exception must not pass: onnx's nanobind module init runs Python (enum
    classes) during `import onnx`, and a KeyboardInterrupt raised there aborts the whole process
    (std::terminate: no `ERR:` line, no cleanup, exit -6; seen once in CI)."""
    _Stop.deferring += 1
    try:
        yield
    finally:
        _Stop.deferring -= 1
    if not _Stop.deferring and _Stop.deferred:
        _Stop.deferred = False
        raise _stop_exception(_Stop.signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated and SIGINT KeyboardInterrupt in the main thread, wherever it is
    (loading, training, export, the final move; a C++ call such as the TFLite converter finishes first).
    Only the first signal raises; later ones are ignored so the cleanup it starts runs to the end (SIGKILL
    still ends a stuck job). After `commit_results()` signals are ignored: the job is done. The previous
    handlers come back on exit. A no-op outside the main thread, where Python cannot install handlers.
    Without a handler, python3 as a container's PID 1 would ignore `docker stop`'s SIGTERM altogether, and
    elsewhere SIGTERM would kill the process at once, leaving its hidden build folder behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Stop.signum, _Stop.committed, _Stop.deferred = None, False, False
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def commit_results() -> None:
    """Called once every result file is in place: from now on SIGTERM/SIGINT no longer fail the job."""
    _Stop.committed = True


def stop_requested() -> int | None:
    """The signal that is stopping this run, if any (an exception raised in a library callback may arrive
    dressed as that library's error)."""
    return _Stop.signum


def first_line(e: BaseException, typed: bool = False) -> str:
    """The first non-empty line of an exception's message (library messages may span many), at most 300
    chars; `typed` prefixes the exception's type, which names a library failure when its text is terse."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")[:300]
    if typed:
        return f"{type(e).__name__}: {text}".rstrip(": ")
    return text or type(e).__name__


def error_line(e: BaseException) -> str:
    """What an entry point prints after `ERR: `: the user's problem as is, or an internal error."""
    if isinstance(e, (ProjectError, ConfigError, OSError)):
        return first_line(e)
    return f"internal error {type(e).__name__}: {first_line(e)} (DENDRITIC_DEBUG=1 shows the traceback)"


def _report_stop(signum: int) -> int:
    """The one `ERR:` line of a run stopped by a signal; the exit code a shell gives a process killed by it."""
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    print(f"ERR: {what}", file=sys.stderr, flush=True)
    return 128 + signum


def exit_code(work: Callable[[], int]) -> int:
    """Run an entry point's work under `stop_on_signals`: every failure becomes one `ERR:` line on stderr
    and a non-zero exit (1; 130 on Ctrl-C/SIGINT, 143 on SIGTERM), never a traceback, unless
    DENDRITIC_DEBUG is set."""
    with stop_on_signals():
        try:
            return work()
        except KeyboardInterrupt as e:
            return _report_stop(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
        except Exception as e:
            if stop_requested() is not None:  # the signal's exception came back as a library's error
                return _report_stop(stop_requested())
            if os.environ.get("DENDRITIC_DEBUG"):
                raise
            print(f"ERR: {error_line(e)}", file=sys.stderr, flush=True)
            return 1
