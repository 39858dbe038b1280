"""Labelled WAVs -> the data directory EI gives a learning block, written all at once or not at all.

Layout (as in ../shared/data/hello-world): X_split_{train,test}.npy float32 (N, F), Y_split_{train,test}.npy
one-hot float32 (N, C) with "test" = EI's validation split, sample_id_details.json, train_input.json,
samples.csv (sample id -> file) and, with a holdout fraction, holdout/{X,Y}_test.npy.
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features.audio import SAMPLE_RATE, ms_to_samples, wav_features
from features.cli import warn
from features.errors import InputError
from features.mfcc import mfcc
from features.wavdir import find_wavs, single_file_labels

# (split name, X file, Y file): EI calls the validation split "test" in its file names.
SPLIT_FILES = [("train", "X_split_train.npy", "Y_split_train.npy"),
               ("validation", "X_split_test.npy", "Y_split_test.npy"),
               ("holdout", "holdout/X_test.npy", "holdout/Y_test.npy")]


def need_two_classes(labels: list[str], what: str) -> list[str]:
    """Sorted class names; a classifier (and EI) needs at least two."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(f"{what} has {len(classes)} label(s) {classes}: a classifier needs at least 2 "
                         f"classes (one subfolder per label, or files named label.anything.wav)")
    return classes


def split_files(n: int, validation_fraction: float, holdout_fraction: float,
                seed: int) -> dict[str, np.ndarray]:
    """Seeded split by file, not by window, so windows of one recording never straddle train and validation.

    Like EI: the holdout (Studio's Test set) comes off first, then `validation_fraction` of the rest;
    each split keeps the shuffled order, as EI's X rows do.
    """
    order = np.random.RandomState(seed).permutation(n)
    n_hold = math.ceil(holdout_fraction * n)
    n_val = math.ceil(validation_fraction * (n - n_hold))
    parts = {"holdout": order[:n_hold], "validation": order[n_hold:n_hold + n_val],
             "train": order[n_hold + n_val:]}
    if len(parts["train"]) == 0:
        raise InputError(f"{n} usable file(s) are too few to leave any for training after the split")
    return parts


def extract(items: list[tuple[Path, str]], strict: bool, **feature_args) -> list[np.ndarray | None]:
    """Features per file; an unreadable or empty file becomes None and a warning line (strict: fails)."""
    feats: list[np.ndarray | None] = []
    for path, _ in tqdm(items, desc="MFCC", unit="file", disable=not sys.stderr.isatty()):
        try:
            feats.append(wav_features(path, **feature_args))
        except InputError as e:
            if strict:
                raise
            warn(f"skipping {e}")
            feats.append(None)
    return feats


def write_atomically(out_dir: Path, fill: Callable[[Path], None]) -> None:
    """Fill a fresh sibling folder, then rename it into place: a failure leaves no half-written out_dir."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        fill(tmp)
        if out_dir.exists():
            old = tmp.with_suffix(".old")
            out_dir.rename(old)
            try:
                tmp.rename(out_dir)
            except OSError:
                old.rename(out_dir)  # put the previous output back
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_out_dir(out_dir: Path, wav_dir: Path, overwrite: bool) -> None:
    """Fail before any work rather than clobber results, or (with --overwrite) the input itself."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty (pass --overwrite to replace it)")
    if overwrite and out_dir.resolve() in (wav_dir.resolve(), *wav_dir.resolve().parents):
        raise InputError(f"--overwrite would delete the input: {wav_dir} is inside {out_dir}")


def build_dataset(wav_dir: str | Path, out_dir: str | Path, *, validation_fraction: float = 0.2,
                  holdout_fraction: float = 0.0, seed: int = 3, window_ms: float = 1000,
                  window_increase_ms: float = 500, strict: bool = False, overwrite: bool = False,
                  **mfcc_params) -> dict[str, object]:
    """Write EI's data directory for the WAVs under wav_dir; returns a summary (classes, rows per split)."""
    wav_dir, out_dir = Path(wav_dir), Path(out_dir)
    if not 0 < validation_fraction < 1 or not 0 <= holdout_fraction < 1:
        raise InputError("need 0 < --validation-fraction < 1 and 0 <= --holdout-fraction < 1")
    check_out_dir(out_dir, wav_dir, overwrite)
    items = find_wavs(wav_dir)
    hint = single_file_labels(items, wav_dir) if wav_dir.is_dir() else None
    if hint:
        warn(hint)
    need_two_classes([label for _, label in items], str(wav_dir))
    # Validates the window and every MFCC option once, before any file is read, and gives F for empty splits.
    n_features = mfcc(np.zeros(ms_to_samples(window_ms)), SAMPLE_RATE, **mfcc_params).size
    ms_to_samples(window_increase_ms)
    feats = extract(items, strict, window_ms=window_ms, window_increase_ms=window_increase_ms, **mfcc_params)
    kept = np.array([i for i, f in enumerate(feats) if f is not None], dtype=int)
    classes = need_two_classes([items[i][1] for i in kept], "what is readable in " + str(wav_dir))
    parts = {name: kept[idx] for name, idx in
             split_files(len(kept), validation_fraction, holdout_fraction, seed).items()}
    eye = np.eye(len(classes), dtype=np.float32)

    def rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X, one-hot Y and the sample id of every row (repeated once per window of a file)."""
        per_file = [feats[i] for i in ids]
        x = np.concatenate(per_file) if per_file else np.zeros((0, n_features), np.float32)
        row_ids = np.repeat(ids, [len(f) for f in per_file]).astype(int)
        y = eye[[classes.index(items[i][1]) for i in row_ids]].reshape(-1, len(classes))
        return x.astype(np.float32), y, row_ids

    data = {name: rows(ids) for name, ids in parts.items()}
    split_of = {int(i): name for name, ids in parts.items() for i in ids}

    def fill(d: Path) -> None:
        for name, x_file, y_file in SPLIT_FILES:
            if name == "holdout" and not len(parts[name]):
                continue
            (d / x_file).parent.mkdir(exist_ok=True)
            np.save(d / x_file, data[name][0])
            np.save(d / y_file, data[name][1])
        ids = {name: data[name][2].tolist() for name in ("train", "validation")}
        (d / "sample_id_details.json").write_text(json.dumps(ids))
        info = {"classes": classes, "mode": "classification", "inputShapeString": f"({n_features},)",
                "yType": "npy", "trainTestSplit": validation_fraction, "stratifiedTrainTest": False}
        (d / "train_input.json").write_text(json.dumps(info, indent=1))
        with open(d / "samples.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sample_id", "file", "label", "split", "windows"])
            for i, (path, label) in enumerate(items):
                windows = 0 if feats[i] is None else len(feats[i])
                rel = path.relative_to(wav_dir).as_posix()
                w.writerow([i, rel, label, split_of.get(i, "skipped"), windows])

    write_atomically(out_dir, fill)
    return {"classes": classes, "features": n_features, "skipped": len(items) - len(kept),
            **{name: (len(parts[name]), len(data[name][0])) for name in parts}}
