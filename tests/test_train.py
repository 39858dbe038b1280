"""train.py on the bundled demo data: metrics.json contents, atomic artifacts and EI's time limit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import train

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "data"
ARTIFACTS = {"model.onnx", "model.tflite", "model_quantized_int8_io.tflite", "metrics.json", "training.png",
             "model.pt"}


def argv(out: Path, *extra: str) -> list[str]:
    return ["--data-directory", str(DEMO), "--out-directory", str(out), "--holdout-directory",
            str(DEMO / "holdout"), "--epochs", "40", "--switch-patience", "3", "--early-stopping-patience", "3",
            "--dendrite-patience", "1", "--max-dendrites", "1", *extra]


@pytest.fixture(scope="module")
def cc_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cc")
    assert train.main(argv(out, "--model-format", "cc", "--seed", "3")) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_artifacts_and_required_metrics(cc_run) -> None:
    out, m = cc_run
    assert {p.name for p in out.iterdir()} == ARTIFACTS  # no temp folders left behind
    for key in ("params", "epochs", "float_accuracy", "int8_accuracy", "per_class_accuracy", "confusion",
                "classes", "files", "macs", "arena_bytes", "dendrites", "cycles", "ops"):
        assert key in m, key
    assert m["classes"] == ["helloworld", "noise", "unknown"]
    assert m["files"] == {n: (out / n).stat().st_size for n in m["files"]}
    assert np.array(m["confusion"]).sum() == 90  # validation rows of the demo data
    assert m["epochs"] == len(m["history"]) <= 40


def test_cycles_report_the_checkpoint_that_ships(cc_run) -> None:
    """The cycle entry for the shipped dendrite count is the very checkpoint that was exported."""
    _, m = cc_run
    shipped = next(c for c in m["cycles"] if c["dendrites"] == m["dendrites"])
    assert shipped["params"] == m["params"]
    assert shipped["best_val_accuracy"] == pytest.approx(m["evaluation"]["validation"]["torch"]["accuracy"])
    assert shipped["holdout_accuracy"] == pytest.approx(m["evaluation"]["holdout"]["torch"]["accuracy"])


def test_dendritic_run_reports_the_same_net_without_dendrites(cc_run) -> None:
    _, m = cc_run
    dep = m["deployment"]
    assert dep["shipped"]["params"] == m["params"] and dep["shipped"]["arena_bytes"] == m["arena_bytes"]
    assert m["dendrites"] == 1  # seed 3 keeps its dendrite (deterministic on CPU)
    trad = dep["traditional"]
    assert trad["dendrites"] == 0 and trad["params"] == m["cycles"][0]["params"] < m["params"]
    assert trad["macs"] < m["macs"]
    assert trad["validation_int8_accuracy"] == pytest.approx(m["cycles"][0]["best_val_accuracy"], abs=0.05)


def test_failed_export_leaves_no_model_files(tmp_path, monkeypatch, capsys) -> None:
    from export import ExportError

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("user file")

    def boom(*args, **kwargs):
        raise ExportError("simulated converter failure")

    monkeypatch.setattr("export.export_all", boom)
    assert train.main(argv(out, "--model-format", "traditional", "--epochs", "2")) == 1
    err = capsys.readouterr().err
    assert "ERR: simulated converter failure" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_time_limit_fails_fast_with_err_line(tmp_path, capsys) -> None:
    """EI's maxTrainingTimeSeconds: estimated after epoch 1, a run that cannot fit stops with ERR:."""
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    info = json.loads((data / "train_input.json").read_text())
    info["maxTrainingTimeSeconds"] = 0.001
    (data / "train_input.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    rc = train.main(["--data-directory", str(data), "--out-directory", str(out), "--info-file",
                     str(data / "train_input.json"), "--epochs", "500"])
    err = capsys.readouterr().err
    assert rc == 1 and "ERR: Estimated training time" in err and "compute time limit" in err
    assert not any(out.glob("*.tflite")) and not any(out.glob("*.onnx"))
