"""Helpers shared by the benchmark scripts: EI data loading, block configs, stats, tables, JSON, provenance.

Only numpy at import time: the library (block, dendritic, torch) is imported inside the helpers that need it,
so the scripts' --help and the perforatedai worker's venv stay light.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DATA_ROOT = REPO.parent / "shared" / "data"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that cap BLAS/OpenMP/TF threads (set them before importing numpy/TF/torch)."""
    return {name: str(threads) for name in THREAD_ENV} | {"TF_CPP_MIN_LOG_LEVEL": "3"}


def labels_from_y(y: np.ndarray, path: Path) -> np.ndarray:
    """Integer class labels from EI's one-hot (N, C) Y, or from an already-integer (N,) Y."""
    if y.ndim == 2:
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim == 1:
        return y.astype(np.int64)
    raise ValueError(f"{path}: expected a one-hot (N, C) or a (N,) label array, got shape {y.shape}")


def load_xy(directory: Path, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """One EI split: float32 features (N, F) and integer labels (N,)."""
    x = np.load(directory / f"{x_name}.npy").astype(np.float32)
    y_path = directory / f"{y_name}.npy"
    y = labels_from_y(np.load(y_path), y_path)
    if len(x) != len(y):
        raise ValueError(f"{directory}: {x_name} has {len(x)} rows but {y_name} has {len(y)}")
    return x, y


def n_classes_of(data_dir: Path) -> int:
    """Class count: train_input.json's list when present, else the one-hot width of Y_split_train."""
    info = data_dir / "train_input.json"
    if info.exists():
        return len(json.loads(info.read_text())["classes"])
    return int(np.load(data_dir / "Y_split_train.npy", mmap_mode="r").shape[1])


def load_dataset(name: str, data_root: Path = DATA_ROOT):
    """`block.data.EIData` of one benchmark dataset: train, validation and `<name>/holdout`, loaded and
    checked the way the block loads them (13 MFCC coefficients); `.splits()` is what `fit` takes."""
    from block.data import load_ei_data

    d = data_root / name
    return load_ei_data(d, None, d / "holdout", 13)


def block_run(flags: Sequence[str], n_features: int, n_classes: int):
    """(parsed block arguments, RunConfig) for block flags such as ["--model-format", "cc"]: the RunConfig the
    block's pipeline builds from the same command line (parameters.json defaults for everything not given)."""
    from block.configs import run_config
    from block.params import parse_args

    args = parse_args(["--data-directory", "unused", "--out-directory", "unused", *flags])
    return args, run_config(args, n_features, n_classes)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_pm(values: Sequence[float | None], digits: int = 3, *, spec: str | None = None,
           show_n: bool = True) -> str:
    """'0.912 ± 0.008 (n=3)' over the non-missing values, or '–' if there are none. `spec` is a format spec
    to use instead of `digits` fixed-point decimals (e.g. '.3g'); show_n=False leaves out the '(n=3)'."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    m, s = mean_sd(vals)
    spec = spec or f".{digits}f"
    if len(vals) == 1:
        return f"{m:{spec}}"
    return f"{m:{spec}} ± {s:{spec}}" + (f" (n={len(vals)})" if show_n else "")


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A fixed-width plain-text table for the terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    width = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in width))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically (tmp file + rename), so a killed run never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def git(*args: str) -> str:
    """Output of a read-only git command in the repo ('' if git fails)."""
    try:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
        return proc.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine_info() -> dict:
    """Where and when a measurement was taken: CPU (lscpu head), load, python, git commit, UTC time."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()[:10]
    except (OSError, subprocess.CalledProcessError):
        lscpu = []
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "lscpu_head": lscpu,
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "git_head": git("rev-parse", "--short", "HEAD"),
    }


GEN_BEGIN = "<!-- begin generated by {tool}: re-run it to refresh; edit outside these markers -->"
GEN_END = "<!-- end generated by {tool} -->"


def update_md_section(path: Path, heading: str, body: str, tool: str,
                      top_heading: str = "# Benchmarks") -> None:
    """Refresh the generated block of one '## ' section of a markdown file, touching nothing else.

    The block sits between GEN_BEGIN/GEN_END markers under `heading`; text outside the markers (hand-written
    notes, other engineers' sections) is kept byte-for-byte. A missing section is appended (with the markers);
    a missing file is created with `top_heading`.
    """
    begin, end = GEN_BEGIN.format(tool=tool), GEN_END.format(tool=tool)
    block = [begin, *body.rstrip("\n").splitlines(), end]
    lines = (path.read_text() if path.exists() else f"{top_heading}\n").splitlines()
    if heading not in lines:
        lines += ["", heading, "", *block, ""] if lines and lines[-1] else [heading, "", *block, ""]
    else:
        start = lines.index(heading)
        stop = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        section = lines[start:stop]
        if begin in section and end in section:
            lines[start + section.index(begin):start + section.index(end) + 1] = block
        else:  # section without markers: put the block right under the heading, keep the rest
            lines[start + 1:start + 1] = ["", *block]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines).rstrip("\n") + "\n")
    os.replace(tmp, path)


def run_train(train_args: Sequence[str], out_dir: Path, *, python: str = sys.executable, threads: int = 1,
              timeout: float = 3600.0) -> dict:
    """Run `train.py` once into a wiped out_dir and return its wall time, log facts and metrics.json.

    Why one helper: every benchmark that trains the block with its own flags needs the same clean output
    folder (never a stale metrics.json), thread cap, subprocess wall clock and one-line error. Returns
    {command, returncode (int or "timeout"), wall_seconds, arguments (the log's first line), metrics (dict,
    or None on failure), error (only on failure)}.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    cmd = [python, "train.py", *train_args, "--out-directory", str(out_dir)]
    record: dict = {"command": " ".join(cmd[1:])}
    log_path = out_dir / "train.log"
    t0 = time.monotonic()
    try:
        with log_path.open("w") as log:
            proc = subprocess.run(cmd, check=False, cwd=REPO, env=os.environ | thread_env(threads),
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        record["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        record["returncode"] = "timeout"
    record["wall_seconds"] = time.monotonic() - t0
    lines = log_path.read_text(errors="replace").splitlines()
    record["arguments"] = next((ln for ln in lines if ln.startswith("arguments: ")), "")
    metrics_path = out_dir / "metrics.json"
    if record["returncode"] != 0 or not metrics_path.exists():
        record["metrics"] = None
        record["error"] = ([ln for ln in lines if ln.startswith("ERR:")] or lines[-1:] or [""])[-1]
    else:
        record["metrics"] = json.loads(metrics_path.read_text())
    return record


def publish(table: str, body: str, update: bool, section: str, tool: str) -> int:
    """The end of a bench: print its table, and with `update` refresh its section of RESULTS.md; exit code 0."""
    print(table)
    if update:
        update_md_section(RESULTS_MD, section, body, tool)
    return 0
