"""Shared by the tests/test_features_*.py files: the wav-samples parity fixture, labelled WAV folders built
from it, and running the features CLIs the way a user does (subprocess, stderr, exit code)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = next((p for p in (REPO.parent / "shared/data/wav-samples", Path("/work/shared/data/wav-samples"))
                if p.is_dir()), Path("/work/shared/data/wav-samples"))


def _rows() -> list[dict[str, str]]:
    if not FIXTURE.is_dir():
        return []
    with open(FIXTURE / "index.csv") as f:
        return list(csv.DictReader(f))


ROWS = _rows()


def make_wav_tree(root: Path, per_label: int = 4, source: str = "hello-world") -> Path:
    """root/<label>/<file>.wav for every label of one source dataset in the fixture (up to per_label each)."""
    for row in (r for r in ROWS if r["file"].startswith(source + "__")):
        folder = root / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        if len(list(folder.glob("*.wav"))) < per_label:
            shutil.copy(FIXTURE / row["file"], folder / row["file"])
    return root


def run_module(*args: str | Path) -> subprocess.CompletedProcess:
    """python -m <args> from the repo root, as documented, with stdout/stderr captured as text."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    """Failed cleanly: non-zero exit, no traceback, exactly one `ERR:` line and it says what went wrong."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERR:")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
