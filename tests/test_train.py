"""train.py on the bundled demo data: metrics.json contents, atomic artifacts and EI's time limit."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
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
    # seed 5 keeps one live dendrite (seed 3's ReLU dendrite is dead on the export's rows and is dropped there,
    # which test_export_dead_dendrites covers)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        # --max-params 4000: room for one dendrite per neuron above issue 21's sizing floor (the automatic
        # budget of 1,347 leaves none on the demo data, so a cc run would ship a plain net)
        # conv3 (the conv+FC net): these tests pin seed 5's one live dendrite on it
        assert train.main(argv(out, "--model-format", "cc", "--seed", "5", "--max-params", "4000",
                               "--model-preset", "conv3")) == 0
    (out.parent / f"{out.name}.log").write_text(log.getvalue())  # beside out/, whose file list is checked
    return out, json.loads((out / "metrics.json").read_text())


def log_lines(out: Path) -> list[str]:
    return (out.parent / f"{out.name}.log").read_text().splitlines()


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


def test_cycles_count_the_shipped_params_when_export_drops_a_dead_dendrite() -> None:
    """When export drops a dead dendrite (or leaves out zero rows), the shipped cycle reports the exported
    count, with its training-time count apart; other cycles are left as trained."""
    from types import SimpleNamespace

    from block.pipeline import assemble_metrics

    result = SimpleNamespace(cycles=[{"dendrites": 0, "params": 1000}, {"dendrites": 1, "params": 1215}],
                             epochs=3, seconds=1.0, history=[])
    acc = {"accuracy": 0.5, "per_class_accuracy": [], "confusion": []}
    report = {"params": 1212, "dendrites_dropped": {"convs.0": 1}, "files": {"model_quantized_int8_io.tflite": 9},
              "macs": 1, "arena_bytes": 1}
    m = assemble_metrics(SimpleNamespace(mode="cc", to_dict=dict), result, SimpleNamespace(num_dendrites=1),
                         report, {"validation": {"float": acc, "int8": acc}}, ["a", "b"])
    assert m["cycles"] == [{"dendrites": 0, "params": 1000},
                           {"dendrites": 1, "params": 1212, "training_params": 1215}]
    assert result.cycles[1]["params"] == 1215  # the training result itself is not changed


def test_dendritic_run_reports_the_same_net_without_dendrites(cc_run) -> None:
    _, m = cc_run
    dep = m["deployment"]
    assert dep["shipped"]["params"] == m["params"] and dep["shipped"]["arena_bytes"] == m["arena_bytes"]
    assert m["dendrites"] == 1  # seed 5 keeps its dendrite (deterministic on CPU)
    trad = dep["traditional"]
    assert trad["dendrites"] == 0 and trad["params"] == m["cycles"][0]["params"] < m["params"]
    assert trad["macs"] < m["macs"]
    assert trad["validation_int8_accuracy"] == pytest.approx(m["cycles"][0]["best_val_accuracy"], abs=0.05)


def test_flash_and_ram_of_both_models_in_metrics_and_summary(cc_run) -> None:
    """Params hide what dendrites cost on the device: metrics.json and the summary give flash (the int8 file's
    bytes) and RAM (the TFLite Micro arena) for the shipped model and the same net without dendrites."""
    from block.report import summary_table

    out, m = cc_run
    int8 = "model_quantized_int8_io.tflite"
    assert m["flash_bytes"] == (out / int8).stat().st_size and m["arena_bytes"] > 0
    dep = m["deployment"]
    assert dep["shipped"]["flash_bytes"] == m["flash_bytes"]
    assert dep["traditional"]["flash_bytes"] == dep["traditional"]["files"][int8] < m["flash_bytes"]
    lines = summary_table(m).splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("model ") and "flash B (int8 file)" in ln)
    rows = {ln.split()[0]: ln.split() for ln in lines[head + 2:head + 4]}
    for name in ("shipped", "traditional"):
        assert rows[name][3:5] == [str(dep[name]["flash_bytes"]), str(dep[name]["arena_bytes"])]
    assert f"flash_bytes={m['flash_bytes']}  ram_bytes={m['arena_bytes']}" in "\n".join(lines)


def test_the_log_names_the_network_built_and_when_holdout_acc_appears(cc_run) -> None:
    out, m = cc_run
    lines = [ln for ln in log_lines(out) if not ln.startswith("note:")]
    i = next(i for i, ln in enumerate(lines) if ln.startswith("arguments: "))
    assert "conv_layers=2" in lines[i]  # the custom-architecture default, which the conv3 preset ignores...
    network = lines[i + 1]  # ...so the very next line says what is built
    assert network.startswith(f"network: preset conv3: conv1d conv channels {m['sizing']['channels']} (kernel 3)")
    assert f"{m['cycles'][0]['params']:,} params; cc dendrites: up to 1 per neuron" in network
    assert f"sized to a budget of {m['sizing']['budget']:,} params" in network and lines[i + 2].startswith("data:")
    assert any(ln.startswith("holdout (90 rows): holdout_acc is measured on the epochs that set a new best")
               for ln in lines)
    shown = [r["epoch"] for r in m["history"] if r["holdout_acc"] is not None]
    assert shown and shown == [r["epoch"] for r in m["history"] if r["cycle_best"]]  # as the line says
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ") and "phase=" in ln]
    assert [int(ln.split()[1].split("/")[0]) for ln in epoch_lines if "holdout_acc=" in ln] == shown


def test_training_png_legend_and_title(cc_run, tmp_path: Path) -> None:
    """Dendrite phases and additions appear in the legend only for runs that had them; a long title wraps
    (no text is clipped: the image grows to hold it, and it does not grow wider)."""
    from block.report import plot_training
    from kws.trainer import EpochRecord

    _, m = cc_run
    history = [EpochRecord(**r) for r in m["history"]]
    def size(name: str) -> tuple[int, int]:
        return struct.unpack(">II", (tmp_path / name).read_bytes()[16:24])  # the PNG's IHDR: width, height

    labels = plot_training(history, m["cycles"], tmp_path / "cc.png", "x " * 400, m["deployment"])
    assert {"dendrite phase (neurons frozen)", "dendrites added"} <= set(labels)
    # savefig's tight box grows to hold every text, so nothing is cut off; an unwrapped 800-character title
    # would make the image ~4,000 px wide
    assert size("cc.png")[0] <= 1210
    plain = [EpochRecord(**{**r, "phase": "neuron", "dendrites": 0, "action": "continue"}) for r in m["history"]]
    labels = plot_training(plain, m["cycles"][:1], tmp_path / "plain.png", "", {"shipped": m["deployment"]["shipped"]})
    assert labels == ["train accuracy", "validation accuracy", "holdout accuracy (at each cycle's new best)"]


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


def limited_data(tmp_path: Path, **limits) -> Path:
    """A copy of the demo data whose train_input.json carries the given compute limits."""
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    info = json.loads((data / "train_input.json").read_text())
    (data / "train_input.json").write_text(json.dumps({**info, **limits}))
    return data


def limited_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data-directory", str(data), "--out-directory", str(out), "--info-file",
            str(data / "train_input.json"), *extra]


def test_time_limit_fails_fast_with_err_line(tmp_path, capsys) -> None:
    """EI's maxTrainingTimeSeconds: estimated after epoch 1, a run that cannot fit stops with ERR:."""
    data = limited_data(tmp_path, maxTrainingTimeSeconds=30)
    out = tmp_path / "out"
    rc = train.main(limited_argv(data, out, "--epochs", "100000"))
    err = capsys.readouterr().err
    assert rc == 1 and "ERR: Estimated training time" in err and "compute time limit" in err
    assert not any(out.glob("*.tflite")) and not any(out.glob("*.onnx"))


def test_training_budget_reserves_the_export() -> None:
    """maxTrainingTimeSeconds covers the whole job: training gets what start-up, loading and the predicted
    export (plus the 0-dendrite comparison, when it fits) leave of it."""
    from block.pipeline import COMPARISON_SECONDS, EXPORT_SECONDS, training_budget
    from kws.errors import TimeLimitError

    lines: list[str] = []
    assert training_budget(None, 3.0, True, lines.append) is None and lines == []
    assert training_budget(100.0, 3.0, True, lines.append) == 97.0 - EXPORT_SECONDS - COMPARISON_SECONDS
    assert training_budget(100.0, 3.0, False, lines.append) == 97.0 - EXPORT_SECONDS
    tight = 3.0 + EXPORT_SECONDS + COMPARISON_SECONDS / 2  # room for the shipped export only
    assert training_budget(tight, 3.0, True, lines.append) == pytest.approx(COMPARISON_SECONDS / 2)
    assert all(ln.startswith("time budget: ") for ln in lines) and len(lines) == 3
    with pytest.raises(TimeLimitError, match=r"leaves no time to train"):
        training_budget(EXPORT_SECONDS, 0.5, False, lines.append)


@pytest.mark.parametrize(("limits", "gpu", "limit"), [
    ({"maxTrainingTimeSeconds": 5}, False, 5),
    ({"maxTrainingTimeSeconds": 3600, "remainingGpuComputeTimeSeconds": 5}, True, 5),
])
def test_limit_without_room_for_the_export_fails_at_once(tmp_path, capsys, monkeypatch, limits, gpu, limit) -> None:
    """A limit that cannot even hold the export ends the job before training, with one ERR: line; on a GPU
    the project's remaining GPU time counts when it is the smaller limit."""
    monkeypatch.setattr("block.pipeline.gpu_job", lambda: gpu)  # the trainer itself stays on the CPU here
    out = tmp_path / "out"
    rc = train.main(limited_argv(limited_data(tmp_path, **limits), out, "--epochs", "2"))
    captured = capsys.readouterr()
    err_lines = [ln for ln in captured.err.splitlines() if ln.startswith("ERR:")]
    assert rc == 1 and len(err_lines) == 1, captured.err
    assert err_lines[0].startswith(f"ERR: the compute time limit ({limit}s) leaves no time to train"), err_lines
    assert "training on" not in captured.out  # failed before training
    assert [p.name for p in out.iterdir()] == []


def test_remaining_gpu_time_is_ignored_on_a_cpu(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("block.pipeline.gpu_job", lambda: False)
    data = limited_data(tmp_path, maxTrainingTimeSeconds=3600, remainingGpuComputeTimeSeconds=5)
    assert train.main(limited_argv(data, tmp_path / "out", "--epochs", "2", "--model-format", "traditional")) == 0
    assert "of the 3600s compute limit" in capsys.readouterr().out


def test_comparison_export_is_skipped_when_the_time_left_is_short(capsys) -> None:
    from types import SimpleNamespace

    from block.pipeline import COMPARISON_SECONDS, traditional_reference

    dm = SimpleNamespace(num_dendrites=1, best_by_dendrites={0: (0.9, {})})  # never exported: skipped first
    lines: list[str] = []
    assert traditional_reference(dm, Path("unused"), None, {}, [], lines.append, COMPARISON_SECONDS / 2) is None
    assert len(lines) == 1 and lines[0].startswith("skipping the 0-dendrite comparison export: ")


def test_short_limit_finishes_inside_it(tmp_path, capsys, monkeypatch) -> None:
    """A dendritic run under a limit that holds the shipped export but not the comparison: it ships its
    model within the limit and says it skipped the comparison. (COMPARISON_SECONDS is raised so that any
    time left is too short: the real one is ~1 s and would make this depend on the machine's speed.)"""
    monkeypatch.setattr("block.pipeline.COMPARISON_SECONDS", 10_000.0)
    limit = 120
    out = tmp_path / "out"
    rc = train.main(limited_argv(limited_data(tmp_path, maxTrainingTimeSeconds=limit), out,
                                 "--model-format", "cc", "--dendrite-activation", "tanh",
                                 "--model-preset", "ei-default", "--max-params", "0", "--seed", "5"))  # 2 dendrites
    log = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert rc == 0 and m["total_seconds"] < limit
    assert any(ln.startswith("time budget: ") and "of the 120s compute limit" in ln for ln in log.splitlines())
    skipped = [ln for ln in log.splitlines() if ln.startswith("skipping the 0-dendrite comparison export")]
    assert m["dendrites"] >= 1 and len(skipped) == 1 and "traditional" not in m["deployment"]
    assert {p.name for p in out.iterdir()} == ARTIFACTS


def test_export_onnx_false_ships_only_the_tflite_files(tmp_path, capsys) -> None:
    """--export-onnx false: model.onnx is still exported and verified (the route to TFLite, its parity is in
    metrics.json) but never reaches the out directory, and metrics.json's files do not list it."""
    out = tmp_path / "out"
    assert train.main(argv(out, "--model-format", "traditional", "--epochs", "2", "--export-onnx", "false")) == 0
    assert "[export] onnx" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert {p.name for p in out.iterdir()} == ARTIFACTS - {"model.onnx"}
    assert set(m["files"]) == {"model.tflite", "model_quantized_int8_io.tflite"}
    assert set(m["deployment"]["shipped"]["files"]) == set(m["files"])
    assert m["parity"]["onnx_max_abs_diff"] <= 1e-4


def test_python_m_export_reproduces_the_shipped_int8_model(cc_run, tmp_path) -> None:
    """model.pt rebuilds the trained net; re-exporting it gives the run's own int8 predictions ."""
    from block.data import load_ei_data
    from export.__main__ import main as export_main
    from export.runtime import predict

    out, _ = cc_run
    again = tmp_path / "again"
    assert export_main([str(out / "model.pt"), "--out-directory", str(again)]) == 0
    assert sorted(p.name for p in again.iterdir()) == ["model.onnx", "model.tflite", "model_quantized_int8_io.tflite"]
    x = load_ei_data(DEMO, None, DEMO / "holdout").x_holdout
    name = "model_quantized_int8_io.tflite"
    np.testing.assert_array_equal(predict(again / name, x), predict(out / name, x))


def test_checkpoint_round_trip_keeps_config_and_dendrites(cc_run) -> None:
    import torch

    from export.checkpoint import load_checkpoint

    out, m = cc_run
    blob = torch.load(out / "model.pt", weights_only=True)  # plain tensors and containers: no code runs
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.classes == m["classes"] and ckpt.n_features == 650
    assert ckpt.model.num_dendrites == m["dendrites"] and ckpt.model.deployed_params() == m["params"]
    assert ckpt.run.to_dict() == blob["run"] and ckpt.run.mode == "cc"
    assert ckpt.calibration.shape == (90, 650)  # the demo's validation rows


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip"), r"model\.pt: not a readable PyTorch checkpoint"),
    (lambda p: __import__("torch").save({"weights": __import__("torch").zeros(3)}, p),
     r"model\.pt: not a Dendritic NN model\.pt"),
    (None, r"model\.pt: no such checkpoint file"),
])
def test_corrupt_or_foreign_model_pt_is_one_err_line(tmp_path, capsys, make, message) -> None:
    import re

    from export.__main__ import main as export_main

    path = tmp_path / "model.pt"
    if make is not None:
        make(path)
    out = tmp_path / "out"
    assert export_main([str(path), "--out-directory", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERR: ") and re.search(message, err[0]), err
    assert list(out.iterdir()) == []  # nothing half-written


def test_damaged_checkpoint_state_is_one_err_line(cc_run, tmp_path, capsys) -> None:
    import torch

    from export.__main__ import main as export_main

    blob = torch.load(cc_run[0] / "model.pt", weights_only=True)
    blob["state_dict"].pop(next(iter(blob["state_dict"])))
    torch.save(blob, tmp_path / "model.pt")
    assert export_main([str(tmp_path / "model.pt"), "--out-directory", str(tmp_path / "out")]) == 1
    assert "ERR: model.pt: damaged checkpoint" in capsys.readouterr().err


def test_a_bug_is_reported_as_internal_error(tmp_path, monkeypatch, capsys) -> None:
    """Only the project's error classes (and OSError) read as the user's problem; a bug says it is one."""
    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr("block.pipeline.run", bug)
    assert train.main(argv(tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERR: internal error KeyError") and "DENDRITIC_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setattr("block.pipeline.run", lambda *a, **k: (_ for _ in ()).throw(ValueError("plain bug")))
    assert train.main(argv(tmp_path / "out")) == 1
    assert "ERR: internal error ValueError: plain bug" in capsys.readouterr().err


def test_summary_table_shows_per_class_recall(cc_run) -> None:
    from block.report import summary_table

    _, m = cc_run
    text = summary_table(m)
    lines = text.splitlines()
    head = lines.index("per-class recall:")
    assert "validation recall (int8)" in lines[head + 1] and "holdout recall (int8)" in lines[head + 1]
    rows = {ln.split()[0]: [float(v) for v in ln.split()[1:]] for ln in lines[head + 3:head + 6]}
    assert set(rows) == set(m["classes"])
    confusion = np.array(m["confusion"])  # validation, int8, rows = true class
    for i, c in enumerate(m["classes"]):
        assert rows[c][0] == pytest.approx(confusion[i, i] / confusion[i].sum(), abs=5e-5)
