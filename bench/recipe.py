"""The training recipe (issue 13): the old recipe against the new defaults, per model size, on real and
synthetic speech, with EI's own Keras block beside them.

    .venv/bin/python -m bench.recipe                                # 3 datasets x 3 nets x 2 recipes x 5 seeds
    .venv/bin/python -m bench.recipe --datasets gsc12-real --seeds 1 2 --jobs 2
    .venv/bin/python -m bench.recipe --report --update-results-md   # tables only, no training

Every run is `train.py --model-format traditional` with the net's flags, and for the old recipe the flags
that restore the block's recipe before issue 13 (no augmentation, dropout 0.25, early-stopping patience 15,
LR patience 5); the new recipe is whatever parameters.json holds now. Metrics are the shipped int8 model's
accuracy on the public holdout (a test set: reported, never selected on), its float twin, the int8 - float
gap, params, epochs and the subprocess wall time (training and export). Results merge into
bench/results/recipe.json keyed by (dataset, net, recipe, seed). EI's Keras block comes from
bench/results/keras_reference_<dataset>.json (`python -m bench.keras_reference`).
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common

DATASETS = ("gsc12-real", "commands12", "hello-world")
NETS = {  # name -> block flags; params at 12 classes / 3 classes in the table
    "ei-default": ["--model-preset", "ei-default"],
    "conv-width 11": ["--model-preset", "custom", "--conv-width", "11"],
    "conv-width 21": ["--model-preset", "custom", "--conv-width", "21"],
}
OLD_RECIPE = ["--augment-time-shift", "0", "--augment-time-masks", "0", "--augment-freq-masks", "0",
              "--augment-time-warp", "0", "--mixup-alpha", "0", "--label-smoothing", "0",
              "--auto-weight-classes", "false", "--distill-weight", "0", "--dropout", "0.25",
              "--input-noise", "0.3", "--early-stopping-patience", "15", "--lr-patience", "5"]
RECIPES = {"old": OLD_RECIPE, "new": []}
RESULTS_JSON = common.RESULTS_DIR / "recipe.json"
SECTION = "## Training recipe: augmentation, regularisation and patience (issue 13)"
KEPT = ("params", "epochs", "float_accuracy", "int8_accuracy", "holdout_float_accuracy", "holdout_int8_accuracy",
        "train_seconds", "total_seconds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--out-root", type=Path, default=common.REPO / "out" / "bench" / "recipe")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    p.add_argument("--report", action="store_true", help="print the tables from the results file only")
    p.add_argument("--update-results-md", action="store_true", help="refresh this section of bench/RESULTS.md")
    return p.parse_args(argv)


def run_one(dataset: str, net: str, recipe: str, seed: int, args: argparse.Namespace) -> dict:
    """One train.py run; the Keras row's float holdout sits in the float column (Keras exports no int8)."""
    data = args.data_root / dataset
    flags = ["--data-directory", str(data), "--holdout-directory", str(data / "holdout"), "--seed", str(seed),
             "--model-format", "traditional", *NETS[net], *RECIPES[recipe]]
    out = args.out_root / f"{dataset}-{net.replace(' ', '')}-{recipe}-{seed}"
    run = common.run_train(flags, out)
    metrics = run.pop("metrics") or {}
    print(f"{dataset} {net} {recipe} seed {seed}: rc {run['returncode']}, holdout int8 "
          f"{metrics.get('holdout_int8_accuracy')}, {run['wall_seconds']:.0f}s", flush=True)
    return {"dataset": dataset, "net": net, "recipe": recipe, "seed": seed, **run,
            **{k: metrics.get(k) for k in KEPT}, "git_head": common.git("rev-parse", "--short", "HEAD")}


def key(r: dict) -> tuple:
    return r["dataset"], r["net"], r["recipe"], r["seed"]


def pct(values: list) -> str:
    return common.fmt_pm([None if v is None else 100 * v for v in values], 1, show_n=False)


def rows(runs: list[dict], datasets: list[str]) -> list[list[str]]:
    out = []
    for ds in datasets:
        for net in NETS:
            for recipe in RECIPES:
                rs = sorted((r for r in runs if (r["dataset"], r["net"], r["recipe"]) == (ds, net, recipe)
                             and r.get("holdout_int8_accuracy") is not None), key=lambda r: r["seed"])
                if not rs:
                    continue
                gap = [r["holdout_int8_accuracy"] - r["holdout_float_accuracy"] for r in rs]
                out.append([ds, net, recipe, f"{rs[0]['params']:,}", str(len(rs)),
                            pct([r["holdout_int8_accuracy"] for r in rs]), pct([r["holdout_float_accuracy"] for r in rs]),
                            common.fmt_pm([100 * g for g in gap], 2, show_n=False), pct([r["int8_accuracy"] for r in rs]),
                            common.fmt_pm([r["epochs"] for r in rs], 0, show_n=False),
                            common.fmt_pm([r["wall_seconds"] for r in rs], 0, show_n=False)])
        ref_path = common.RESULTS_DIR / f"keras_reference_{ds}.json"
        if ref_path.exists():
            ref = json.loads(ref_path.read_text())
            budget = max(map(int, ref["summary"]))
            rs = [r for r in ref["runs"] if r["epochs"] == budget]
            out.append([ds, "EI's Keras block (ei-default net)", "EI's", f"{ref['params']:,}", str(len(rs)), "–",
                        pct([r.get("holdout_accuracy") for r in rs]), "–", pct([r["val_accuracy"] for r in rs]),
                        str(budget), common.fmt_pm([r["seed_wall_seconds"] for r in rs], 0, show_n=False)])
    return out


HEADERS = ["dataset", "net", "recipe", "params", "seeds", "holdout int8 %", "holdout float %", "int8 − float (pt)",
           "val int8 %", "epochs", "wall s"]


def paired(runs: list[dict], datasets: list[str]) -> list[list[str]]:
    """new − old holdout int8 accuracy, paired by seed (the same seed's split of randomness)."""
    out = []
    for ds in datasets:
        for net in NETS:
            by = {(r["recipe"], r["seed"]): r.get("holdout_int8_accuracy") for r in runs
                  if (r["dataset"], r["net"]) == (ds, net)}
            diffs = [100 * (by[("new", s)] - by[("old", s)]) for (rec, s) in by
                     if rec == "new" and by.get(("old", s)) is not None and by[("new", s)] is not None]
            if diffs:
                out.append([ds, net, str(len(diffs)), common.fmt_pm(diffs, 1, show_n=False)])
    return out


def report(runs: list[dict], datasets: list[str]) -> str:
    return (common.markdown_table(HEADERS, rows(runs, datasets)) + "\n\nPaired by seed, new − old recipe, holdout int8 "
            "(points):\n\n" + common.markdown_table(["dataset", "net", "seeds", "new − old"], paired(runs, datasets)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.exists() else []
    if not args.report:
        todo = [(d, n, r, s) for d in args.datasets for n in args.nets for r in args.recipes for s in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            new = list(pool.map(lambda t: run_one(*t, args), todo))
        merged = {key(r): r for r in runs} | {key(r): r for r in new}
        runs = sorted(merged.values(), key=key)
        common.write_json(RESULTS_JSON, {"machine": common.machine_info(), "runs": runs})
    print(common.text_table(HEADERS, rows(runs, list(DATASETS))))
    print(common.text_table(["dataset", "net", "seeds", "new − old"], paired(runs, list(DATASETS))))
    if args.update_results_md:
        cmd = "python -m bench.recipe " + " ".join(argv if argv is not None else [])
        body = f"Command: `{cmd.strip()}`; machine: {common.machine_info().get('cpus')} CPUs, one core per run.\n\n"
        common.update_md_section(common.RESULTS_MD, SECTION, body + report(runs, list(DATASETS)), "bench.recipe")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
