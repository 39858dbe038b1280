"""Deployment cost of traditional vs dendritic (CC) KWS models at similar deployed parameter counts (issue 4).

    .venv/bin/python -m bench.deploy_compare --plan                 # planned params per pair, no training
    .venv/bin/python -m bench.deploy_compare --seeds 1              # train + export every model, seed 1
    .venv/bin/python -m bench.deploy_compare --seeds 3 --skip-done  # add seeds 2, 3 (re-runs failed runs)
    .venv/bin/python -m bench.deploy_compare --report --update-results-md   # tables only, no training

Why: "dendrites beat a plain net at the same parameter count" only matters on a device if it also holds for
what the device pays: flash (the int8 .tflite), TFLite Micro arena, MACs, and the int8 accuracy. Each pair
below puts a traditional net and a `--model-format cc` net at deployed params within ~10 % of each other
(planned with the block's own model builder and the deployment formula, checked with --plan) and runs the
real `train.py` for both, one run after another. Custom nets keep the ei-default shape (Conv1d, 2 layers,
doubling widths, kernel 3, one Dense) and change only --conv-width, so a pair differs in where the
parameters go (wider net vs dendrites), not in architecture family. The dendritic side may end with fewer
dendrites than its maximum when a cycle did not improve validation; the tables show the final count and
params per seed. Holdout is reported, never used to pick anything.

Results merge into bench/results/deploy_compare.json keyed by (dataset, pair, side, seed).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    DATA_ROOT,
    REPO,
    RESULTS_DIR,
    RESULTS_MD,
    block_run,
    machine_info,
    markdown_table,
    mean_sd,
    n_classes_of,
    run_train,
    text_table,
    update_md_section,
    write_json,
)
from bench.default_runs import block_provenance, provenance

RESULTS_JSON = RESULTS_DIR / "deploy_compare.json"
SECTION = "## Deployment cost: traditional vs dendritic at similar params"
TOOL = "bench/deploy_compare.py"
INT8, FLOAT = "model_quantized_int8_io.tflite", "model.tflite"
SIDES = ("traditional", "dendritic")
KEPT_METRICS = ("params", "dendrites", "epochs", "float_accuracy", "int8_accuracy", "holdout_float_accuracy",
                "holdout_int8_accuracy", "files", "macs", "arena_bytes", "ops", "train_seconds",
                "total_seconds", "cycles")
MAX_GAP_PP = 1.0  # int8 may lose at most this much holdout accuracy vs float (issue 4's requirement)


def custom(width: int) -> tuple[str, ...]:
    """The ei-default shape at another first-layer width (ei-default itself is width 8)."""
    return ("--model-preset", "custom", "--conv-type", "conv1d", "--conv-layers", "2",
            "--conv-width", str(width), "--width-growth", "doubling", "--kernel-size", "3",
            "--linear-layers", "1")


def cc(dendrites: int) -> tuple[str, ...]:
    """CC dendrites on every conv and linear layer (the block default scope), up to `dendrites` per neuron."""
    return ("--model-format", "cc", "--max-dendrites", str(dendrites), "--perforate", "all")


TRADITIONAL = ("--model-format", "traditional")
EI_DEFAULT = ("--model-preset", "ei-default")
PAPER = ("--model-preset", "paper-baseline")


@dataclass(frozen=True)
class Side:
    """One model of a pair: a short label and the train.py flags that define it."""

    label: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """A traditional and a dendritic model meant to land at similar deployed params."""

    name: str
    traditional: Side
    dendritic: Side

    def side(self, which: str) -> Side:
        return self.traditional if which == "traditional" else self.dendritic


# The class count moves the Dense layer's size (16·13·C), so each dataset gets its own matches; planned params
# at 3 / 12 classes are in the comments (--plan prints them).
PAIRS: dict[str, list[Pair]] = {
    "hello-world": [  # 3 classes
        Pair("a", Side("paper-baseline", PAPER + TRADITIONAL),  # 3,859
             Side("ei-default + ≤2 CC", EI_DEFAULT + cc(2))),  # 4,122
        Pair("b", Side("custom w14", custom(14) + TRADITIONAL),  # 2,859
             Side("ei-default + ≤1 CC", EI_DEFAULT + cc(1))),  # 2,721
        Pair("c", Side("ei-default", EI_DEFAULT + TRADITIONAL),  # 1,347
             Side("custom w3 + ≤2 CC", custom(3) + cc(2))),  # 1,287
    ],
    "commands12": [  # 12 classes: ei-default + 2 CC would be 9,792, so pair (a) uses a narrower base
        Pair("a", Side("paper-baseline", PAPER + TRADITIONAL),  # 4,732
             Side("custom w4 + ≤2 CC", custom(4) + cc(2))),  # 4,644
        Pair("b", Side("custom w15", custom(15) + TRADITIONAL),  # 6,672
             Side("ei-default + ≤1 CC", EI_DEFAULT + cc(1))),  # 6,492
        Pair("c", Side("ei-default", EI_DEFAULT + TRADITIONAL),  # 3,228
             Side("custom w3 + ≤2 CC", custom(3) + cc(2))),  # 3,447
    ],
}


def pairs_of(datasets: list[str], names: list[str] | None = None) -> Iterator[tuple[str, Pair]]:
    """(dataset, pair) in table order, optionally only the named pairs."""
    return ((ds, p) for ds in datasets for p in PAIRS[ds] if names is None or p.name in names)


def side_of(r: dict) -> Side:
    """The model definition a stored run record belongs to."""
    return next(p for ds, p in pairs_of([r["dataset"]], [r["pair"]])).side(r["side"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--pairs", nargs="+", default=["a", "b", "c"], help="which pairs to run")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: --first-seed, +1, ...")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="--epochs for train.py (default: the block's)")
    p.add_argument("--out-root", type=Path, default=REPO / "out" / "bench" / "deploy_compare",
                   help="where each run's --out-directory goes (wiped before the run)")
    p.add_argument("--threads", type=int, default=1, help="cap for OMP/MKL/TF threads in the child")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is killed")
    p.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    p.add_argument("--skip-done", action="store_true",
                   help="keep (dataset, pair, side, seed) runs that already succeeded; run only the rest")
    p.add_argument("--plan", action="store_true", help="print planned params per pair and exit")
    p.add_argument("--report", action="store_true", help="no training: print tables from the JSON results")
    p.add_argument("--update-results-md", action="store_true",
                   help=f"refresh our section of {RESULTS_MD.name}")
    return p.parse_args(argv)


def data_args(data_dir: Path) -> list[str]:
    return ["--data-directory", str(data_dir), "--holdout-directory", str(data_dir / "holdout")]


def planned_params(data_dir: Path, side: Side) -> int:
    """Deployed params at the side's maximum dendrite count, from the model `train.py` would build.

    Uses block.params → block.configs.run_config → kws.trainer.build_model, so the plan cannot drift
    from the block (same path as the sweep's size budget).
    """
    import numpy as np

    from kws.trainer import build_model

    n_features = int(np.load(data_dir / "X_split_train.npy", mmap_mode="r").shape[1])
    _, run = block_run(side.flags, n_features, n_classes_of(data_dir))
    model = build_model(run)
    return model.deployed_params(run.schedule.max_dendrites if run.mode != "traditional" else 0)


def plan_rows(data_root: Path, datasets: list[str], pairs: list[str]) -> list[list[object]]:
    """Planned params of both sides and their difference, to check a pair is within ~10 % before training."""
    rows = []
    for ds, pair in pairs_of(datasets, pairs):
        t, d = (planned_params(data_root / ds, pair.side(s)) for s in SIDES)
        rows.append([ds, pair.name, pair.traditional.label, f"{t:,}", pair.dendritic.label, f"{d:,}",
                     f"{100 * (d - t) / t:+.1f} %"])
    return rows


PLAN_HEADERS = ["dataset", "pair", "traditional", "params", "dendritic", "params at max k",
                "dendritic vs trad"]


def key(r: dict) -> tuple:
    return r["dataset"], r["pair"], r["side"], r["seed"]


def run_one(ds: str, pair: Pair, side: str, seed: int, args: argparse.Namespace) -> dict:
    """Train + export one model with run_train; keep the metrics the tables need plus provenance."""
    spec = pair.side(side)
    data_dir = args.data_root / ds
    flags = [*data_args(data_dir), *spec.flags, "--seed", str(seed)]
    flags += ["--epochs", str(args.epochs)] if args.epochs else []
    out_dir = args.out_root / f"{ds}-{pair.name}-{side}-seed{seed}"
    record = {"dataset": ds, "pair": pair.name, "side": side, "label": spec.label, "seed": seed,
              "planned_params": planned_params(data_dir, spec), "out_directory": str(out_dir),
              "block": block_provenance(), "machine": machine_info()}
    run = run_train(flags, out_dir, python=args.python, threads=args.threads, timeout=args.timeout)
    metrics = run.pop("metrics") or {}
    return record | run | {k: metrics[k] for k in KEPT_METRICS if k in metrics}


def load_runs() -> list[dict]:
    return json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.exists() else []


def merge(old: list[dict], new: dict) -> list[dict]:
    """The new record replaces one with the same key; the rest stay."""
    return sorted([r for r in old if key(r) != key(new)] + [new], key=key)


def ok(r: dict) -> bool:
    return r.get("returncode") == 0


def gap_pp(r: dict) -> float:
    """Holdout int8 minus float accuracy, in percentage points."""
    return 100 * (r["holdout_int8_accuracy"] - r["holdout_float_accuracy"])


def side_runs(runs: list[dict], ds: str, pair: str, side: str) -> list[dict]:
    """The successful runs of one model, in seed order."""
    return [r for r in runs if (r["dataset"], r["pair"], r["side"]) == (ds, pair, side) and ok(r)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def per_seed(values: list, digits: int = 0) -> str:
    """One value when every seed agrees, else each seed's value (a dendrite count can differ per seed)."""
    cells = [f"{v:,.{digits}f}" for v in values]
    return cells[0] if len(set(cells)) == 1 else " / ".join(cells)


def acc(values: list[float]) -> str:
    """Accuracy in %: mean ± sample sd over seeds."""
    m, s = mean_sd([100 * v for v in values])
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {s:.1f}"


def gap_cell(rs: list[dict]) -> str:
    """Mean int8 − float holdout gap in pp, with the worst seed in brackets when there are several."""
    gaps = [gap_pp(r) for r in rs]
    worst = f" ({round(min(gaps), 2) + 0.0:+.2f})" if len(gaps) > 1 else ""
    return f"{round(mean(gaps), 2) + 0.0:+.2f}{worst}"  # + 0.0: no "-0.00"


def model_rows(runs: list[dict], datasets: list[str]) -> list[list[object]]:
    """One row per model over its seeds (per-seed values where seeds differ, in seed order)."""
    rows = []
    for ds, pair in pairs_of(datasets):
        for side in SIDES:
            if not (rs := side_runs(runs, ds, pair.name, side)):
                continue

            def col(k: str, rs: list[dict] = rs) -> list:
                return [r[k] for r in rs]
            rows.append([ds, pair.name, pair.side(side).label, per_seed(col("params")),
                         per_seed(col("dendrites")), per_seed([r["files"][INT8] for r in rs]),
                         per_seed([r["files"][FLOAT] for r in rs]), per_seed(col("arena_bytes")),
                         per_seed(col("macs")), acc(col("float_accuracy")), acc(col("int8_accuracy")),
                         acc(col("holdout_float_accuracy")), acc(col("holdout_int8_accuracy")), gap_cell(rs),
                         f"{mean(col('wall_seconds')):.0f}", ", ".join(str(s) for s in col("seed"))])
    return rows


MODEL_HEADERS = ["dataset", "pair", "model", "params", "dendrites", "flash B (int8 tflite)", "float tflite B",
                 "arena B", "MACs", "val float %", "val int8 %", "holdout float %", "holdout int8 %",
                 "int8−float holdout pp (worst)", "wall s", "seeds"]


def pair_rows(runs: list[dict], datasets: list[str]) -> list[list[object]]:
    """Dendritic relative to traditional per pair: params, cost ratios and holdout accuracy difference."""
    rows = []
    for ds, pair in pairs_of(datasets):
        t, d = (side_runs(runs, ds, pair.name, s) for s in SIDES)
        if not t or not d:
            continue

        def ratio(get, t: list[dict] = t, d: list[dict] = d) -> str:
            return f"{mean([get(r) for r in d]) / mean([get(r) for r in t]):.2f}×"

        def diff(k: str, t: list[dict] = t, d: list[dict] = d) -> str:
            return f"{100 * (mean([r[k] for r in d]) - mean([r[k] for r in t])):+.1f}"
        rows.append([ds, pair.name, f"{pair.dendritic.label} vs {pair.traditional.label}",
                     ratio(lambda r: r["params"]), ratio(lambda r: r["files"][INT8]),
                     ratio(lambda r: r["arena_bytes"]), ratio(lambda r: r["macs"]),
                     diff("holdout_float_accuracy"), diff("holdout_int8_accuracy"),
                     ratio(lambda r: r["wall_seconds"])])
    return rows


PAIR_HEADERS = ["dataset", "pair", "dendritic vs traditional", "params", "flash", "arena", "MACs",
                "Δ holdout float pp", "Δ holdout int8 pp", "wall time"]


def run_rows(runs: list[dict], datasets: list[str]) -> list[list[object]]:
    """One row per successful run, so per-seed dendrite counts and spreads are visible."""
    return [[r["dataset"], r["pair"], r["label"], r["seed"], f"{r['params']:,}", r["dendrites"], r["epochs"],
             f"{r['files'][INT8]:,}", f"{r['arena_bytes']:,}", f"{r['macs']:,}",
             f"{100 * r['float_accuracy']:.1f} / {100 * r['int8_accuracy']:.1f}",
             f"{100 * r['holdout_float_accuracy']:.1f} / {100 * r['holdout_int8_accuracy']:.1f}",
             f"{gap_pp(r):+.2f}", f"{r['wall_seconds']:.0f}", r["block"]["git_head"]]
            for ds, pair in pairs_of(datasets) for side in SIDES
            for r in side_runs(runs, ds, pair.name, side)]


RUN_HEADERS = ["dataset", "pair", "model", "seed", "params", "dendrites", "epochs", "flash B", "arena B",
               "MACs", "val float / int8 %", "holdout float / int8 %", "gap pp", "wall s", "commit"]


def failed_lines(runs: list[dict], datasets: list[str]) -> list[str]:
    return [f"- FAILED {r['dataset']} {r['pair']} {r['label']} seed {r['seed']}: {r.get('returncode')} "
            f"{r.get('error', '')}" for r in runs if r["dataset"] in datasets and not ok(r)]


def gap_line(runs: list[dict], datasets: list[str]) -> str:
    """Did each run's int8 holdout accuracy stay within MAX_GAP_PP of float? Names the runs that did not."""
    rs = [r for r in runs if r["dataset"] in datasets and ok(r)]
    if not rs:
        return "int8 vs float: no runs."
    gaps = [gap_pp(r) for r in rs]
    out = [r for r in rs if abs(gap_pp(r)) > MAX_GAP_PP]
    names = "; ".join(f"{r['dataset']} {r['label']} seed {r['seed']}: {gap_pp(r):+.2f} pp" for r in out)
    verdict = (f"{len(out)} run(s) outside the ±{MAX_GAP_PP:g} pp limit ({names})." if out
               else f"all within the ±{MAX_GAP_PP:g} pp limit.")
    return (f"int8 − float holdout accuracy over all {len(rs)} runs: {min(gaps):+.2f} to "
            f"{max(gaps):+.2f} pp; {verdict}")


PER_RUN_ARGS = {"data_directory", "holdout_directory", "out_directory", "seed", "info_file"}


def shared_settings(r: dict) -> dict[str, str]:
    """The run's resolved train.py arguments that must be equal across the table.

    Why: the runs take the block's defaults (epochs, dendrite activation, noise, ...) and other engineers
    tune those while a long benchmark runs; a table that mixes two default sets is not a fair comparison.
    Leaves out the per-run paths and seed and the flags that define the side's model.
    """
    args = dict(item.split("=", 1) for item in r["arguments"].removeprefix("arguments: ").split())
    model = {f.removeprefix("--").replace("-", "_") for f in side_of(r).flags if f.startswith("--")}
    return {k: v for k, v in args.items() if k not in PER_RUN_ARGS | model}


def settings_lines(runs: list[dict]) -> list[str]:
    """The settings all runs shared and, where they differ, each run's values of the differing keys."""
    settings = [shared_settings(r) for r in runs]
    keys = sorted(set.intersection(*map(set, settings)))  # model-defining keys vary by side on purpose
    differ = [k for k in keys if len({st.get(k) for st in settings}) > 1]
    same = " ".join(f"{k}={settings[0][k]}" for k in keys if k not in differ)
    head = "Settings shared by all runs (block defaults at run time, unless a model flag sets them)"
    lines = [f"{head}: {same}"]
    if differ:
        lines.append(f"**MIXED SETTINGS** ({', '.join(differ)}), not a like-for-like table:")
        groups: dict[str, list[str]] = {}
        for r, st in zip(runs, settings):
            groups.setdefault(" ".join(f"{k}={st[k]}" for k in differ), []).append(
                f"{r['dataset']} {r['pair']} {r['side']} seed {r['seed']}")
        lines += [f"- {values}: {', '.join(names)}" for values, names in sorted(groups.items())]
    return lines


NOTES = """\
Measured {dates} (UTC), seeds {seeds}. Accuracies: mean ± sample sd over seeds; counts and sizes show one
value when all seeds agree, else each seed's value (a dendritic run keeps fewer dendrites than its maximum
when a cycle did not improve validation). Machine: the shared 2-core dev box, CPU only; runs strictly one
after another, 1 thread each, but other engineers' jobs ran at the same time (1-min load average {load} at
run starts), so wall times are noisy and only roughly comparable. wall s = the whole `train.py` process
(load, train, fold, export, verify, TFLM run). flash B = `model_quantized_int8_io.tflite` bytes; arena =
real TFLite Micro arena; MACs from the TFLite graph; params = deployed params of the final (folded) model."""


def report_markdown(runs: list[dict], datasets: list[str]) -> str:
    """The generated part of the RESULTS.md section: tables, machine, command, dates, provenance."""
    ours = [r for r in runs if r["dataset"] in datasets]
    seeds = sorted({r["seed"] for r in ours})
    loads = [r["machine"]["loadavg_1_5_15"][0] for r in ours]
    ok_runs = [r for r in ours if ok(r)]
    flags = sorted({f"{r['dataset']} {r['pair']} {r['label']}: {' '.join(side_of(r).flags)}" for r in ours})
    return "\n".join([
        NOTES.format(dates=", ".join(sorted({r["machine"]["date_utc"][:10] for r in ours})),
                     seeds=", ".join(map(str, seeds)), load=f"{min(loads):.1f}–{max(loads):.1f}"), "",
        markdown_table(MODEL_HEADERS, model_rows(runs, datasets)), "",
        "Dendritic relative to traditional, per pair (ratios of means; Δ = dendritic − traditional):", "",
        markdown_table(PAIR_HEADERS, pair_rows(runs, datasets)), "",
        gap_line(runs, datasets), *failed_lines(runs, datasets), "",
        "Per run:", "",
        markdown_table(RUN_HEADERS, run_rows(runs, datasets)), "",
        (f"Block code measured: {provenance(ours)}. Each run is `train.py --data-directory D "
         "--holdout-directory D/holdout --out-directory O --seed S` plus:"), "",
        "```", *flags, "```", "",
        *settings_lines(ok_runs), "",
        "Command (repo root; `--skip-done` re-runs only runs that have no successful record):", "",
        "```",
        (f".venv/bin/python -m bench.deploy_compare --seeds {len(seeds)} --first-seed {seeds[0]} --skip-done "
         f"--datasets {' '.join(datasets)}"),
        ".venv/bin/python -m bench.deploy_compare --report --update-results-md   # regenerates this block",
        "```", "",
        "Machine (`lscpu | head`):", "", "```", *ours[-1]["machine"]["lscpu_head"], "```",
    ])


def jobs(args: argparse.Namespace, done: set[tuple]) -> Iterator[tuple[str, Pair, str, int]]:
    """Runs still to do, seed-major so every model has seed 1 before any model gets seed 2."""
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for ds, pair in pairs_of(args.datasets, args.pairs):
            yield from ((ds, pair, side, seed) for side in SIDES if (ds, pair.name, side, seed) not in done)


def status_line(rec: dict) -> str:
    if not ok(rec):
        return f"FAILED: {rec.get('error')} in {rec['wall_seconds']:.0f}s"
    return (f"{rec['params']:,} params, {rec['dendrites']} dendrites, holdout float/int8 "
            f"{100 * rec['holdout_float_accuracy']:.1f}/{100 * rec['holdout_int8_accuracy']:.1f} "
            f"in {rec['wall_seconds']:.0f}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_root = args.data_root.resolve()
    if args.plan:
        print(text_table(PLAN_HEADERS, plan_rows(args.data_root, args.datasets, args.pairs)))
        return 0
    runs = load_runs()
    if not args.report:
        done = {key(r) for r in runs if ok(r)} if args.skip_done else set()
        for ds, pair, side, seed in jobs(args, done):
            print(f"[deploy_compare] {ds} {pair.name} {side} seed {seed} ...", flush=True)
            rec = run_one(ds, pair, side, seed, args)
            runs = merge(runs, rec)
            write_json(RESULTS_JSON, {"runs": runs})  # after every run, so a later failure loses nothing
            print(f"[deploy_compare]   {status_line(rec)}", flush=True)
    print(text_table(MODEL_HEADERS, model_rows(runs, args.datasets)))
    print()
    print(text_table(PAIR_HEADERS, pair_rows(runs, args.datasets)))
    print(gap_line(runs, args.datasets))
    print("\n".join(settings_lines([r for r in runs if r["dataset"] in args.datasets and ok(r)])))
    if args.update_results_md:
        update_md_section(RESULTS_MD, SECTION, report_markdown(runs, args.datasets), tool=TOOL)
        print(f"updated '{SECTION}' in {RESULTS_MD}")
    return 0 if all(ok(r) for r in runs if r["dataset"] in args.datasets) else 1


if __name__ == "__main__":
    sys.exit(main())
