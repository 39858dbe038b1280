"""python -m features: labelled WAVs -> EI data directory; every bad input fails (or is skipped) cleanly."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from features_wavs import FIXTURE, ROWS, assert_one_line_error, make_wav_tree, run_module

import features.dataset
from features import compute_wav, read_audio
from features.dataset import build_dataset
from features.errors import InputError
from features.wavdir import find_wavs

pytestmark = pytest.mark.skipif(not ROWS, reason=f"wav fixture not found at {FIXTURE}")
CLASSES = ["helloworld", "noise", "unknown"]


def leftovers(parent: Path) -> list[str]:
    """Temporary build folders a run left next to its output."""
    return [p.name for p in parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def samples(data_dir: Path) -> dict[str, dict[str, str]]:
    with open(data_dir / "samples.csv") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


@pytest.fixture
def wav_tree(tmp_path: Path) -> Path:
    """12 labelled clips, plus a stereo copy, a 2.5 s clip (4 windows) and an EI-style `label.x.wav` name."""
    root = make_wav_tree(tmp_path / "wavs")
    x, _ = sf.read(FIXTURE / "hello-world__unknown_0.wav", dtype="int16")
    sf.write(root / "unknown" / "stereo.wav", np.stack([x, x // 2], axis=1), 16000, subtype="PCM_16")
    long = np.concatenate([sf.read(p, dtype="int16")[0] for p in sorted((root / "noise").glob("*.wav"))[:3]])
    sf.write(root / "noise" / "long.wav", long[:40000], 16000, subtype="PCM_16")
    sf.write(root / "helloworld.s1a2b3.wav", x, 16000, subtype="PCM_16")
    return root


def test_cli_writes_ei_data_directory(wav_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    proc = run_module("features", wav_tree, "--out-directory", out, "--holdout-fraction", "0.2")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "wrote" in proc.stdout and "warning" not in proc.stderr
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {"X_split_train.npy", "Y_split_train.npy", "X_split_test.npy", "Y_split_test.npy",
                     "holdout/X_test.npy", "holdout/Y_test.npy", "sample_id_details.json", "train_input.json",
                     "samples.csv"}
    info = json.loads((out / "train_input.json").read_text())
    assert info["classes"] == CLASSES and info["mode"] == "classification" and info["yType"] == "npy"
    assert info["inputShapeString"] == "(650,)" and info["trainTestSplit"] == 0.2
    ids = json.loads((out / "sample_id_details.json").read_text())
    rows = samples(out)
    n_files = len(rows)
    n_hold = math.ceil(0.2 * n_files)
    assert {r["split"] for r in rows.values()} == {"train", "validation", "holdout"}
    assert sum(r["split"] == "validation" for r in rows.values()) == math.ceil(0.2 * (n_files - n_hold))
    x_by_id: dict[int, list[np.ndarray]] = {}
    for split, x_file, y_file in [("train", "X_split_train.npy", "Y_split_train.npy"),
                                  ("validation", "X_split_test.npy", "Y_split_test.npy")]:
        x, y = np.load(out / x_file), np.load(out / y_file)
        assert x.dtype == y.dtype == np.float32 and x.shape == (len(ids[split]), 650) and y.shape[1] == 3
        np.testing.assert_array_equal(y.sum(axis=1), 1)
        by_id = {int(r["sample_id"]): r for r in rows.values()}
        for i, row_x, row_y in zip(ids[split], x, y):
            assert CLASSES[int(row_y.argmax())] == by_id[i]["label"] and by_id[i]["split"] == split
            x_by_id.setdefault(i, []).append(row_x)
    hold = sum(int(r["windows"]) for r in rows.values() if r["split"] == "holdout")
    assert np.load(out / "holdout/X_test.npy").shape == (hold, 650)
    # Features are EI's: stereo is mixed to mono, a 2.5 s clip gives windows at 0, 0.5, 1.0 and 1.5 s.
    assert rows["helloworld.s1a2b3.wav"]["label"] == "helloworld"
    assert rows["noise/long.wav"]["windows"] == "4"
    for name in ("stereo.wav", "hello-world__unknown_1.wav"):
        row = rows[f"unknown/{name}"]
        if row["split"] != "holdout":
            expected = compute_wav(wav_tree / "unknown" / name)
            np.testing.assert_array_equal(x_by_id[int(row["sample_id"])][0], expected)
    assert leftovers(tmp_path) == []


def test_split_is_seeded_and_by_file(wav_tree: Path, tmp_path: Path) -> None:
    def split(seed: int, name: str) -> dict:
        build_dataset(wav_tree, tmp_path / name, seed=seed)
        return json.loads((tmp_path / name / "sample_id_details.json").read_text())

    first, again, other = split(3, "a"), split(3, "b"), split(4, "c")
    assert first == again and first != other
    long_id = int(samples(tmp_path / "a")["noise/long.wav"]["sample_id"])
    assert sum(long_id in first[s] for s in ("train", "validation")) == 1  # its 4 windows stay together
    assert (first["train"] + first["validation"]).count(long_id) == 4


def test_labels_from_folders_and_ei_file_names(tmp_path: Path) -> None:
    for name in ("yes/spk1/a.wav", "no/b.WAV", "up.s3.wav", "down.wav", ".hidden/c.wav", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert [(p.relative_to(tmp_path).as_posix(), label) for p, label in find_wavs(tmp_path)] == [
        ("down.wav", "down"), ("no/b.WAV", "no"), ("up.s3.wav", "up"), ("yes/spk1/a.wav", "yes")]


def test_one_file_per_class_warns_with_the_naming_hint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Names not in `label.xxx.wav` form and no subfolders (like the wav-samples fixture's `x__down_0.wav`) make
    one class per file: the data is still written, with one warning that says how labels are read."""
    files = [r["file"] for r in ROWS if r["file"].startswith("hello-world__")][:6]
    flat, named = tmp_path / "flat", tmp_path / "named"
    flat.mkdir()
    named.mkdir()
    for i, name in enumerate(files):
        shutil.copy(FIXTURE / name, flat / name)
        shutil.copy(FIXTURE / name, named / f"{'ab'[i % 2]}.s{i}.wav")  # EI-style: 3 files per class
    assert len(build_dataset(flat, tmp_path / "data")["classes"]) == 6
    (warning,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warning.startswith("warning: every class has a single file (6 files and classes, e.g. ")
    assert "first subfolder (yes/a.wav)" in warning and "before the first dot (yes.a1.wav)" in warning
    assert build_dataset(named, tmp_path / "data2")["classes"] == ["a", "b"]
    assert "warning:" not in capsys.readouterr().err


def test_short_clips_are_zero_padded_at_the_end(tmp_path: Path) -> None:
    x = read_audio(FIXTURE / "edge__half_second_stop.wav")
    assert len(x) == 8000
    sf.write(tmp_path / "padded.wav", np.pad(x, (0, 8000)).astype(np.int16), 16000, subtype="PCM_16")
    np.testing.assert_array_equal(compute_wav(FIXTURE / "edge__half_second_stop.wav"),
                                  compute_wav(tmp_path / "padded.wav"))


def test_bad_files_are_skipped_with_a_warning(wav_tree: Path, tmp_path: Path) -> None:
    """Documented: a corrupt, empty (0 bytes) or sample-less WAV is skipped with one warning line each."""
    (wav_tree / "noise" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    (wav_tree / "noise" / "empty.wav").write_bytes(b"")
    sf.write(wav_tree / "unknown" / "no_samples.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    out = tmp_path / "data"
    proc = run_module("features", wav_tree, "--out-directory", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 3 and "skipped 3" in proc.stdout
    assert any("corrupt.wav: unreadable audio" in w for w in warnings)
    assert any("no_samples.wav: no audio samples" in w for w in warnings)
    rows = samples(out)
    assert [rows[f]["split"] for f in ("noise/corrupt.wav", "noise/empty.wav", "unknown/no_samples.wav")] == \
        ["skipped"] * 3


def _corrupt(root: Path) -> None:
    (root / "noise" / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")


def _one_label(root: Path) -> None:
    for label in ("noise", "unknown"):
        for p in (root / label).glob("*.wav"):
            p.unlink()


def _one_readable_label(root: Path) -> None:
    for label in ("noise", "unknown"):
        for p in (root / label).glob("*.wav"):
            p.write_bytes(b"")


def _empty(root: Path) -> None:
    for p in root.rglob("*.wav"):
        p.unlink()


@pytest.mark.parametrize("breaker, args, fragment", [
    (_empty, [], "no .wav files found"),
    (_one_label, [], "a classifier needs at least 2 classes"),
    (_one_readable_label, [], "a classifier needs at least 2 classes"),
    (_corrupt, ["--strict"], "corrupt.wav: unreadable audio"),
    (None, ["--fft-length", "300"], "fft_length 300 must be a power of 2"),
    (None, ["--window-ms", "0"], "not a positive whole number of samples"),
    (None, ["--validation-fraction", "1.5"], "--validation-fraction"),
], ids=["empty-folder", "single-label", "single-readable-label", "strict-corrupt", "bad-fft", "bad-window",
        "bad-fraction"])
def test_bad_input_fails_cleanly_without_output(wav_tree: Path, tmp_path: Path, breaker, args,
                                                fragment) -> None:
    if breaker:
        breaker(wav_tree)
    out = tmp_path / "data"
    assert_one_line_error(run_module("features", wav_tree, "--out-directory", out, *args), fragment)
    assert not out.exists() and leftovers(tmp_path) == []


def test_missing_folder_and_occupied_out_dir(wav_tree: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_module("features", tmp_path / "nope", "--out-directory", tmp_path / "d"),
                          "no such file or folder")
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    assert_one_line_error(run_module("features", wav_tree, "--out-directory", out), "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_while_writing_leaves_old_output_intact(wav_tree: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "data"
    build_dataset(wav_tree, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls, real_save = [], np.save

    def failing_save(path, arr) -> None:  # the third file of the new output cannot be written
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_save(path, arr)

    monkeypatch.setattr(features.dataset.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        build_dataset(wav_tree, out, seed=7, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert leftovers(tmp_path) == []
    with pytest.raises(InputError, match="would delete the input"):
        build_dataset(wav_tree, wav_tree.parent, overwrite=True)
