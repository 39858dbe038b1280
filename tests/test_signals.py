"""SIGTERM (Studio cancelling a job, `docker stop`) and SIGINT (Ctrl-C) at any moment of a train.py run:
the process exits non-zero within seconds, prints exactly one `ERR:` line and no traceback, and leaves no
model files and no hidden build folders (`.build-*`, `.reference-*`) in the out directory.

Each case starts `python train.py` on demo/data, waits for the log line that marks a stage, and signals it:
the first log line (`arguments:`, printed before torch is imported and the data loaded), an `epoch` line
(training), an `[export]` line (ONNX export, TFLite conversion), and the final move of the verified files
into the out directory, made observable by the test hook DENDRITIC_TEST_MOVE_PAUSE_S (export/staging.py
pauses after each moved file, so the signal lands while some files are already in place).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.staging import MOVE_PAUSE_ENV, staged

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "data"
EXIT_WITHIN_S = 10.0
FAST = ["--model-format", "traditional", "--epochs", "2"]
# Training that would run for minutes: the signal always lands in the middle of it.
LONG_TRAINING = ["--model-format", "traditional", "--epochs", "5000", "--early-stopping-patience", "5000"]
EXPECTED_ERR = {signal.SIGTERM: "ERR: terminated (SIGTERM)", signal.SIGINT: "ERR: interrupted"}


def start_train(tmp_path: Path, extra: list[str], env: dict | None = None) -> tuple[subprocess.Popen, Path, Path]:
    out = tmp_path / "out"
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    argv = [sys.executable, "-u", "train.py", "--data-directory", str(DEMO), "--out-directory", str(out), *extra]
    with stdout.open("w") as so, stderr.open("w") as se:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=so, stderr=se, env={**os.environ, **(env or {})})
    return proc, stdout, stderr


def wait_until(proc: subprocess.Popen, ready, what: str, timeout: float = 120.0) -> None:
    """Poll (every 20 ms) until ready() holds; fail if the run ends or takes too long first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"train.py exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout:.0f}s")
        time.sleep(0.02)


def log_shows(path: Path, pattern: str):
    regex = re.compile(pattern, re.MULTILINE)
    return lambda: regex.search(path.read_text()) is not None


def stop_and_check(proc: subprocess.Popen, sig: int, out: Path, stderr: Path) -> None:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"train.py still running {EXIT_WITHIN_S:.0f}s after {sig.name}")
    took = time.monotonic() - t0
    err = stderr.read_text()
    assert rc == 128 + sig, f"exit {rc} after {sig.name} ({took:.1f}s); stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-4000:]
    assert [ln for ln in err.splitlines() if ln.startswith("ERR:")] == [EXPECTED_ERR[sig]], err[-2000:]
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], f"{sig.name} left {left} in the out directory"  # no model files, no hidden folders
    print(f"{sig.name}: exit {rc} after {took:.2f}s")


@pytest.mark.parametrize(("stage", "extra", "pattern", "sig"), [
    ("loading", FAST, r"^arguments: ", signal.SIGTERM),
    ("training", LONG_TRAINING, r"^epoch \d+/\d+ ", signal.SIGTERM),
    ("training", LONG_TRAINING, r"^epoch \d+/\d+ ", signal.SIGINT),
    ("ONNX export", FAST, r"^\[export\] fold ", signal.SIGTERM),
    ("TFLite conversion", FAST, r"^\[export\] onnx ", signal.SIGINT),
])
def test_signal_during_a_stage(tmp_path: Path, stage: str, extra: list[str], pattern: str, sig: int) -> None:
    proc, stdout, stderr = start_train(tmp_path, extra)
    wait_until(proc, log_shows(stdout, pattern), f"{stage} log line {pattern!r}")
    stop_and_check(proc, sig, tmp_path / "out", stderr)


def test_sigterm_during_the_final_move(tmp_path: Path) -> None:
    """Signalled once the first verified file is in the out directory: the files already moved are taken
    back, so Studio never sees part of a result."""
    out = tmp_path / "out"
    proc, _, stderr = start_train(tmp_path, FAST, env={MOVE_PAUSE_ENV: "1"})
    wait_until(proc, lambda: out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()),
               "first moved file")
    stop_and_check(proc, signal.SIGTERM, out, stderr)


def test_interrupt_mid_move_takes_back_the_moved_files(tmp_path: Path, monkeypatch) -> None:
    """staged() itself, deterministic: an interrupt raised right after the second rename."""
    from kws.errors import Terminated

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file stays")
    real_replace, moved = os.replace, []

    def replace_then_stop(src, dst):
        real_replace(src, dst)
        moved.append(Path(dst).name)
        if len(moved) == 2:
            raise Terminated()

    monkeypatch.setattr("export.staging.os.replace", replace_then_stop)
    with pytest.raises(Terminated), staged(out) as tmp:
        for name in ("a.tflite", "b.tflite", "c.json"):
            (tmp / name).write_text(name)
    assert moved == ["a.tflite", "b.tflite"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_exit_code_turns_signals_into_one_err_line(capsys) -> None:
    """The handler every entry point gets from exit_code (train.py, `python -m export`): a real SIGTERM or
    SIGINT to this process raises in the work, the previous handlers come back afterwards, and once the
    results are committed (staged() moved them all) a late signal no longer fails the job."""
    from kws.errors import commit_results, exit_code

    def work(sig: int, commit: bool = False) -> int:
        if commit:
            commit_results()
        os.kill(os.getpid(), sig)
        for _ in range(100):  # the handler runs at the next bytecode boundary
            time.sleep(0.01)
        return 0

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert exit_code(lambda: work(signal.SIGTERM)) == 143
    assert exit_code(lambda: work(signal.SIGINT)) == 130
    assert capsys.readouterr().err.splitlines() == ["ERR: terminated (SIGTERM)", "ERR: interrupted"]
    assert exit_code(lambda: work(signal.SIGTERM, commit=True)) == 0
    assert capsys.readouterr().err == ""
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_signal_a_library_swallowed_still_stops_the_job_before_the_move(tmp_path: Path) -> None:
    """Some libraries wrap calls in a bare `except:`; a SIGTERM landing there loses its exception. The
    staged results must still not be moved in: the job stops with exit 143 and an empty out directory."""
    from kws.errors import exit_code

    out = tmp_path / "out"
    out.mkdir()

    def work() -> int:
        with staged(out) as tmp:
            (tmp / "model.tflite").write_bytes(b"x")
            try:  # what a library's bare except does to the signal's exception
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException:  # noqa: BLE001, S110
                pass
        return 0

    assert exit_code(work) == 143
    assert list(out.iterdir()) == []


def test_a_signal_inside_a_deferred_block_stops_the_run_when_the_block_ends() -> None:
    """`signals_deferred` (around `import onnx`, whose native init aborts the process if an exception passes
    through it): the block runs to its end, then the signal's exception is raised once, outside it."""
    from kws.errors import Terminated, signals_deferred, stop_on_signals, stop_requested

    ran = []
    with stop_on_signals(), pytest.raises(Terminated):
        with signals_deferred():
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(100):  # the handler runs between bytecodes: give it many
                    time.sleep(0.001)
                ran.append("inner")
            ran.append("outer")
        ran.append("after")  # never: the exception comes as the outer block ends
    assert ran == ["inner", "outer"]
    assert stop_requested() == signal.SIGTERM
