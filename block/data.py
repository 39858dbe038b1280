"""Read an Edge Impulse (EI) learning-block data directory into plain numpy arrays.

EI hands the block `X_split_{train,test}.npy` / `Y_split_{train,test}.npy` (the "test" split is the
validation split) and, in Studio, a `train_input.json`. The Y layout is documented one way and shipped
another (ei-contract §4.3), so labels are decoded defensively. Every problem with the input raises
DataError with one line that names the problem and the file, so train.py can print it as `ERR: ...`
instead of a traceback.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws.errors import ProjectError

# No feature extractor produces |x| > 1e6: such values are garbage (overflow, wrong dtype, unit mix-up), and
# they pass the finiteness check only to train to chance. EI's MFCC features are z-scores (cepstral mean and
# variance normalisation) within about ±10; every shipped dataset in ../shared/data stays within ±7.
MAX_MAGNITUDE = 1e6
# Above this the features are probably unscaled (raw int16 audio reaches 32767): a warning, not an error.
UNSCALED_MAGNITUDE = 1000.0
MFCC_RANGE = "Edge Impulse's MFCC features lie within about ±10"


class DataError(ProjectError, ValueError):
    """A problem with the user's data, phrased for the Studio log: one line naming the problem and file."""


@dataclass
class EIData:
    """The splits EI gives the block, labels decoded to 0-based int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray  # EI's X_split_test: the validation split carved from the Training set
    y_val: np.ndarray
    classes: list[str]
    x_holdout: np.ndarray | None = None  # our local stand-in for Studio's Test set (never given by EI)
    y_holdout: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # parsed train_input.json, {} when running locally
    on_gpu: bool = False  # the job trains on a GPU (set by block/pipeline.py): the GPU time limit applies
    warnings: list[str] = field(default_factory=list)  # the warning lines load_ei_data reported

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def max_training_seconds(self) -> float | None:
        """EI's compute-time limit for this job, when Studio passed one: maxTrainingTimeSeconds, or on a GPU
        remainingGpuComputeTimeSeconds (the project's GPU time left) when that is smaller."""
        keys = ("maxTrainingTimeSeconds", "remainingGpuComputeTimeSeconds") if self.on_gpu else ("maxTrainingTimeSeconds",)
        limits = [float(self.info[k]) for k in keys if self.info.get(k) is not None]
        return min(limits) if limits else None

    def splits(self):
        """The arrays `kws.trainer.fit` trains on (imported here lazily: this module stays torch-free)."""
        from kws.trainer import Splits

        return Splits(self.x_train, self.y_train, self.x_val, self.y_val, self.x_holdout, self.y_holdout)


def _one_line(err: Exception) -> str:
    """Collapse a library message (numpy/json errors may span lines) into one line."""
    return " ".join(str(err).split())


def _is_integral(a: np.ndarray) -> bool:
    if a.dtype.kind in "iub":
        return True
    return a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))


def _decode(y: np.ndarray, name: str) -> tuple[np.ndarray, int | None]:
    """Labels plus the one-hot width (None for integer formats, which do not carry a class count)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iubf":
        raise DataError(f"{name}: labels must be numeric, got dtype {y.dtype}")
    if y.ndim == 2 and y.shape[1] >= 1:
        # Row sums first: with 4 classes one-hot and the 4-column format have the same shape.
        in01 = np.isin(y, (0, 1)).all(axis=1)
        one_hot = in01 & (y.sum(axis=1) == 1)
        if one_hot.all():
            return y.argmax(axis=1).astype(np.int64), y.shape[1]
        if y.shape[1] == 4 and _is_integral(y) and y[:, 0].min() >= 1:
            return y[:, 0].astype(np.int64) - 1, None  # column 0 is a 1-based label index
        if y.shape[1] == 1 and _is_integral(y):
            y = y[:, 0]
        else:
            bad = int(np.flatnonzero(~one_hot)[0])
            shown = ", ".join(f"{float(v):g}" for v in y[bad][:8]) + (", ..." if y.shape[1] > 8 else "")
            raise DataError(
                f"{name}: Y rows are not one-hot (row {bad} = [{shown}]) "
                f"and not the 4-column integer format (1-based label, sample id, start ms, end ms)"
            )
    if y.ndim != 1:
        raise DataError(f"{name}: Y must be one-hot (N, classes), 4-column int or 1-D labels, got shape {y.shape}")
    if not _is_integral(y):
        raise DataError(f"{name}: 1-D Y must hold integer class indices")
    if y.size and y.min() < 0:
        raise DataError(f"{name}: negative class index {int(y.min())} in Y")
    return y.astype(np.int64), None


def decode_labels(y: np.ndarray, n_classes: int | None = None, name: str = "Y") -> np.ndarray:
    """0-based int64 labels from one-hot (N,C), 4-column int (1-based col 0) or 1-D int Y.

    With `n_classes`, a one-hot width or a label that does not fit that class count is a DataError.
    """
    labels, width = _decode(y, name)
    if n_classes is not None:
        _check_class_count(labels, width, n_classes, name, "expected")
    return labels


def _check_class_count(labels: np.ndarray, width: int | None, n_classes: int, name: str, source: str) -> None:
    if width is not None and width != n_classes:
        raise DataError(f"{name}: class count mismatch: Y has {width} one-hot columns but {source} {n_classes} classes")
    if labels.size and labels.max() >= n_classes:
        raise DataError(
            f"{name}: class count mismatch: label index {int(labels.max())} is out of range for "
            f"{source} {n_classes} classes"
        )


def _load_x(path: Path, n_coeffs: int) -> tuple[np.ndarray, float]:
    """float32 X and its largest |value|, after the shape, dtype and value checks."""
    x = _load_npy(path)
    if x.ndim != 2:
        raise DataError(f"{path}: X must be 2-D (samples, features), got shape {x.shape}")
    if x.dtype.kind not in "iuf":
        raise DataError(f"{path}: X must be numeric, got dtype {x.dtype}")
    if x.shape[1] == 0:
        raise DataError(
            f"{path}: X has 0 features per row (shape {x.shape}); the processing block produced none"
        )
    if x.shape[1] % n_coeffs:
        raise DataError(
            f"{path}: {x.shape[1]} features is not divisible by {n_coeffs} MFCC coefficients "
            f"(set mfcc-coefficients to the MFCC block's value)"
        )
    # A copy detaches from the memory map, so the array is writable for torch.from_numpy.
    raw = x
    with np.errstate(over="ignore"):  # float64 values beyond the float32 range become inf: handled below
        x = np.array(raw, dtype=np.float32)
    # One pass over the data: the per-row peak |x| is NaN for a row with a NaN, inf for one with an inf.
    row_peak = np.abs(x).max(axis=1)
    bad = ~np.isfinite(row_peak)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        if not np.isfinite(raw[row]).all():
            raise DataError(
                f"{path}: X contains {int((~np.isfinite(x)).sum())} NaN/inf values (first in row {row})"
            )
    huge = ~(row_peak <= MAX_MAGNITUDE)  # also the rows that overflowed float32 (finite in a float64 file)
    if huge.any():
        row = int(np.flatnonzero(huge)[0])
        magnitude = float(np.abs(np.asarray(raw[row], dtype=np.float64)).max())
        raise DataError(
            f"{path}: row {row} has a feature of magnitude {magnitude:.3g} (> 1e6); "
            f"features must be MFCC-scale numbers ({MFCC_RANGE})"
        )
    return x, float(row_peak.max()) if len(row_peak) else 0.0


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        # mmap: the arrays are only read once and copied; never unpickle user data.
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read .npy file: {_one_line(err)}") from None


def _load_split(
    split: str, x_path: Path, y_path: Path, n_coeffs: int
) -> tuple[np.ndarray, np.ndarray, int | None, float]:
    """One split: float32 X, decoded labels, one-hot width, peak |x|; shapes checked against each other."""
    x, peak = _load_x(x_path, n_coeffs)
    y, width = _decode(_load_npy(y_path), str(y_path))
    if len(x) != len(y):
        raise DataError(f"length mismatch: {x_path} has {len(x)} rows but {y_path} has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{x_path}: the {split} split is empty (0 rows)")
    return x, y, width, peak


def load_info(path: Path) -> dict:
    """Parse train_input.json and check the fields we use, so a bad file fails here, not mid-training."""
    try:
        info = json.loads(path.read_text())
    except OSError as err:
        raise DataError(f"{path}: cannot read train_input.json: {_one_line(err)}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise DataError(f"{path}: train_input.json is not valid JSON: {_one_line(err)}") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: train_input.json must hold a JSON object, got {type(info).__name__}")
    classes = info.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
    ):
        raise DataError(f"{path}: train_input.json 'classes' must be a non-empty list of class names")
    duplicates = [f"{name!r} ({n}x)" for name, n in Counter(classes or []).items() if n > 1]
    if duplicates:
        raise DataError(
            f"{path}: train_input.json 'classes' has duplicate names: {', '.join(duplicates)}; "
            f"every class needs a unique name"
        )
    # null means no limit (ei-contract §3.2). The GPU time left may be 0 on a project that used it up: that
    # matters only when the job runs on a GPU (EIData.max_training_seconds), so only its type is checked.
    for key, positive in (("maxTrainingTimeSeconds", True), ("remainingGpuComputeTimeSeconds", False)):
        limit = info.get(key)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or (positive and limit <= 0)):
            kind = "a positive number" if positive else "a number"
            raise DataError(f"{path}: train_input.json '{key}' must be {kind}, got {limit!r}")
    mode = info.get("mode", "classification")
    if mode != "classification":
        raise DataError(f"{path}: train_input.json mode is {mode!r}; this block supports classification only")
    return info


def _print_warning(message: str) -> None:
    print(f"warning: {message}", flush=True)


def _shape_size(text: object) -> int | None:
    """How many features an `inputShapeString` such as "(650,)" or "(50, 13)" describes (None: unparsable)."""
    dims = re.findall(r"\d+", text) if isinstance(text, str) else []
    return int(np.prod([int(d) for d in dims])) if dims else None


def _names(classes: list[str], indices: np.ndarray, limit: int = 5) -> str:
    """The classes at `indices` for a one-line message: class 'a', or classes 'a', 'b' and 3 more."""
    shown = ", ".join(repr(classes[int(i)]) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"class {shown}" if len(indices) == 1 else f"classes {shown}{more}"


def load_ei_data(
    data_dir: str | Path,
    info_file: str | Path | None = None,
    holdout_dir: str | Path | None = None,
    n_coeffs: int = 13,
    warn: Callable[[str], None] | None = None,
) -> EIData:
    """Load and validate an EI data directory (plus an optional holdout dir with X_test/Y_test.npy).

    Class names come from `info_file`, else `<data_dir>/train_input.json`, else `class0..`. Problems that
    do not stop training (unscaled features, a class missing from the validation split, ...) are passed to
    `warn` one line each (default: printed as `warning: ...` on stdout) and kept in `EIData.warnings`.
    """
    warnings: list[str] = []

    def warning(message: str) -> None:
        warnings.append(message)
        (warn or _print_warning)(message)

    data_dir = Path(data_dir)
    if n_coeffs < 1:
        raise DataError(f"mfcc-coefficients must be at least 1, got {n_coeffs}")
    if not data_dir.is_dir():
        raise DataError(f"missing data directory: {data_dir} (set --data-directory)")
    info_path = Path(info_file) if info_file else data_dir / "train_input.json"
    if info_file and not info_path.is_file():
        raise DataError(f"missing file: {info_path} (train_input.json given by --info-file)")
    info = load_info(info_path) if info_path.is_file() else {}

    splits = {
        "train": (data_dir / "X_split_train.npy", data_dir / "Y_split_train.npy"),
        "validation": (data_dir / "X_split_test.npy", data_dir / "Y_split_test.npy"),
    }
    if holdout_dir is not None:
        splits["holdout"] = (Path(holdout_dir) / "X_test.npy", Path(holdout_dir) / "Y_test.npy")
    loaded = {name: _load_split(name, xp, yp, n_coeffs) for name, (xp, yp) in splits.items()}

    x_train_path, y_train_path = splits["train"]
    x_train, y_train = loaded["train"][:2]
    for name, (x, _, _, _) in loaded.items():
        if x.shape[1] != x_train.shape[1]:
            raise DataError(
                f"feature count mismatch: {x_train_path} has {x_train.shape[1]} features "
                f"but {splits[name][0]} has {x.shape[1]}"
            )
    if loaded["train"][3] == 0:
        raise DataError(f"{x_train_path}: every feature is 0; the processing block produced no signal")

    if "classes" in info:
        classes, source = list(info["classes"]), f"{info_path} lists"
    else:
        widths = [w for _, _, w, _ in loaded.values() if w is not None]
        n = widths[0] if widths else max(int(y.max()) for _, y, _, _ in loaded.values()) + 1
        classes, source = [f"class{i}" for i in range(n)], "the training Y has"
    for name, (_, y, width, _) in loaded.items():
        _check_class_count(y, width, len(classes), str(splits[name][1]), source)

    counts = np.bincount(y_train, minlength=len(classes))
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise DataError(
            f"{y_train_path}: the training data has a single class ({classes[int(present[0])]!r}); "
            f"need at least 2"
        )
    empty = np.flatnonzero(counts == 0)
    if empty.size:  # a warning, not an error: small WAV folders split by `python -m features` can do this
        warning(
            f"{y_train_path}: no training samples for {_names(classes, empty)}, but {source} "
            f"{len(classes)} classes; the model can never predict it (add training data or remove the label)"
        )

    unscaled = [name for name, split in loaded.items() if split[3] > UNSCALED_MAGNITUDE]
    if unscaled:
        peak = max(loaded[name][3] for name in unscaled)
        warning(
            f"{', '.join(str(splits[name][0]) for name in unscaled)}: features reach magnitude {peak:.6g} "
            f"(> {UNSCALED_MAGNITUDE:g}), which looks unscaled (raw audio or spectrogram values?); "
            f"{MFCC_RANGE}, and unscaled features train slowly or not at all"
        )
    for name in ("validation", "holdout") if "holdout" in loaded else ("validation",):
        missing = np.flatnonzero(np.bincount(loaded[name][1], minlength=len(classes)) == 0)
        if missing.size:
            warning(f"{splits[name][1]}: no {name} samples for {_names(classes, missing)}; "
                    f"their {name} accuracy cannot be measured")
    x_val = loaded["validation"][0]
    if x_val.shape == x_train.shape and np.array_equal(x_val, x_train):
        warning(f"{splits['validation'][0]} is identical to {x_train_path}: "
                f"the validation accuracy will not show overfitting")
    expected = _shape_size(info.get("inputShapeString"))
    if expected is not None and expected != x_train.shape[1]:
        warning(f"{info_path}: inputShapeString {info['inputShapeString']} describes {expected} features but "
                f"{x_train_path} has {x_train.shape[1]}; is train_input.json from another impulse?")

    holdout = loaded.get("holdout", (None, None, None, None))
    return EIData(
        x_train=x_train, y_train=y_train,
        x_val=x_val, y_val=loaded["validation"][1],
        classes=classes, x_holdout=holdout[0], y_holdout=holdout[1], info=info, warnings=warnings,
    )
