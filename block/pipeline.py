"""One block run, in pipeline order: EI data in -> configs -> fit -> model.pt -> export -> verify -> metrics
-> atomic move into the out directory.

    run(args, search=None, log=print) -> 0

`args` are the parsed block arguments (block/params.py). `search`, when given, picks the architecture first
(train.py passes the sweep's in-Studio search for `--search-trials N`): block/ never imports sweep/, so the
sweep can drive this pipeline (its --export-best) without an import cycle. Errors propagate as the
project's error classes (dendritic/errors.py); train.py turns them into `ERR:` lines.
"""
from __future__ import annotations

import copy
import tempfile
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from export.staging import staged, writable_out_dir

Log = Callable[[str], None]
Search = Callable[[Namespace, object, Log], tuple[Namespace, object]]
CALIBRATION_ROWS = 1000  # int8 calibration and parity rows: the first 1,000 validation rows
MODEL_FILES = ("model.tflite", "model_quantized_int8_io.tflite")


def run(args: Namespace, search: Search | None = None, log: Log = print) -> int:
    t_start = time.monotonic()
    from block.configs import run_config
    from block.data import load_ei_data
    from block.report import plot_training, summary_table, write_json
    from dendritic.trainer import fit, train_teacher
    from export.checkpoint import export_checkpoint, save_checkpoint

    out = writable_out_dir(args.out_directory)
    data = load_ei_data(args.data_directory, args.info_file, args.holdout_directory, args.mfcc_coefficients)
    log(f"data: {len(data.x_train)} train, {len(data.x_val)} validation"
        + (f", {len(data.x_holdout)} holdout" if data.x_holdout is not None else "")
        + f" rows; {data.n_features} features; classes {data.classes}")
    if search is not None:  # architecture search first, then train its pick as usual
        args, data = search(args, data, log)  # data: maxTrainingTimeSeconds lowered by the search time
    cfg = run_config(args, data.n_features, data.n_classes, data.max_training_seconds)
    teacher = None
    if cfg.train.distill_weight > 0:  # knowledge distillation: a wider teacher first, in this same job
        t0 = time.monotonic()
        teacher = train_teacher(cfg, data.splits(), log)
        if cfg.train.max_seconds:  # the student gets what the teacher left of the compute limit
            left = max(1.0, cfg.train.max_seconds - (time.monotonic() - t0))
            cfg = replace(cfg, train=replace(cfg.train, max_seconds=left))
    result = fit(cfg, data.splits(), log, teacher=teacher)
    dm = result.model.cpu().eval()
    log(f"training done in {result.seconds:.1f}s: best model has {dm.num_dendrites} dendrites, "
        f"{dm.deployed_params()} params")

    sets = {"validation": (data.x_val, data.y_val)}
    if data.x_holdout is not None:
        sets["holdout"] = (data.x_holdout, data.y_holdout)
    calib = np.asarray(data.x_val[:CALIBRATION_ROWS], dtype=np.float32)

    with staged(out) as tmp:
        save_checkpoint(tmp / "model.pt", dm, cfg, data.classes, calib)
        # The shipped files come from model.pt, as `python -m export` makes them: the checkpoint is complete.
        ckpt, report = export_checkpoint(tmp / "model.pt", tmp)
        evaluation = evaluate_files(ckpt.model.net, tmp, sets, data.classes)
        metrics = assemble_metrics(cfg, result, dm, report, evaluation, data.classes)
        reference = traditional_reference(dm, out, calib, sets, data.classes, log)
        if reference is not None:
            metrics["deployment"]["traditional"] = reference
        plot_training(result.history, result.cycles, tmp / "training.png")
        metrics["total_seconds"] = time.monotonic() - t_start
        write_json(tmp / "metrics.json", metrics)
    log(summary_table(metrics))
    log(f"artifacts written to {out} in {time.monotonic() - t_start:.1f}s")
    return 0


def evaluate_files(net, out: Path, sets: dict, classes: list[str]) -> dict:
    """Accuracy of the torch model and of both TFLite files on every split."""
    import torch

    from block.report import accuracy_block
    from export.runtime import predict

    evaluation: dict = {}
    for split, (x, y) in sets.items():
        with torch.no_grad():
            probs = torch.softmax(net(torch.as_tensor(x)), 1).numpy()
        evaluation[split] = {"torch": accuracy_block(probs, y, classes)}
        for kind, name in zip(("float", "int8"), MODEL_FILES):
            evaluation[split][kind] = accuracy_block(predict(out / name, x), y, classes)
    return evaluation


def deployment_summary(report: dict, evaluation: dict, params: int, dendrites: int) -> dict:
    """The deployment-cost and accuracy figures shown side by side for the shipped and reference models."""
    acc = {f"{split}_{kind}_accuracy": evaluation[split][kind]["accuracy"]
           for split in evaluation for kind in ("float", "int8")}
    return {"dendrites": dendrites, "params": params, "files": report["files"], "macs": report["macs"],
            "arena_bytes": report["arena_bytes"], **acc}


def assemble_metrics(cfg, result, dm, report: dict, evaluation: dict, classes: list[str]) -> dict:
    """metrics.json: what Studio's log summary, the README and the benches read."""
    from dendritic.trainer import history_dicts

    val = evaluation["validation"]
    metrics = {
        "model_format": cfg.mode, "classes": classes, "params": dm.deployed_params(),
        "dendrites": dm.num_dendrites, "epochs": result.epochs, "train_seconds": result.seconds,
        "float_accuracy": val["float"]["accuracy"], "int8_accuracy": val["int8"]["accuracy"],
        "per_class_accuracy": val["int8"]["per_class_accuracy"], "confusion": val["int8"]["confusion"],
        **{k: report[k] for k in ("files", "macs", "arena_bytes", "ops", "parity") if k in report},
        "cycles": result.cycles, "evaluation": evaluation,
        "config": cfg.to_dict(),
        "history": history_dicts(result.history),
    }
    if "holdout" in evaluation:
        metrics["holdout_float_accuracy"] = evaluation["holdout"]["float"]["accuracy"]
        metrics["holdout_int8_accuracy"] = evaluation["holdout"]["int8"]["accuracy"]
    metrics["deployment"] = {"shipped": deployment_summary(report, evaluation, metrics["params"], dm.num_dendrites)}
    return metrics


def traditional_reference(dm, out: Path, calib: np.ndarray, sets: dict, classes: list[str], log: Log) -> dict | None:
    """The same net's best checkpoint without dendrites, exported the same way (not shipped), so the log and
    metrics.json show what the dendrites cost and bought on the device. None for a 0-dendrite model."""
    from export import export_all

    if not dm.num_dendrites or 0 not in dm.best_by_dendrites:
        return None
    log("exporting the same net without dendrites (best 0-dendrite checkpoint) for comparison")
    base = copy.deepcopy(dm)
    base.load_state_dict(dm.best_by_dendrites[0][1])
    try:
        with tempfile.TemporaryDirectory(prefix=".reference-", dir=out) as ref_dir:  # never moved into out
            report = export_all(base.net, Path(ref_dir), calib, calib)
            evaluation = evaluate_files(base.net, Path(ref_dir), sets, classes)
    except Exception as e:  # noqa: BLE001 - a comparison only: never fail the shipped model on it
        log(f"warning: the 0-dendrite comparison export failed ({e}); metrics omit it")
        return None
    return deployment_summary(report, evaluation, base.deployed_params(), 0)
