"""One block run, in pipeline order: EI data in -> configs -> fit -> model.pt -> export -> verify -> metrics
-> atomic move into the out directory.

    run(args, search=None, log=print) -> 0

`args` are the parsed block arguments (block/params.py). EI's compute limit (maxTrainingTimeSeconds, and
the remaining GPU time on a GPU) covers the whole job: training gets what start-up, loading and the predicted
export time (EXPORT_SECONDS, COMPARISON_SECONDS) leave of it. `search`, when given, picks the architecture first
(train.py passes the sweep's in-Studio search for `--search-trials N`): block/ never imports sweep/, so the
sweep can drive this pipeline (its --export-best) without an import cycle. Errors propagate as the
project's error classes (kws/errors.py); train.py turns them into `ERR:` lines.
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
from kws.errors import TimeLimitError

Log = Callable[[str], None]
Search = Callable[[Namespace, object, Log], tuple[Namespace, object]]
MODEL_FILES = ("model.tflite", "model_quantized_int8_io.tflite")
INT8_FILE = MODEL_FILES[1]  # what the device's flash holds
ONNX_FILE = "model.onnx"
# Predicted seconds of the work after training, reserved from EI's compute limit before training starts.
# EXPORT_SECONDS: the shipped model (model.pt, fold, ONNX, TFLite float + int8, parity, TFLM run, accuracy of
# both files, training.png, metrics.json); COMPARISON_SECONDS: the 0-dendrite comparison export. Measured on
# a shared 2-core x86-64 VM, CPU only, load ~3.5: 4.3-6.0 s after training on demo/data, hello-world and
# commands12 (4.2-4.6 s of it the shipped export, the first in the process, which pays 3-4.5 s of TensorFlow
# import), the comparison 0.7-1.0 s. About 1.5x that, for slower or busier machines.
EXPORT_SECONDS = 8.0
COMPARISON_SECONDS = 2.0


def may_compare(cfg) -> bool:
    """Whether the run can grow dendrites, and so end with the 0-dendrite comparison export."""
    return cfg.mode != "traditional" and cfg.schedule.max_dendrites > 0


def training_budget(limit: float | None, used: float, compare: bool, log: Log) -> float | None:
    """Seconds `fit` may take (TrainConfig.max_seconds) so the whole job, start-up and export included, ends
    within EI's compute limit; None without a limit. The comparison export is the first to go: when the
    limit cannot hold it, training keeps that time and the export is skipped later (traditional_reference)."""
    if limit is None:
        return None
    reserves = [EXPORT_SECONDS + COMPARISON_SECONDS, EXPORT_SECONDS] if compare else [EXPORT_SECONDS]
    for reserve in reserves:
        budget = limit - used - reserve
        if budget > 0:
            log(f"time budget: {budget:.0f}s for training of the {limit:.0f}s compute limit ({used:.0f}s start-up "
                f"and loading, ~{reserve:.0f}s reserved for the export)")
            return budget
    raise TimeLimitError(
        f"the compute time limit ({limit:.0f}s) leaves no time to train: start-up and loading took {used:.0f}s "
        f"and the export needs about {EXPORT_SECONDS:.0f}s; raise the limit")


def gpu_job() -> bool:
    """Whether this job trains on a GPU (the trainer's own device choice), where EI's remaining GPU compute
    time also limits it (block/data.py EIData.max_training_seconds)."""
    import torch

    return torch.cuda.is_available()


def run(args: Namespace, search: Search | None = None, log: Log = print, started: float | None = None) -> int:
    """`started`: time.monotonic() when the job began (train.py's main), for EI's compute limit."""
    t_start = time.monotonic() if started is None else started
    from block.configs import run_config
    from block.data import load_ei_data
    from block.report import network_line, plot_training, sizing_line, summary_table, write_json
    from block.sizing import Budget, device_limits, resolve_budget, size_to_budget
    from export.checkpoint import CALIBRATION_ROWS, export_checkpoint, save_checkpoint
    from kws.trainer import fit, train_teacher

    out = writable_out_dir(args.out_directory)
    data = load_ei_data(args.data_directory, args.info_file, args.holdout_directory, args.mfcc_coefficients)
    data = replace(data, on_gpu=gpu_job())
    data_line = (f"data: {len(data.x_train)} train, {len(data.x_val)} validation"
                 + (f", {len(data.x_holdout)} holdout" if data.x_holdout is not None else "")
                 + f" rows; {data.n_features} features; classes {data.classes}")
    if search is not None:  # the search reports on this data before the network exists
        log(data_line)
    limit = data.max_training_seconds  # the whole job's, counted from t_start (the search included)
    budget, source = resolve_budget(args.max_params, data.n_features, data.n_classes, args.mfcc_coefficients,
                                    args.model_preset)
    limits = Budget.from_kb(budget, args.max_flash_kb, args.max_ram_kb, args.max_macs)
    if search is not None:  # architecture search first (within the budget), then train its pick as usual
        args = Namespace(**{**vars(args), "max_params": budget})
        args, data = search(args, data, log)
    cfg = run_config(args, data.n_features, data.n_classes)
    sizing = {"budget": budget, "source": source, "device_limits": device_limits(limits)}
    # The widest net within the budget (block/sizing.py). A search's pick (sized_by_search) is already within
    # it; when the search keeps the default, that is sized here exactly as without a search.
    if limits and not getattr(args, "sized_by_search", False):
        cfg, chosen = size_to_budget(cfg, limits, reshape=args.model_preset != "custom")
        sizing.update(chosen)
    log(network_line(cfg, sizing, args.model_preset))  # right after the arguments (and before `data:`)
    if sizing.get("note"):
        log(f"sizing: {sizing['note']} (floor {sizing['min_width']} channels: bench/sizing_floor.py)")
    if search is None:
        log(data_line)
    if limit is not None:
        seconds = training_budget(limit, time.monotonic() - t_start, may_compare(cfg), log)
        cfg = replace(cfg, train=replace(cfg.train, max_seconds=seconds))
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

    def time_left() -> float | None:
        return None if limit is None else limit - (time.monotonic() - t_start)

    t_export = time.monotonic()
    with staged(out) as tmp:
        save_checkpoint(tmp / "model.pt", dm, cfg, data.classes, calib)
        # The shipped files come from model.pt, as `python -m export` makes them: the checkpoint is complete.
        # model.onnx is always exported and verified (it is the route to TFLite); --export-onnx false only
        # keeps it out of the out directory.
        ckpt, report = export_checkpoint(tmp / "model.pt", tmp)
        if not args.export_onnx:
            (tmp / ONNX_FILE).unlink()
            report = {**report, "files": {k: v for k, v in report["files"].items() if k != ONNX_FILE}}
        evaluation = evaluate_files(ckpt.model.net, tmp, sets, data.classes)
        metrics = assemble_metrics(cfg, result, dm, report, evaluation, data.classes)
        metrics["sizing"] = sizing
        over = limits.over(0, {"flash_bytes": metrics["flash_bytes"], "arena_bytes": metrics["arena_bytes"],
                               "macs": metrics["macs"]}, slack=False)
        if over and limits.device:  # measured before training with the same export: a few bytes at most
            log(f"warning: the shipped model is over the device budget ({'; '.join(over)})")
        metrics["dendrites_per_layer"] = dm.architecture()
        metrics["dendrite_neurons"] = dm.installed_neurons()
        metrics["export_seconds"] = time.monotonic() - t_export
        log(f"export and checks of the shipped model took {metrics['export_seconds']:.1f}s")
        reference = traditional_reference(dm, out, calib, sets, data.classes, log, time_left())
        if reference is not None:
            metrics["deployment"]["traditional"] = reference
        plot_training(result.history, metrics["cycles"], tmp / "training.png", sizing_line(metrics),
                      metrics["deployment"])
        metrics["total_seconds"] = time.monotonic() - t_start
        write_json(tmp / "metrics.json", metrics)
    log(summary_table(metrics))
    now = time.monotonic()
    log(f"artifacts written to {out} in {now - t_start:.1f}s ({now - t_export:.1f}s of them after training)")
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
    return {"dendrites": dendrites, "params": params, "flash_bytes": report["files"][INT8_FILE],
            "arena_bytes": report["arena_bytes"], "files": report["files"], "macs": report["macs"], **acc}


def assemble_metrics(cfg, result, dm, report: dict, evaluation: dict, classes: list[str]) -> dict:
    """metrics.json: what Studio's log summary, the README and the benches read."""
    from kws.trainer import history_dicts

    val = evaluation["validation"]
    cycles = [dict(c) for c in result.cycles]
    for c in cycles:  # the shipped cycle: its exported count (dead dendrites dropped, zero T/U rows left out)
        if c["dendrites"] == dm.num_dendrites and c["params"] != report["params"]:
            c["training_params"], c["params"] = c["params"], report["params"]
    metrics = {
        # the shipped (folded, exported) model's own count: dead dendrites dropped at export do not count
        "model_format": cfg.mode, "classes": classes, "params": report["params"],
        "dendrites_dropped": report["dendrites_dropped"],
        "dendrites": dm.num_dendrites, "epochs": result.epochs, "train_seconds": result.seconds,
        "float_accuracy": val["float"]["accuracy"], "int8_accuracy": val["int8"]["accuracy"],
        "per_class_accuracy": val["int8"]["per_class_accuracy"], "confusion": val["int8"]["confusion"],
        # on the device: flash = the int8 file, RAM = the TFLite Micro arena (params alone hide both)
        "flash_bytes": report["files"][INT8_FILE],
        **{k: report[k] for k in ("arena_bytes", "files", "macs", "ops", "parity", "ranges_floored") if k in report},
        "cycles": cycles, "evaluation": evaluation,
        "config": cfg.to_dict(),
        "history": history_dicts(result.history),
    }
    if "holdout" in evaluation:
        metrics["holdout_float_accuracy"] = evaluation["holdout"]["float"]["accuracy"]
        metrics["holdout_int8_accuracy"] = evaluation["holdout"]["int8"]["accuracy"]
    metrics["deployment"] = {"shipped": deployment_summary(report, evaluation, metrics["params"], dm.num_dendrites)}
    return metrics


def traditional_reference(dm, out: Path, calib: np.ndarray, sets: dict, classes: list[str], log: Log,
                          time_left: float | None = None) -> dict | None:
    """The same net's best checkpoint without dendrites, exported the same way (not shipped), so the log and
    metrics.json show what the dendrites cost and bought on the device. None for a 0-dendrite model, and
    when `time_left` (seconds of EI's compute limit) cannot hold another export."""
    from export import export_all

    if not dm.num_dendrites or 0 not in dm.best_by_dendrites:
        return None
    if time_left is not None and time_left < COMPARISON_SECONDS:
        log(f"skipping the 0-dendrite comparison export: {max(time_left, 0):.1f}s of the compute limit left, "
            f"it needs about {COMPARISON_SECONDS:.0f}s; metrics omit it")
        return None
    log("exporting the same net without dendrites (best 0-dendrite checkpoint) for comparison")
    t0 = time.monotonic()
    base = copy.deepcopy(dm)
    base.load_state_dict(dm.best_by_dendrites[0][1])
    try:
        with tempfile.TemporaryDirectory(prefix=".reference-", dir=out) as ref_dir:  # never moved into out
            report = export_all(base.net, Path(ref_dir), calib, calib)
            evaluation = evaluate_files(base.net, Path(ref_dir), sets, classes)
    except Exception as e:  # noqa: BLE001 - a comparison only: never fail the shipped model on it
        log(f"warning: the 0-dendrite comparison export failed ({e}); metrics omit it")
        return None
    log(f"comparison export took {time.monotonic() - t0:.1f}s")
    return deployment_summary(report, evaluation, report["params"], 0)
