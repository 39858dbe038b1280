"""Edge Impulse learning block entry point: EI data in -> conv+FC net -> PB training -> fold -> export -> verify.

Studio runs `python3 -u train.py --data-directory D --out-directory O --info-file F --<param> V ...`
(ei-contract §3). Every handled failure prints one `ERR:` line and exits 1 without leaving model files.
"""
from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def log(msg: str) -> None:
    print(msg, flush=True)


def configs(args, n_features: int, n_classes: int):
    """Map the block arguments onto the library's typed configs."""
    from dendritic import PBConfig, ScheduleConfig, preset
    from dendritic.model import NetConfig
    from dendritic.trainer import TrainConfig

    common = {"dropout": args.dropout, "noise_std": args.input_noise}
    if args.model_preset == "custom":
        net = NetConfig(n_features=n_features, n_classes=n_classes, n_coeffs=args.mfcc_coefficients,
                        conv_type=args.conv_type, conv_layers=args.conv_layers, width=args.conv_width,
                        growth=args.width_growth, kernel_size=args.kernel_size, linear_layers=args.linear_layers,
                        linear_width=args.linear_width, **common)
    else:
        net = preset(args.model_preset, n_features, n_classes, args.mfcc_coefficients, **common)
    pb = PBConfig(mode=args.model_format, scope=args.perforate, activation=args.dendrite_activation,
                  init_mult=args.init_multiplier, dendrite_update=args.dendrite_update)
    sched = ScheduleConfig(mode=args.model_format, max_dendrites=args.max_dendrites,
                           switch_patience=args.switch_patience, improvement_threshold=args.improvement_threshold,
                           dendrite_patience=args.dendrite_patience, max_tries=args.max_dendrite_tries,
                           early_stopping_patience=args.early_stopping_patience)
    return net, pb, sched, TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate,
                                       batch_size=args.batch_size, lr_patience=args.lr_patience, seed=args.seed)


def writable_out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OSError(f"output directory {out} is not writable ({e.strerror or e})") from None
    return out


def export_and_evaluate(net, out: Path, calib, sets: dict, classes: list[str]) -> tuple[dict, dict]:
    """Fold + export + verify `net` into `out`, then score torch and both TFLite files on every split."""
    import torch

    from block.report import accuracy_block
    from export import export_all
    from export.runtime import predict

    report = export_all(net, out, calib, calib)
    evaluation: dict = {}
    for split, (x, y) in sets.items():
        with torch.no_grad():
            probs = torch.softmax(net(torch.as_tensor(x)), 1).numpy()
        evaluation[split] = {"torch": accuracy_block(probs, y, classes)}
        for kind, name in (("float", "model.tflite"), ("int8", "model_quantized_int8_io.tflite")):
            evaluation[split][kind] = accuracy_block(predict(out / name, x), y, classes)
    return report, evaluation


def deployment_summary(report: dict, evaluation: dict, params: int, dendrites: int) -> dict:
    """The deployment-cost and accuracy figures shown side by side for the shipped and reference models."""
    acc = {f"{split}_{kind}_accuracy": evaluation[split][kind]["accuracy"]
           for split in evaluation for kind in ("float", "int8")}
    return {"dendrites": dendrites, "params": params, "files": report["files"], "macs": report["macs"],
            "arena_bytes": report["arena_bytes"], **acc}


def run(args) -> int:
    t_start = time.monotonic()
    import numpy as np

    from block.data import load_ei_data
    from block.report import plot_training, summary_table, write_json
    from dendritic.trainer import Splits, fit, history_dicts

    out = writable_out_dir(args.out_directory)
    data = load_ei_data(args.data_directory, args.info_file, args.holdout_directory, args.mfcc_coefficients)
    log(f"data: {len(data.x_train)} train, {len(data.x_val)} validation"
        + (f", {len(data.x_holdout)} holdout" if data.x_holdout is not None else "")
        + f" rows; {data.n_features} features; classes {data.classes}")
    if args.search_trials > 0:  # architecture search (sweep/) first, then train its pick as usual
        from sweep import best_args
        args, data = best_args(args, data, log)  # data: maxTrainingTimeSeconds lowered by the search time
    net_cfg, pb_cfg, sched_cfg, train_cfg = configs(args, data.n_features, data.n_classes)
    if data.max_training_seconds:
        from dataclasses import replace
        train_cfg = replace(train_cfg, max_seconds=float(data.max_training_seconds))
    result = fit(net_cfg, pb_cfg, sched_cfg, train_cfg,
                 Splits(data.x_train, data.y_train, data.x_val, data.y_val, data.x_holdout, data.y_holdout), log)
    dm = result.model.cpu().eval()
    log(f"training done in {result.seconds:.1f}s: best model has {dm.num_dendrites} dendrites, "
        f"{dm.deployed_params()} params")

    sets = {"validation": (data.x_val, data.y_val)}
    if data.x_holdout is not None:
        sets["holdout"] = (data.x_holdout, data.y_holdout)
    calib = np.asarray(data.x_val[:1000], dtype=np.float32)

    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        report, evaluation = export_and_evaluate(dm.net, tmp, calib, sets, data.classes)
        val = evaluation["validation"]
        metrics = {
            "model_format": pb_cfg.mode, "classes": data.classes, "params": dm.deployed_params(),
            "dendrites": dm.num_dendrites, "epochs": result.epochs, "train_seconds": result.seconds,
            "float_accuracy": val["float"]["accuracy"], "int8_accuracy": val["int8"]["accuracy"],
            "per_class_accuracy": val["int8"]["per_class_accuracy"], "confusion": val["int8"]["confusion"],
            **{k: report[k] for k in ("files", "macs", "arena_bytes", "ops", "parity") if k in report},
            "cycles": result.cycles, "evaluation": evaluation,
            "config": {"net": net_cfg.to_dict(), "pb": vars(pb_cfg), "schedule": vars(sched_cfg),
                       "train": vars(train_cfg)},
            "history": history_dicts(result.history),
        }
        if "holdout" in evaluation:
            metrics["holdout_float_accuracy"] = evaluation["holdout"]["float"]["accuracy"]
            metrics["holdout_int8_accuracy"] = evaluation["holdout"]["int8"]["accuracy"]
        metrics["deployment"] = {"shipped": deployment_summary(report, evaluation, metrics["params"], dm.num_dendrites)}
        if dm.num_dendrites and 0 in dm.best_by_dendrites:
            # The same net's best checkpoint without dendrites, exported the same way (not shipped), so the
            # log and metrics.json show what the dendrites cost and bought on the device.
            log("exporting the same net without dendrites (best 0-dendrite checkpoint) for comparison")
            base = copy.deepcopy(dm)
            base.load_state_dict(dm.best_by_dendrites[0][1])
            ref_dir = Path(tempfile.mkdtemp(prefix=".reference-", dir=out))
            try:
                ref_report, ref_eval = export_and_evaluate(base.net, ref_dir, calib, sets, data.classes)
                metrics["deployment"]["traditional"] = deployment_summary(ref_report, ref_eval,
                                                                          base.deployed_params(), 0)
            except Exception as e:  # noqa: BLE001 - a comparison only: never fail the shipped model on it
                log(f"warning: the 0-dendrite comparison export failed ({e}); metrics omit it")
            finally:
                shutil.rmtree(ref_dir, ignore_errors=True)
        plot_training(result.history, result.cycles, tmp / "training.png")
        metrics["total_seconds"] = time.monotonic() - t_start
        write_json(tmp / "metrics.json", metrics)
        for f in sorted(tmp.iterdir()):  # all artifacts exist and verified: move them into place
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(summary_table(metrics))
    log(f"artifacts written to {out} in {time.monotonic() - t_start:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    from block.params import parse_args

    args = parse_args(argv)
    log("arguments: " + " ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    try:
        return run(args)
    except KeyboardInterrupt:
        print("ERR: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:
        if os.environ.get("DENDRITIC_DEBUG"):
            raise
        expected = isinstance(e, (ValueError, OSError, RuntimeError))  # DataError, ExportError, TimeLimitError
        detail = str(e) if expected else f"internal error {type(e).__name__}: {e} (DENDRITIC_DEBUG=1 shows the traceback)"
        print(f"ERR: {detail}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
