"""The training recipe of the default DS-TCN (issue 23): one knob at a time, then combinations, on gsc12-real.

    .venv/bin/python -m bench.recipe_scan --variants "base (lr 0.005, dropout 0)" "lr 0.01 + dropout 0.1" --seeds 3 4 5 6 7
    .venv/bin/python -m bench.recipe_scan --max-params 1000 --variants "lr 0.01" "lr 0.01 + dropout 0.1"
    .venv/bin/python -m bench.recipe_scan --report --update-results-md      # tables only, no training

Each run is the block's default network (`auto`, sized to Edge Impulse's default network) trained in-process
by `kws.trainer.fit` with the block's arguments plus the variant's flags; every variant names its learning
rate and dropout, so a run means the same thing whatever parameters.json holds today. `net:` entries change a
DS-TCN field before sizing (e.g. the stem kernel, which has no flag; a depth set this way is kept). Float accuracy of the best-validation
checkpoint on validation (the selection criterion) and on the public holdout (a test set: reported, never
selected on). No export: int8 stays within half a point of float for this family (RESULTS.md "Frontier
rerun"); the chosen recipe is measured end to end, int8 included, by bench/default_runs.py. Two runs at a
time (one thread each); results merge into bench/results/recipe_scan.json keyed by (variant, seed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench import common

OLD = ["--learning-rate", "0.005", "--dropout", "0"]  # the recipe before this scan (issue 13's, on the DS-TCN)
LD = ["--learning-rate", "0.01", "--dropout", "0.1"]  # the pick
VARIANTS: dict[str, list[str]] = {
    "base (lr 0.005, dropout 0)": OLD,
    "dropout 0.1": ["--learning-rate", "0.005", "--dropout", "0.1"],
    "input noise 0": OLD + ["--input-noise", "0"],
    "input noise 0.6": OLD + ["--input-noise", "0.6"],
    "mixup 0.2": OLD + ["--mixup-alpha", "0.2"],
    "time warp 0.1": OLD + ["--augment-time-warp", "0.1"],
    "time warp 0.15": OLD + ["--augment-time-warp", "0.15"],
    "2 time + 2 freq masks": OLD + ["--augment-time-masks", "2", "--augment-freq-masks", "2"],
    "lr 0.01": ["--learning-rate", "0.01", "--dropout", "0"],
    "lr 0.002": ["--learning-rate", "0.002", "--dropout", "0"],
    "batch 64": OLD + ["--batch-size", "64"],
    "label smoothing 0.2": OLD + ["--label-smoothing", "0.2"],
    "early-stopping patience 50": OLD + ["--early-stopping-patience", "50"],
    "warp 0.1 + lr 0.01": ["--learning-rate", "0.01", "--dropout", "0", "--augment-time-warp", "0.1"],
    "warp 0.1 + dropout 0.1": ["--learning-rate", "0.005", "--dropout", "0.1", "--augment-time-warp", "0.1"],
    "lr 0.01 + dropout 0.1": LD,
    "lr 0.01 + dropout 0.15": ["--learning-rate", "0.01", "--dropout", "0.15"],
    "lr 0.01 + dropout 0.2": ["--learning-rate", "0.01", "--dropout", "0.2"],
    "lr 0.01 + dropout 0.1 + warp 0.1": LD + ["--augment-time-warp", "0.1"],
    "lr 0.01 + dropout 0.1 + label smoothing 0.05": LD + ["--label-smoothing", "0.05"],
    "lr 0.01 + dropout 0.1 + shift 6": LD + ["--augment-time-shift", "6"],
    "lr 0.01 + dropout 0.1 + input noise 0.15": LD + ["--input-noise", "0.15"],
    "lr 0.01 + dropout 0.1 + stem kernel 5": LD + ["net:stem_kernel=5"],
    "lr 0.01 + dropout 0.1 + kernel 7": LD + ["net:kernel=7"],
    "lr 0.02 + dropout 0.1": ["--learning-rate", "0.02", "--dropout", "0.1"],
    "lr 0.01 + dropout 0.1 + 3 blocks": LD + ["net:blocks=3"],
    "lr 0.01 + dropout 0.1 + 1 block": LD + ["net:blocks=1", "net:downsample=1"],
    "lr 0.01 + dropout 0.1 + one strided block": LD + ["net:downsample=1"],
    "lr 0.01 + dropout 0.05": ["--learning-rate", "0.01", "--dropout", "0.05"],
    "lr 0.01 + dropout 0.1 + lr patience 5": LD + ["--lr-patience", "5"],
    "lr 0.01 + dropout 0.1 + lr patience 20": LD + ["--lr-patience", "20"],
}
RESULTS_JSON = common.RESULTS_DIR / "recipe_scan.json"
SECTION = "## Recipe for the DS-TCN default: learning rate and dropout (issue 23)"
DATASET = "gsc12-real"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[3, 4, 5, 6, 7])
    p.add_argument("--max-params", default="auto", help="the budget the default network is sized to")
    p.add_argument("--speaker-validation", action="store_true",
                   help="train and validate on a speaker-disjoint split of the training pool (`speaker_split`)")
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    p.add_argument("--report", action="store_true", help="print the tables from the results file only")
    p.add_argument("--update-results-md", action="store_true", help="refresh this section of bench/RESULTS.md")
    return p.parse_args(argv)


def run_one(job: tuple[str, int, str]) -> dict:
    """Size the default network, train it with the variant's flags, score the best checkpoint (float)."""
    variant, seed, data_root, budget_flag, by_speaker = job
    os.environ.update(common.thread_env(1))
    from dataclasses import replace

    import torch

    from block.sizing import Budget, resolve_budget, size_to_budget
    from kws.trainer import evaluate, fit

    flags = [f for f in VARIANTS[variant] if not f.startswith("net:")]
    net_fields = {k: int(v) for k, v in (f[4:].split("=") for f in VARIANTS[variant] if f.startswith("net:"))}
    data = common.load_dataset(DATASET, Path(data_root))
    args, cfg = common.block_run(["--seed", str(seed), "--max-params", budget_flag, *flags], data.n_features,
                                 data.n_classes)
    budget, _ = resolve_budget(args.max_params, data.n_features, data.n_classes, args.mfcc_coefficients,
                               args.model_preset)
    cfg = replace(cfg, net=replace(cfg.net, **net_fields))
    # a variant that sets the depth keeps it (reshape would take it from the budget)
    cfg, _ = size_to_budget(cfg, Budget(params=budget), reshape="blocks" not in net_fields)
    t0 = time.monotonic()
    splits = speaker_split(data, Path(data_root) / DATASET) if by_speaker else data.splits()
    result = fit(cfg, splits, lambda line: None)
    model = result.model.cpu().eval()
    val = evaluate(model, torch.tensor(splits.x_val), torch.tensor(splits.y_val))[1]
    holdout = evaluate(model, torch.tensor(data.x_holdout), torch.tensor(data.y_holdout))[1]
    return {"variant": variant, "seed": seed, "max_params": budget_flag, "validation": _protocol(by_speaker),
            "flags": VARIANTS[variant], "params": model.deployed_params(), "width": cfg.net.width, "val": val,
            "holdout": holdout, "epochs": result.epochs,
            "seconds": time.monotonic() - t0, "commit": common.git("rev-parse", "--short", "HEAD")}


SPEAKER_SPLIT_SEED = 20261208
SPEAKER_VAL_SHARE = 0.2


def _protocol(by_speaker: bool) -> str:
    return "speakers" if by_speaker else "EI"


def _key(r: dict) -> tuple:
    """A run's identity in the results file (runs from before a field existed take its default)."""
    return r["variant"], r["seed"], r.get("max_params", "auto"), r.get("validation", "EI")


def speaker_split(data, data_dir: Path):
    """EI's training and validation rows pooled, then split by speaker (samples.csv): SPEAKER_VAL_SHARE of
    the speakers validate, the rest train. EI's own validation split shares every speaker with training
    (gsc12-real's README), so it rewards recognising voices; the block's users are judged on new ones.
    Clips without a speaker (noise) are split by a fixed draw. The holdout stays untouched."""
    import csv

    import numpy as np

    from kws.trainer import Splits

    rows = {("train", i): None for i in range(len(data.x_train))} | {("validation", i): None for i in range(len(data.x_val))}
    with (data_dir / "samples.csv").open() as f:
        for rec in csv.DictReader(f):
            if (rec["split"], int(rec["row"])) in rows:
                rows[(rec["split"], int(rec["row"]))] = rec["speaker"] or None
    rng = np.random.RandomState(SPEAKER_SPLIT_SEED)
    speakers = sorted({s for s in rows.values() if s})
    held = set(rng.permutation(speakers)[:round(SPEAKER_VAL_SHARE * len(speakers))])
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    keys = [("train", i) for i in range(len(data.x_train))] + [("validation", i) for i in range(len(data.x_val))]
    val = np.array([rows[k] in held if rows[k] else rng.rand() < SPEAKER_VAL_SHARE for k in keys])
    return Splits(x[~val], y[~val], x[val], y[val], data.x_holdout, data.y_holdout)


def load() -> dict:
    return json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"runs": [], "machine": {}}


def save(rec: dict) -> dict:
    """Add one run to the results file, re-read first: two scans (e.g. two budgets) may share the file."""
    results = load()
    results["runs"] = [r for r in results["runs"] if _key(r) != _key(rec)] + [rec]
    results["machine"] = common.machine_info()
    common.write_json(RESULTS_JSON, results)
    return results


def report(results: dict) -> tuple[str, str]:
    """(text table, RESULTS.md body): per variant mean +- sd over its seeds, best validation first."""
    by: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by.setdefault((_key(r)[2:], r["variant"]), []).append(r)
    rows = []
    for ((budget, protocol), variant), runs in by.items():
        val, hold = [100 * r["val"] for r in runs], [100 * r["holdout"] for r in runs]
        rows.append(((protocol, budget != "auto", budget, -statistics.mean(val)), [protocol, budget, variant, runs[0]["params"], " ".join(str(s) for s in sorted(r["seed"] for r in runs)),
                     common.fmt_pm(val, 1), common.fmt_pm(hold, 1), round(statistics.mean(r["epochs"] for r in runs))]))
    headers = ["validation", "max params", "variant", "params", "seeds", "val % (selection)", "holdout % (test)", "epochs"]
    table_rows = [row for _, row in sorted(rows, key=lambda t: t[0])]
    m = results.get("machine", {})
    body = (f"Command: `python -m bench.recipe_scan --variants V --seeds S` (2 runs at a time, one thread each); "
            f"{m.get('cpus', '?')}-CPU shared dev machine, last run {m.get('date_utc', '?')} at commit "
            f"{m.get('git_head', '?')}. gsc12-real, the default `auto` DS-TCN sized to the budget (auto = Edge Impulse's network), "
            "float accuracy of the best-validation checkpoint, mean ± sd over the seeds listed. Per budget sorted "
            "by validation, the only selection criterion; the holdout (new speakers) is a test set.\n\n"
            + common.markdown_table(headers, table_rows))
    return common.text_table(headers, table_rows), body


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = load()
    if not args.report:
        done = {_key(r) for r in results["runs"]}
        protocol = _protocol(args.speaker_validation)
        jobs = [(v, s, str(args.data_root), args.max_params, args.speaker_validation) for s in args.seeds
                for v in args.variants if (v, s, args.max_params, protocol) not in done]
        with ProcessPoolExecutor(args.jobs) as pool:
            for rec in pool.map(run_one, jobs):
                print(f"{rec['variant']} seed {rec['seed']}: val {rec['val']:.4f} holdout {rec['holdout']:.4f}", flush=True)
                results = save(rec)
    table, body = report(results)
    return common.publish(table, body, args.update_results_md, SECTION, "bench/recipe_scan.py")


if __name__ == "__main__":
    raise SystemExit(main())
