"""Fit sweep.budget's flash model to real int8 TFLite sizes.

Draws architectures from the sweep's own space, gives them k dendrites on random weights (nothing identically
zero, so the folder drops no cascade), exports each with `export.export_all` and least-squares fits
bytes ~ FLASH_COEFS · flash_features. Prints the constants to paste into sweep/budget.py and writes
bench/sweep/flash_calibration.csv.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.sweep.calibrate_flash [--n 32] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
from pathlib import Path

from bench.common import DATA_ROOT, REPO, block_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--data", default=str(DATA_ROOT / "hello-world"))
    ap.add_argument("--max-params", type=int, default=40_000, help="skip bigger draws (export time)")
    opts = ap.parse_args(argv)

    import numpy as np
    import torch

    from block.data import load_ei_data
    from export import export_all
    from kws.trainer import build_model
    from sweep import budget, space

    torch.set_num_threads(1)
    data = load_ei_data(opts.data)
    calib = data.x_val[:300]
    rng = random.Random(7)
    grid = space.arch_grid()
    rows: list[dict] = []
    while len(rows) < opts.n:
        hp = dict(rng.choice(grid))
        hp["model_format"] = rng.choice(space.FORMATS)
        hp |= {
            "max_dendrites": rng.choice((1, 2, 3, 4)),
            "init_multiplier": 0.01,
            "dendrite_activation": rng.choice(("tanh", "sigmoid", "relu")),
            "perforate": rng.choice(("all", "linear")),
            "dendrite_update": True,
        }
        _, run = block_run(space.to_argv(hp), data.n_features, data.n_classes)
        dm = build_model(run)
        k = run.schedule.max_dendrites if run.mode != "traditional" else 0
        features = budget.flash_features(dm, k)  # before growing, as the sweep computes it
        for layer in dm.layers.values():
            for _ in range(k):
                layer.add_dendrite()
        if dm.deployed_params() > opts.max_params:
            continue
        with torch.no_grad():
            for p in dm.parameters():
                p.copy_(torch.randn_like(p) * 0.1)
        with tempfile.TemporaryDirectory() as tmp:
            report = export_all(dm.net.eval(), Path(tmp), calib, calib[:50])
        row = {
            "format": hp["model_format"],
            "arch": space.describe(hp),
            "params": dm.deployed_params(),
            "k": k,
            "features": features,
            "int8_bytes": report["files"]["model_quantized_int8_io.tflite"],
        }
        rows.append(row)
        print(row, flush=True)

    x = np.array([r.pop("features") for r in rows])
    y = np.array([r["int8_bytes"] for r in rows], dtype=float)
    coefs, *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = x @ coefs
    for r, p in zip(rows, pred):
        r["fit_bytes"] = round(float(p))
        r["error_pct"] = round(100 * (p - r["int8_bytes"]) / r["int8_bytes"], 2)
    margin = float(max(0.0, np.max(y - pred)))
    out = REPO / "bench" / "sweep" / "flash_calibration.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"FLASH_COEFS = ({', '.join(f'{c:.4g}' for c in coefs)})")
    print(
        f"FLASH_MARGIN = {np.ceil(margin):.0f}  # bytes; max |error| {np.max(np.abs(y - pred)):.0f} B, "
        f"max rel error {np.max(np.abs(y - pred) / y) * 100:.1f} %; wrote {out}"
    )


if __name__ == "__main__":
    main()
