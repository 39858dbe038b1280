"""block.data: every Y layout EI may hand us decodes to the same labels, and every bad input fails with a
DataError whose one line names the problem (the catalogue lives in ei_dirs.BAD_INPUTS)."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ei_dirs import BAD_INPUTS, CLASSES, _patch, _set, four_column, one_hot, write_ei_dir

from block.data import UNSCALED_MAGNITUDE, DataError, EIData, decode_labels, load_ei_data

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


@pytest.mark.parametrize(("info", "on_gpu", "limit"), [
    ({"maxTrainingTimeSeconds": 600, "remainingGpuComputeTimeSeconds": 120}, True, 120.0),
    ({"maxTrainingTimeSeconds": 600, "remainingGpuComputeTimeSeconds": 120}, False, 600.0),  # CPU job
    ({"maxTrainingTimeSeconds": 600, "remainingGpuComputeTimeSeconds": 900}, True, 600.0),
    ({"maxTrainingTimeSeconds": 600, "remainingGpuComputeTimeSeconds": None}, True, 600.0),
    ({"remainingGpuComputeTimeSeconds": 0}, True, 0.0),  # GPU time used up: block/pipeline.py stops at once
    ({"remainingGpuComputeTimeSeconds": 0}, False, None),
])
def test_compute_limit_is_the_smaller_one_on_a_gpu(tmp_path: Path, info: dict, on_gpu: bool, limit) -> None:
    """EI's remainingGpuComputeTimeSeconds limits a job only when it trains on a GPU (ei-contract §3.2)."""
    d = write_ei_dir(tmp_path / "data")
    (d / "train_input.json").write_text(json.dumps({"classes": CLASSES, **info}))
    data = dataclasses.replace(load_ei_data(d), on_gpu=on_gpu)
    assert data.max_training_seconds == limit


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
    (lambda d: (d / "train_input.json").write_text('{"remainingGpuComputeTimeSeconds": true}'), {},
     r"'remainingGpuComputeTimeSeconds' must be a number"),
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


def _classes(names: list[str]):
    def apply(d: Path) -> None:
        info = json.loads((d / "train_input.json").read_text())
        (d / "train_input.json").write_text(json.dumps({**info, "classes": names}))
    return apply


# Issue 15 guards, shaped like ei_dirs.BAD_INPUTS (test_bad_input.py runs them through train.py as well):
# id -> (breaker applied to a valid dir, regex the one-line message must match).
MORE_BAD_INPUTS: dict = {
    "huge-magnitude": (_patch("X_split_train.npy", lambda x: _set(x, (17, 3), 1e30)),
                       r"X_split_train\.npy: row 17 has a feature of magnitude 1e\+30 \(> 1e6\); features"),
    "huge-magnitude-validation": (_patch("X_split_test.npy", lambda x: _set(x, (2, 0), -2e7)),
                                  r"X_split_test\.npy: row 2 has a feature of magnitude 2e\+07"),
    "beyond-float32": (_patch("X_split_train.npy", lambda x: _set(x.astype(np.float64), (4, 1), 1e300)),
                       r"X_split_train\.npy: row 4 has a feature of magnitude 1e\+300"),
    "huge-int-features": (_patch("X_split_train.npy", lambda x: np.full(x.shape, 2**40, np.int64)),
                           r"row 0 has a feature of magnitude 1\.1e\+12"),
    "zero-features": (_patch(("X_split_train.npy", "X_split_test.npy"), lambda x: x[:, :0]),
                      r"X_split_train\.npy: X has 0 features per row \(shape \(30, 0\)\)"),
    "all-zero-features": (_patch("X_split_train.npy", np.zeros_like),
                          r"X_split_train\.npy: every feature is 0"),
    "duplicate-classes": (_classes(["helloworld", "noise", "helloworld"]),
                          r"train_input\.json 'classes' has duplicate names: 'helloworld' \(2x\)"),
    "empty-train": (_patch(("X_split_train.npy", "Y_split_train.npy"), lambda a: a[:0]),
                    r"train split is empty"),
}


@pytest.mark.parametrize("case", sorted(MORE_BAD_INPUTS))
def test_more_bad_inputs_raise_data_error(tmp_path: Path, case: str) -> None:
    d = write_ei_dir(tmp_path / "data")
    breaker, match = MORE_BAD_INPUTS[case]
    breaker(d)
    with pytest.raises(DataError, match=match) as err:
        load_ei_data(d, warn=pytest.fail)
    assert "\n" not in str(err.value)


def test_holdout_magnitude_is_checked(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", holdout=True)
    np.save(d / "holdout/X_test.npy", _set(np.load(d / "holdout/X_test.npy"), (5, 9), 3e9))
    with pytest.raises(DataError, match=r"holdout/X_test\.npy: row 5 has a feature of magnitude 3e\+09"):
        load_ei_data(d, holdout_dir=d / "holdout")


def test_duplicate_classes_name_every_duplicate(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data")
    _classes(["a", "b", "a", "b", "b"])(d)
    with pytest.raises(DataError, match=r"duplicate names: 'a' \(2x\), 'b' \(3x\); every class needs a"):
        load_ei_data(d)


def test_empty_classes_are_listed_without_train_input_json(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", info=False)
    np.save(d / "Y_split_train.npy", one_hot(np.arange(30) % 2, 5))
    np.save(d / "Y_split_test.npy", one_hot(np.arange(9) % 5, 5))
    match = r"no training samples for classes 'class2', 'class3', 'class4', but the training Y has 5 classes"
    _, lines = _load_with_warnings(d)  # the model trains; the log says which classes it can never predict
    assert len(lines) == 1 and re.search(match, lines[0]) and "can never predict it" in lines[0]


def _load_with_warnings(d: Path, **kwargs) -> tuple[EIData, list[str]]:
    lines: list[str] = []
    data = load_ei_data(d, warn=lines.append, **kwargs)
    assert data.warnings == lines and all("\n" not in line for line in lines)
    return data, lines


def test_valid_data_gives_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = load_ei_data(write_ei_dir(tmp_path / "data", holdout=True), holdout_dir=tmp_path / "data/holdout")
    assert data.warnings == [] and capsys.readouterr().out == ""


@pytest.mark.parametrize("scale", [3000.0, 32767.0])
def test_unscaled_features_warn(tmp_path: Path, scale: float) -> None:
    d = write_ei_dir(tmp_path / "data")
    x = np.load(d / "X_split_train.npy")
    np.save(d / "X_split_train.npy", (x / np.abs(x).max() * scale).astype(np.float32))
    data, lines = _load_with_warnings(d)
    assert len(data.x_train) == 30 and len(lines) == 1
    assert re.fullmatch(rf".*X_split_train\.npy: features reach magnitude {scale:.0f} \(> 1000\), which "
                        r"looks unscaled .*; Edge Impulse's MFCC features lie within about ±10, .*", lines[0])


def test_unscaled_int16_features_in_every_split_warn_once(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data")
    for name in ("X_split_train.npy", "X_split_test.npy"):
        np.save(d / name, (np.load(d / name) * 1000).astype(np.int16))
    _, lines = _load_with_warnings(d)
    assert len(lines) == 1
    assert re.match(r".*X_split_train\.npy, .*X_split_test\.npy: features reach", lines[0])


def test_the_default_warning_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = write_ei_dir(tmp_path / "data")
    np.save(d / "X_split_test.npy", np.load(d / "X_split_test.npy") * 5000)
    data = load_ei_data(d)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"warning: {data.warnings[0]}"] and "X_split_test.npy: features reach" in out[0]


def test_a_class_missing_from_validation_warns(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", holdout=True)
    np.save(d / "Y_split_test.npy", one_hot(np.arange(9) % 2, 3))
    np.save(d / "holdout/Y_test.npy", one_hot(np.zeros(9, int), 3))
    _, lines = _load_with_warnings(d, holdout_dir=d / "holdout")
    assert len(lines) == 2
    assert re.match(r".*Y_split_test\.npy: no validation samples for class 'unknown'; their", lines[0])
    assert re.match(r".*holdout/Y_test\.npy: no holdout samples for classes 'noise', 'unknown'", lines[1])


def test_validation_identical_to_training_warns(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data", n_val=30)
    for kind in "XY":
        (d / f"{kind}_split_test.npy").write_bytes((d / f"{kind}_split_train.npy").read_bytes())
    _, lines = _load_with_warnings(d)
    assert len(lines) == 1 and re.match(r".*X_split_test\.npy is identical to .*X_split_train\.npy", lines[0])


def test_input_shape_string_mismatch_warns(tmp_path: Path) -> None:
    d = write_ei_dir(tmp_path / "data")
    info = json.loads((d / "train_input.json").read_text())
    (d / "train_input.json").write_text(json.dumps({**info, "inputShapeString": "(49, 13)"}))
    _, lines = _load_with_warnings(d)
    assert len(lines) == 1
    assert re.match(r".*inputShapeString \(49, 13\) describes 637 features but .*has 650", lines[0])
    (d / "train_input.json").write_text(json.dumps({**info, "inputShapeString": "(50, 13)"}))
    assert _load_with_warnings(d)[1] == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("name", ["hello-world", "commands12", "fsdd-digits", "gsc12-real"])
def test_shipped_datasets_pass_every_guard_without_warnings(name: str) -> None:
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"{d} not present")
    data, lines = _load_with_warnings(d, holdout_dir=d / "holdout")
    assert lines == [] and np.abs(data.x_train).max() < UNSCALED_MAGNITUDE / 100
