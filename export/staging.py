"""Output folders that never hold half a result: build in a hidden folder, then move files into place.

Studio (and a user's scripts) treat any model file in the out directory as the result, so every writer of
model files (the block, `python -m export`, the sweep's --export-best) stages them here first.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    The folder is removed whatever happens, so a failure or an interrupt leaves nothing behind."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):  # every artifact exists and was verified: move them into place
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
