"""Output folders that never hold half a result: build in a hidden folder, then move files into place.

Studio (and a user's scripts) treat any model file in the out directory as the result, so every writer of
model files (the block, `python -m export`, the sweep's --export-best) stages them here first. An interrupt
(SIGTERM/SIGINT, kws/errors.py `stop_on_signals`) during the move takes back the files already moved;
once all are in place the job counts as done and later signals are ignored.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kws.errors import Terminated, commit_results, stop_requested

MOVE_PAUSE_ENV = "DENDRITIC_TEST_MOVE_PAUSE_S"  # test hook: seconds to sleep after each moved file


def writable_out_dir(path: str | Path) -> Path:
    """Create `path` if needed and prove it is writable, before any training time is spent."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OSError(f"output directory {out} is not writable ({e.strerror or e})") from None
    return out


@contextmanager
def staged(out: Path, prefix: str = ".build-") -> Iterator[Path]:
    """Yield a hidden folder inside `out`; when the block exits cleanly, move its files into `out`.
    The folder is removed whatever happens, so a failure or an interrupt leaves nothing behind: one that
    comes during the move removes the files already moved (only ever a few renames, no copies)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
    names: list[str] = []
    try:
        yield tmp
        signum = stop_requested()
        if signum is not None:  # a library swallowed the signal's exception (a bare `except:`): stop anyway
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        names = sorted(f.name for f in tmp.iterdir())  # every artifact exists and was verified
        pause = float(os.environ.get(MOVE_PAUSE_ENV, "0"))
        for name in names:
            os.replace(tmp / name, out / name)
            if pause:
                time.sleep(pause)  # lets tests/test_signals.py stop the run in the middle of the move
        commit_results()
    except BaseException:
        for name in names:  # interrupted mid-move: a file no longer in tmp was moved; take it back
            if not (tmp / name).exists():
                (out / name).unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
