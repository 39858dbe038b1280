"""train.py end to end on broken inputs: Studio shows only the log, so each problem must end the job with
exit != 0 and one `ERR:` line naming it, never a traceback, and never leave a model file behind."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ei_dirs import BAD_INPUTS, write_ei_dir

REPO = Path(__file__).resolve().parent.parent
# Out dir whose parent is a regular file: unwritable even for root, where chmod does not stop writes.
OUT_NOT_WRITABLE = (lambda d: (d.parent / "a-file").write_text("x"), r"(?i)out.?director|writ")
CASES = {**BAD_INPUTS, "out-dir-not-writable": OUT_NOT_WRITABLE}


def run_train(data: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "--data-directory", str(data), "--out-directory", str(out), "--epochs", "1"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_py_reports_bad_input(tmp_path: Path, case: str) -> None:
    data = write_ei_dir(tmp_path / "data")
    breaker, keyword = CASES[case]
    breaker(data)
    out = tmp_path / "a-file" / "out" if case == "out-dir-not-writable" else tmp_path / "out"
    result = run_train(data, out)
    err = result.stderr
    assert result.returncode != 0, f"exit 0 on {case}; stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-4000:]
    err_lines = [line for line in err.splitlines() if line.startswith("ERR:")]
    assert len(err_lines) == 1, err[-2000:]
    assert re.search(keyword, err_lines[0]), err_lines[0]
    models = [p for pattern in ("*.onnx", "*.tflite") for p in out.rglob(pattern)] if out.is_dir() else []
    assert models == []


@pytest.mark.parametrize("case", ["huge-magnitude", "duplicate-classes", "zero-features",
                                  "all-zero-features"])
def test_train_py_reports_more_bad_input(tmp_path: Path, case: str) -> None:
    """The issue-15 guards (test_data.MORE_BAD_INPUTS) end the job the same way: one `ERR:` line, exit 1."""
    from test_data import MORE_BAD_INPUTS

    data = write_ei_dir(tmp_path / "data")
    breaker, match = MORE_BAD_INPUTS[case]
    breaker(data)
    result = run_train(data, tmp_path / "out")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    err_lines = [line for line in result.stderr.splitlines() if line.startswith("ERR:")]
    assert len(err_lines) == 1 and re.search(match, err_lines[0]), result.stderr[-2000:]
    assert not [p for pattern in ("*.onnx", "*.tflite") for p in (tmp_path / "out").rglob(pattern)]
