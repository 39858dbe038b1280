"""block.data: every Y layout EI may hand us decodes to the same labels, and every bad input fails with a
DataError whose one line names the problem (the catalogue lives in ei_dirs.BAD_INPUTS)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ei_dirs import BAD_INPUTS, CLASSES, four_column, one_hot, write_ei_dir

from block.data import DataError, EIData, decode_labels, load_ei_data

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.parametrize("n_classes", [3, 4])  # 4: one-hot and the 4-column format share the shape (N, 4)
@pytest.mark.parametrize("layout", ["one-hot", "one-hot-int", "four-column", "1-d", "column-vector"])
def test_y_layouts_decode_to_the_same_labels(layout: str, n_classes: int) -> None:
    labels = np.random.default_rng(n_classes).integers(0, n_classes, size=40)
    labels[:n_classes] = np.arange(n_classes)
    y = {
        "one-hot": one_hot(labels, n_classes),
        "one-hot-int": one_hot(labels, n_classes).astype(np.int32),
        "four-column": four_column(labels),
        "1-d": labels.astype(np.int32),
        "column-vector": labels[:, None].astype(np.int64),
    }[layout]
    decoded = decode_labels(y, n_classes)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, labels)


def test_four_column_float_is_decoded_too() -> None:
    labels = np.array([0, 1, 2, 3, 1])
    np.testing.assert_array_equal(decode_labels(four_column(labels).astype(np.float32)), labels)


@pytest.mark.parametrize(("y", "n_classes", "match"), [
    (one_hot(np.array([0, 1, 2]), 3), 4, r"class count mismatch: Y has 3 one-hot columns but expected 4"),
    (four_column(np.array([0, 5])), 3, r"class count mismatch: label index 5"),
    (np.array([0, -1, 2]), None, r"negative class index"),
    (np.array([0.0, 1.5]), None, r"integer class indices"),
    (np.array([[0.2, 0.8], [1.0, 0.0]], np.float32), None, r"not one-hot \(row 0 = \[0.2, 0.8\]\)"),
    (np.zeros((2, 3, 4)), None, r"got shape \(2, 3, 4\)"),
    (np.array(["a", "b"]), None, r"labels must be numeric"),
])
def test_decode_labels_rejects(y: np.ndarray, n_classes: int | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        decode_labels(y, n_classes, name="Y_split_train.npy")


@pytest.mark.parametrize("layout", ["one-hot", "four-column", "1-d"])
def test_load_ei_data_reads_every_y_layout(tmp_path: Path, layout: str) -> None:
    d = write_ei_dir(tmp_path / "data", holdout=True)
    encode = {"one-hot": lambda y: y, "four-column": lambda y: four_column(y.argmax(1)), "1-d": lambda y: y.argmax(1)}
    for name in ("Y_split_train.npy", "Y_split_test.npy", "holdout/Y_test.npy"):
        np.save(d / name, encode[layout](np.load(d / name)))
    data = load_ei_data(d, holdout_dir=d / "holdout")
    assert data.classes == CLASSES and data.n_classes == 3 and data.n_features == 650
    np.testing.assert_array_equal(data.y_train, np.arange(30) % 3)
    np.testing.assert_array_equal(data.y_val, np.arange(9) % 3)
    np.testing.assert_array_equal(data.y_holdout, np.arange(9) % 3)
    assert data.x_train.dtype == np.float32 and data.x_train.flags.writeable  # detached from the mmap
    assert data.max_training_seconds == 3600.0


def test_classes_come_from_info_file_before_the_data_dir(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data")
    info = tmp_path / "elsewhere.json"
    info.write_text(json.dumps({"classes": ["a", "b", "c"]}))
    data = load_ei_data(d, info_file=info)
    assert data.classes == ["a", "b", "c"]
    assert data.info == {"classes": ["a", "b", "c"]} and data.max_training_seconds is None


def test_without_train_input_json_classes_are_numbered(tmp_path: Path) -> None:
    data = load_ei_data(write_ei_dir(tmp_path / "data", info=False))
    assert data.classes == ["class0", "class1", "class2"] and data.info == {}
    assert data.x_holdout is None and data.y_holdout is None


def test_without_train_input_json_int_labels_set_the_class_count(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", info=False)
    for name in ("Y_split_train.npy", "Y_split_test.npy"):
        np.save(d / name, np.load(d / name).argmax(1))
    assert load_ei_data(d).n_classes == 3


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_data_error(tmp_path: Path, case: str) -> None:
    d = write_ei_dir(tmp_path / "data")
    breaker, match = BAD_INPUTS[case]
    breaker(d)
    with pytest.raises(DataError, match=match) as err:
        load_ei_data(d)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("setup", "kwargs", "match"), [
    (lambda d: None, {"info_file": "nope.json"}, r"missing file: nope\.json"),
    (lambda d: None, {"holdout_dir": "no-holdout"}, r"missing file: no-holdout/X_test\.npy"),
    (lambda d: None, {"n_coeffs": 0}, r"mfcc-coefficients must be at least 1"),
    (lambda d: (d / "X_split_train.npy").write_bytes(b"garbage"), {}, r"X_split_train\.npy: cannot read \.npy"),
    (lambda d: (d / "train_input.json").write_text("[1, 2]"), {}, r"must hold a JSON object"),
    (lambda d: (d / "train_input.json").write_text('{"maxTrainingTimeSeconds": "1h"}'), {}, r"maxTrainingTime"),
    (lambda d: (d / "train_input.json").write_text('{"mode": "regression"}'), {}, r"classification only"),
    (lambda d: np.save(d / "X_split_test.npy", np.zeros((9, 650), np.float32)[:0]) or
     np.save(d / "Y_split_test.npy", np.zeros((0,), np.int64)), {}, r"validation split is empty"),
])
def test_other_bad_inputs(tmp_path: Path, setup, kwargs: dict, match: str, monkeypatch) -> None:
    d = write_ei_dir(tmp_path / "data")
    setup(d)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=match):
        load_ei_data(d, **kwargs)


def test_missing_data_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing data directory"):
        load_ei_data(tmp_path / "nothing-here")


def test_holdout_is_checked_like_the_other_splits(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", holdout=True)
    np.save(d / "holdout/X_test.npy", np.load(d / "holdout/X_test.npy")[:, :637])
    with pytest.raises(DataError, match=r"feature count mismatch.*holdout/X_test\.npy has 637"):
        load_ei_data(d, holdout_dir=d / "holdout")


def test_bundled_demo_data() -> None:
    data = load_ei_data(REPO / "demo/data", holdout_dir=REPO / "demo/data/holdout")
    assert (len(data.y_train), len(data.y_val), len(data.y_holdout)) == (360, 90, 90)
    assert data.classes == CLASSES and data.n_features == 650
    assert all(np.bincount(y, minlength=3).min() >= 25 for y in (data.y_train, data.y_val, data.y_holdout))
    ids = json.loads((REPO / "demo/data/sample_id_details.json").read_text())
    assert (len(ids["train"]), len(ids["validation"])) == (360, 90)
    assert sum(f.stat().st_size for f in (REPO / "demo/data").rglob("*") if f.is_file()) <= 1_500_000


@pytest.mark.skipif(not (SHARED / "hello-world").is_dir(), reason="../shared/data not present")
def test_real_hello_world_counts() -> None:
    d = SHARED / "hello-world"
    data = load_ei_data(d, holdout_dir=d / "holdout")
    assert isinstance(data, EIData)
    counts = [np.bincount(y).tolist() for y in (data.y_train, data.y_val, data.y_holdout)]
    assert counts == [[440, 432, 448], [110, 118, 102], [135, 135, 135]]  # README "Counts" table
