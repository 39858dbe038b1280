"""Train Edge Impulse's own default MFCC classifier (ei-contract §6.3) in Keras as a reference point.

    .venv/bin/python -m bench.keras_reference --data-directory ../shared/data/hello-world \
        --holdout-directory ../shared/data/hello-world/holdout --seeds 3 --epochs 100 30

Architecture, optimizer, loss, batch size, shuffle and the best-val_loss checkpoint follow EI's generated
Keras code: Reshape (F/13, 13) -> Conv1D 8 k3 same relu -> MaxPool1D(2, 2, same) -> Dropout 0.25 ->
Conv1D 16 k3 same relu -> MaxPool1D(2, 2, same) -> Dropout 0.25 -> Flatten -> Dense(C, softmax, 'y_pred');
Adam(0.005, 0.9, 0.999), categorical cross-entropy, batch 32, shuffle(buffer 4 * batch), ModelCheckpoint on
val_loss (save_best_only) whose weights are loaded back after the last epoch. No augmentation (EI's default).

One training run per seed covers every budget in --epochs: the first N epochs of a longer run are exactly
a separate N-epoch run (same seeds, no epoch-dependent schedule; ops are deterministic), so the best-val_loss
checkpoint as it stood after epoch N is what an N-epoch run would restore. --separate trains each budget
from scratch instead (to check that claim). Runs on CPU with --threads TF threads (default 1).
Results: a table on stdout and bench/results/keras_reference_<dataset>.json.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    fmt_pm,
    load_xy,
    machine_info,
    mean_sd,
    n_classes_of,
    text_table,
    thread_env,
    write_json,
)

EI_COEFFS = 13
BATCH_SIZE = 32
LEARNING_RATE = 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-directory", type=Path, required=True, help="EI data dir (X/Y_split_*.npy)")
    p.add_argument("--holdout-directory", type=Path, default=None, help="dir with X_test.npy/Y_test.npy")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (first-seed, first-seed + 1, ...)")
    p.add_argument("--first-seed", type=int, default=3, help="3 = the seed EI's examples and the block use")
    p.add_argument("--epochs", type=int, nargs="+", default=[100, 30], help="epoch budgets (EI: 100 or 30)")
    p.add_argument("--separate", action="store_true", help="train every budget from scratch (slower)")
    p.add_argument("--threads", type=int, default=1, help="TF intra/inter-op threads")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/...)")
    return p.parse_args(argv)


def expected_params(n_features: int, n_classes: int) -> int:
    """Closed-form parameter count of EI's default MFCC net (1,347 for 650 features and 3 classes)."""
    frames = n_features // EI_COEFFS
    flat = 16 * math.ceil(math.ceil(frames / 2) / 2)
    return (3 * EI_COEFFS * 8 + 8) + (3 * 8 * 16 + 16) + (flat * n_classes + n_classes)


def build_model(keras, n_features: int, n_classes: int):
    """EI's default MFCC classifier, layer for layer as its generated Keras code builds it (§6.3)."""
    L = keras.layers
    model = keras.Sequential([
        L.Reshape((n_features // EI_COEFFS, EI_COEFFS), input_shape=(n_features,)),
        L.Conv1D(8, kernel_size=3, padding="same", activation="relu"),
        L.MaxPooling1D(pool_size=2, strides=2, padding="same"),
        L.Dropout(0.25),
        L.Conv1D(16, kernel_size=3, padding="same", activation="relu"),
        L.MaxPooling1D(pool_size=2, strides=2, padding="same"),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(n_classes, name="y_pred", activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE, beta_1=0.9, beta_2=0.999))
    return model


def budget_snapshots(keras, checkpoint: Path, budgets: list[int]):
    """Keras callback: after epoch N (N in budgets) copy the ModelCheckpoint file aside, so the checkpoint an
    N-epoch run would restore can be loaded later. Must come after the ModelCheckpoint in the list."""

    class BudgetSnapshots(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs=None) -> None:
            if epoch + 1 in budgets:
                shutil.copyfile(checkpoint, snapshot_path(checkpoint, epoch + 1))

    return BudgetSnapshots()


def snapshot_path(checkpoint: Path, budget: int) -> Path:
    return checkpoint.with_name(f"best_at_{budget}.weights.h5")


def accuracy(model, x, y) -> float:
    """Argmax accuracy of the float Keras model."""
    import numpy as np

    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1) == y))


def train_seed(keras, tf, data: dict, seed: int, budgets: list[int], workdir: Path) -> list[dict]:
    """Train once for max(budgets) epochs with one seed; evaluate the restored best-val_loss weights of
    every budget on validation (and holdout). Returns one record per budget."""
    import numpy as np

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    (x_tr, y_tr), (x_val, y_val) = data["train"], data["validation"]
    n_classes = data["n_classes"]
    onehot = np.eye(n_classes, dtype=np.float32)
    train_ds = (tf.data.Dataset.from_tensor_slices((x_tr, onehot[y_tr]))
                .shuffle(buffer_size=BATCH_SIZE * 4).batch(BATCH_SIZE, drop_remainder=False))
    val_ds = (tf.data.Dataset.from_tensor_slices((x_val, onehot[y_val]))
              .batch(BATCH_SIZE, drop_remainder=False))

    model = build_model(keras, x_tr.shape[1], n_classes)
    checkpoint = workdir / f"best_seed{seed}.weights.h5"
    callbacks = [keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_loss", save_best_only=True,
                                                 save_weights_only=True),
                 budget_snapshots(keras, checkpoint, budgets)]
    t0 = time.monotonic()
    hist = model.fit(train_ds, epochs=max(budgets), validation_data=val_ds, verbose=0, callbacks=callbacks)
    fit_s = time.monotonic() - t0
    val_loss = hist.history["val_loss"]

    records = []
    for budget in sorted(budgets, reverse=True):
        model.load_weights(str(snapshot_path(checkpoint, budget)))
        best = int(np.argmin(val_loss[:budget]))  # ModelCheckpoint keeps the first strict minimum
        rec = {"seed": seed, "epochs": budget, "best_epoch": best + 1, "best_val_loss": float(val_loss[best]),
               "val_accuracy": accuracy(model, x_val, y_val),
               "fit_seconds": fit_s * budget / max(budgets), "fit_seconds_measured_for_epochs": max(budgets)}
        if "holdout" in data:
            rec["holdout_accuracy"] = accuracy(model, *data["holdout"])
        records.append(rec)
    return records


def summarize(records: list[dict]) -> dict:
    """mean/sd per budget of validation and holdout accuracy and fit time."""
    out = {}
    for budget in sorted({r["epochs"] for r in records}, reverse=True):
        rs = [r for r in records if r["epochs"] == budget]
        row: dict = {"n_seeds": len(rs)}
        for key in ("val_accuracy", "holdout_accuracy", "fit_seconds", "best_epoch"):
            vals = [r[key] for r in rs if key in r]
            if vals:
                row[f"{key}_mean"], row[f"{key}_sd"] = mean_sd(vals)
        out[str(budget)] = row
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(thread_env(args.threads) | {"CUDA_VISIBLE_DEVICES": "-1"})
    import tensorflow as tf
    import tf_keras as keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.experimental.enable_op_determinism()

    t_start = time.monotonic()
    dataset = args.data_directory.resolve().name
    data: dict = {"train": load_xy(args.data_directory, "X_split_train", "Y_split_train"),
                  "validation": load_xy(args.data_directory, "X_split_test", "Y_split_test"),
                  "n_classes": n_classes_of(args.data_directory)}
    if args.holdout_directory:
        data["holdout"] = load_xy(args.holdout_directory, "X_test", "Y_test")
    n_features = data["train"][0].shape[1]
    params = build_model(keras, n_features, data["n_classes"]).count_params()
    expected = expected_params(n_features, data["n_classes"])
    if params != expected:
        raise SystemExit(f"ERR: built {params} params, expected {expected}")
    if (n_features, data["n_classes"]) == (650, 3) and params != 1347:
        raise SystemExit(f"ERR: EI default at 650 features / 3 classes must have 1,347 params, got {params}")
    print(f"{dataset}: {n_features} features, {data['n_classes']} classes, {params} params; "
          f"train {len(data['train'][1])} / val {len(data['validation'][1])}"
          + (f" / holdout {len(data['holdout'][1])}" if "holdout" in data else ""), flush=True)

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    schedule = [[b] for b in args.epochs] if args.separate else [args.epochs]
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="keras-ref-") as tmp:
        for seed in seeds:
            for budgets in schedule:
                t0 = time.monotonic()
                recs = train_seed(keras, tf, data, seed, budgets, Path(tmp))
                for r in recs:
                    r["seed_wall_seconds"] = time.monotonic() - t0
                    print(f"  seed {seed} epochs {r['epochs']:>3}: val {r['val_accuracy']:.4f}"
                          + (f" holdout {r['holdout_accuracy']:.4f}" if "holdout_accuracy" in r else "")
                          + f" best epoch {r['best_epoch']} (fit {r['fit_seconds']:.1f}s)", flush=True)
                records += recs

    summary = summarize(records)
    rows = [(dataset, b, params, fmt_pm([r["val_accuracy"] for r in records if r["epochs"] == int(b)]),
             fmt_pm([r.get("holdout_accuracy") for r in records if r["epochs"] == int(b)]),
             f"{s['best_epoch_mean']:.0f}", f"{s['fit_seconds_mean']:.1f}")
            for b, s in summary.items()]
    print()
    headers = ["dataset", "epochs", "params", "val acc", "holdout acc", "best ep", "fit s/seed"]
    print(text_table(headers, rows))
    total_s = time.monotonic() - t_start
    print(f"total wall time {total_s:.1f}s")

    out = args.out or RESULTS_DIR / f"keras_reference_{dataset}.json"
    write_json(out, {
        "dataset": dataset, "model": "EI default MFCC classifier (ei-contract §6.3), tf_keras",
        "data_directory": str(args.data_directory),
        "holdout_directory": str(args.holdout_directory or ""),
        "n_features": n_features, "n_classes": data["n_classes"], "params": params,
        "training": {"optimizer": "Adam lr 0.005 beta 0.9/0.999", "loss": "categorical_crossentropy",
                     "batch_size": BATCH_SIZE, "shuffle_buffer": BATCH_SIZE * 4, "epochs": args.epochs,
                     "checkpoint": "ModelCheckpoint(monitor='val_loss', save_best_only=True), "
                                   "restored at end",
                     "budgets_from_one_run": not args.separate, "augmentation": None},
        "seeds": seeds, "threads": args.threads, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
        "command": " ".join([".venv/bin/python", "-m", "bench.keras_reference", *(argv or sys.argv[1:])]),
        "total_seconds": total_s, "machine": machine_info(), "summary": summary, "runs": records,
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
