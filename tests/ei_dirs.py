"""Synthetic EI data directories and the catalogue of bad inputs, shared by test_data.py (load_ei_data
raises DataError) and test_bad_input.py (train.py exits with one `ERR:` line). One list, so a new failure
mode is tested at both levels."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

CLASSES = ["helloworld", "noise", "unknown"]
N_FEATURES = 650  # 50 frames x 13 MFCC coefficients, EI's default


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def four_column(labels: np.ndarray) -> np.ndarray:
    """EI's documented int32 layout: 1-based label, sample id, slice start ms, slice end ms."""
    n = len(labels)
    return np.stack([labels + 1, np.arange(100, 100 + n), np.zeros(n), np.full(n, 1000)], axis=1).astype(np.int32)


def write_ei_dir(path: Path, n_train: int = 30, n_val: int = 9, n_features: int = N_FEATURES,
                 info: bool = True, holdout: bool = False, seed: int = 0) -> Path:
    """A valid EI data dir (one-hot float32 Y, every class in every split) of random features."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    splits = {"X_split_train.npy": n_train, "X_split_test.npy": n_val}
    if holdout:
        (path / "holdout").mkdir(exist_ok=True)
        splits["holdout/X_test.npy"] = n_val
    for x_name, n in splits.items():
        labels = np.arange(n) % len(CLASSES)
        np.save(path / x_name, rng.normal(size=(n, n_features)).astype(np.float32))
        np.save(path / x_name.replace("X_", "Y_"), one_hot(labels, len(CLASSES)))
    (path / "sample_id_details.json").write_text(
        json.dumps({"train": list(range(n_train)), "validation": list(range(n_train, n_train + n_val))}))
    if info:
        (path / "train_input.json").write_text(json.dumps({
            "classes": CLASSES, "mode": "classification", "inputShapeString": f"({n_features},)",
            "yType": "npy", "trainTestSplit": 0.2, "convertInt8": True, "maxTrainingTimeSeconds": 3600}))
    return path


def _patch(names: str | tuple[str, ...], fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """A breaker that rewrites one or more .npy files of the dir through `fn`."""
    def apply(d: Path) -> None:
        for name in (names,) if isinstance(names, str) else names:
            np.save(d / name, fn(np.load(d / name)))
    return apply


def _set(a: np.ndarray, index: tuple, value: float) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


# id -> (breaker applied to a valid dir, regex the one-line message must match)
BAD_INPUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing-file": (lambda d: (d / "Y_split_test.npy").unlink(), r"missing file.*Y_split_test\.npy"),
    "x-not-2d": (_patch("X_split_train.npy", lambda x: x.reshape(len(x), 50, 13)), r"X_split_train\.npy.*2-D"),
    "features-not-divisible": (
        _patch(("X_split_train.npy", "X_split_test.npy"), lambda x: x[:, :640]), r"640 features is not divisible by 13"),
    "nan-in-x": (_patch("X_split_train.npy", lambda x: _set(x, (3, 5), np.nan)), r"X_split_train\.npy.*NaN"),
    "inf-in-x": (_patch("X_split_test.npy", lambda x: _set(x, (1, 0), np.inf)), r"X_split_test\.npy.*NaN/inf"),
    "length-mismatch": (_patch("Y_split_train.npy", lambda y: y[:-1]), r"length mismatch.*Y_split_train\.npy"),
    "y-not-one-hot": (_patch("Y_split_train.npy", lambda y: _set(y, (2,), 0.5)), r"Y_split_train\.npy.*not one-hot"),
    "class-count-mismatch": (
        _patch("Y_split_train.npy", lambda y: np.pad(y, ((0, 0), (0, 1)))), r"class count mismatch.*4.*3 classes"),
    "single-class": (
        _patch("Y_split_train.npy", lambda y: one_hot(np.zeros(len(y), int), 3)), r"single class.*'helloworld'"),
    "empty-validation": (
        _patch(("X_split_test.npy", "Y_split_test.npy"), lambda a: a[:0]), r"validation split is empty"),
    "corrupt-json": (lambda d: (d / "train_input.json").write_text("{not json"), r"train_input\.json.*not valid JSON"),
    "json-wrong-types": (lambda d: (d / "train_input.json").write_text(json.dumps({"classes": "abc"})),
                         r"train_input\.json.*'classes' must be"),
    "feature-count-mismatch": (_patch("X_split_test.npy", lambda x: x[:, :637]), r"feature count mismatch.*637"),
}
