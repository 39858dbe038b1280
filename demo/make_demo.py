"""Build demo/data: a small, stratified, seeded subset of ../shared/data/hello-world in EI's layout.

`make demo` must run from a bare clone, so the repo bundles ~540 rows (≤1.5 MB) instead of the full set.
Rows are picked per class in proportion to the source split, then kept in source order so that
sample_id_details.json still lists ids in row order, as EI writes it.

    .venv/bin/python demo/make_demo.py [--source ../shared/data/hello-world] [--out demo/data]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED = 20261122
# split -> (X file, Y file, sample_id_details key or None, rows wanted)
SPLITS = {
    "train": ("X_split_train.npy", "Y_split_train.npy", "train", 360),
    "validation": ("X_split_test.npy", "Y_split_test.npy", "validation", 90),
    "holdout": ("holdout/X_test.npy", "holdout/Y_test.npy", None, 90),
}


def stratified_rows(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices: round(n * class share) random rows of every class."""
    classes, counts = np.unique(labels, return_counts=True)
    take = np.round(n * counts / counts.sum()).astype(int)
    rows = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared/data/hello-world")
    ap.add_argument("--out", type=Path, default=REPO / "demo/data")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    ids = json.loads((args.source / "sample_id_details.json").read_text())
    sample_ids = {}
    (args.out / "holdout").mkdir(parents=True, exist_ok=True)
    for split, (x_name, y_name, id_key, n) in SPLITS.items():
        x, y = np.load(args.source / x_name), np.load(args.source / y_name)
        rows = stratified_rows(y.argmax(axis=1), n, rng)
        np.save(args.out / x_name, np.ascontiguousarray(x[rows], dtype=np.float32))
        np.save(args.out / y_name, np.ascontiguousarray(y[rows], dtype=np.float32))
        if id_key:
            sample_ids[id_key] = [ids[id_key][r] for r in rows]
        print(f"{split}: {len(rows)} rows, per class {np.bincount(y[rows].argmax(axis=1)).tolist()}")
    (args.out / "sample_id_details.json").write_text(json.dumps(sample_ids) + "\n")
    shutil.copyfile(args.source / "train_input.json", args.out / "train_input.json")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
