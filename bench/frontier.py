"""Accuracy against deployed size: the best traditional and the best dendritic model per parameter budget
(issue 14). This bench is the judge of whether dendrites earn their parameters.

    .venv/bin/python -m bench.frontier                       # select (2 seeds) then measure (5 seeds), all sets
    .venv/bin/python -m bench.frontier --datasets gsc12-real --budgets 2000 4000
    .venv/bin/python -m bench.frontier --report --update-results-md   # tables and frontier.png only

Per dataset and budget, every configuration of a small fixed grid is sized to the budget by the block's own
`--max-params` (block/sizing.py: the widest base whose model, dendrites included, fits) and trained with the
block's default recipe. Selection: each family's configuration with the best mean float *validation*
accuracy over the selection seeds (library-level fit, no export). Measurement: the two chosen
configurations through `train.py` (export and int8 included) on every seed; we report the shipped int8
model's holdout accuracy (a test set: never used to choose), its params, and the per-seed paired difference
dendritic - traditional. Results: bench/results/frontier.json, bench/frontier.png, bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from bench import common

DATASETS = ("gsc12-real", "commands12", "hello-world")
BUDGETS = (1000, 2000, 4000, 8000, 16000)
UNIFORM3 = ["--model-preset", "custom", "--conv-layers", "3", "--width-growth", "uniform"]  # the default's shape


def cc(scope: str, k: int, *extra: str) -> list[str]:
    """Block flags of a CC configuration: `scope` for --perforate (or a layer name for --perforate-layers)."""
    where = ["--perforate", scope] if scope in ("conv", "all", "linear") else ["--perforate-layers", scope]
    return ["--model-format", "cc", *where, "--max-dendrites", str(k), *extra]


GRID = {  # family -> {name: block flags}; every one is sized to the budget with --max-params
    "traditional": {
        "2 conv, doubling": ["--model-format", "traditional"],
        "3 conv, uniform": ["--model-format", "traditional", *UNIFORM3],
    },
    "dendritic": {
        "cc, conv scope, k<=1": cc("conv", 1),
        "cc, conv scope, k<=2": cc("conv", 2),
        "cc, all layers, k<=1": cc("all", 1),
        # grown from the base that won the traditional selection everywhere (3 uniform conv layers)
        "cc, conv scope, k<=1, 3 conv uniform": cc("conv", 1, *UNIFORM3),
        # Cascade-Correlation's candidate pool: 4 candidates per neuron, each neuron installs its best
        "cc, conv scope, k<=1, 3 conv uniform, pool 4": cc("conv", 1, *UNIFORM3, "--candidate-pool", "4"),
        # selective installation: dendrites only on neurons whose candidate beats 2x its noise level
        "cc, conv scope, k<=2, 3 conv uniform, selective 2x": cc("conv", 2, *UNIFORM3, "--install-noise-ratio", "2"),
        # a per-layer choice: only the last convolution, whose neurons' candidates correlate best
        "cc, last conv only, k<=2, 3 conv uniform": cc("convs.2", 2, *UNIFORM3),
        # dendrites with a wider receptive field (dilation 2) at a copy's cost: context the neuron lacks
        "cc, conv scope, k<=1, 3 conv uniform, dilation 2": cc("conv", 1, *UNIFORM3, "--dendrite-dilation", "2"),
        # a longer kernel (5 instead of 3): more context per dendrite, 5/3 of a copy's params
        "cc, conv scope, k<=1, 3 conv uniform, kernel 5": cc("conv", 1, *UNIFORM3, "--dendrite-kernel", "5"),
        # pointwise (1-wide) dendrites: a third of a copy's params, so the sized base stays wider
        "cc, conv scope, k<=2, 3 conv uniform, pointwise": cc("conv", 2, *UNIFORM3, "--dendrite-kernel", "1"),
        # linear dendrites fold into the neurons: training-time capacity at zero deployed params
        "cc linear, all layers, k<=2, 3 conv uniform": cc("all", 2, *UNIFORM3, "--dendrite-activation", "linear"),
    },
}
RESULTS_JSON = common.RESULTS_DIR / "frontier.json"
PLOT = common.REPO / "bench" / "frontier.png"
SECTION = "## Frontier: best traditional vs best dendritic model per parameter budget (issue 14)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    p.add_argument("--select-seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--out-root", type=Path, default=common.REPO / "out" / "bench" / "frontier")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--configs", nargs="+", help="select only these grid entries (merged with earlier ones)")
    p.add_argument("--rerun", action="store_true", help="train again even where a run's metrics.json exists")
    p.add_argument("--report", action="store_true")
    p.add_argument("--update-results-md", action="store_true")
    return p.parse_args(argv)


def select_one(job: tuple) -> dict:
    """Library-level fit of one (dataset, budget, config, seed): float validation accuracy, no export."""
    import torch

    from bench.common import block_run, load_dataset
    from block.sizing import size_to_budget
    from kws.trainer import evaluate, fit

    dataset, budget, family, name, seed, data_root = job
    torch.set_num_threads(1)
    data = load_dataset(dataset, data_root)
    _, run = block_run([*GRID[family][name], "--seed", str(seed)], data.n_features, data.n_classes)
    t0 = time.monotonic()
    try:
        run, chosen = size_to_budget(run, budget)
    except ValueError as e:  # the budget is too small for this configuration
        return {"dataset": dataset, "budget": budget, "family": family, "name": name, "seed": seed, "error": str(e)}
    result = fit(run, data.splits(), lambda line: None)
    model = result.model.eval()
    val = evaluate(model, torch.as_tensor(data.x_val), torch.as_tensor(data.y_val))[1]
    return {"dataset": dataset, "budget": budget, "family": family, "name": name, "seed": seed, "val": val,
            "params": model.deployed_params(), "dendrites": model.num_dendrites, "width": chosen["width"],
            "seconds": time.monotonic() - t0}


def chosen_configs(selection: list[dict]) -> dict[tuple, str]:
    """(dataset, budget, family) -> the configuration with the best mean validation accuracy."""
    best: dict[tuple, tuple[float, str]] = {}
    order = [n for fam in GRID.values() for n in fam]  # ties go to the earlier grid entry, not to set order
    keys = {(r["dataset"], r["budget"], r["family"], r["name"]) for r in selection if r["name"] in order}
    for (ds, b, fam, name) in sorted(keys, key=lambda k: (k[0], k[1], k[2], order.index(k[3]))):
        vals = [r["val"] for r in selection if (r["dataset"], r["budget"], r["family"], r["name"]) == (ds, b, fam, name)
                and "val" in r]
        if vals:
            score = sum(vals) / len(vals)
            if (ds, b, fam) not in best or score > best[(ds, b, fam)][0]:
                best[(ds, b, fam)] = (score, name)
    return {k: v[1] for k, v in best.items()}


def measure_one(job: tuple, args: argparse.Namespace) -> dict:
    dataset, budget, family, name, seed = job
    data = args.data_root / dataset
    flags = ["--data-directory", str(data), "--holdout-directory", str(data / "holdout"), "--seed", str(seed),
             "--max-params", str(budget), *GRID[family][name]]
    slug = f"{dataset}-{budget}-{name.replace(' ', '').replace(',', '_').replace('<=', 'le')}-{seed}"
    out = args.out_root / slug
    if (out / "metrics.json").exists() and not args.rerun:  # an interrupted bench resumes (same flags, same dir)
        m = json.loads((out / "metrics.json").read_text())
        run = {"command": " ".join(flags), "returncode": 0, "wall_seconds": m.get("total_seconds"), "resumed": True}
    else:
        run = common.run_train(flags, out)
        m = run.pop("metrics") or {}
    print(f"{slug} [{name}]: rc {run['returncode']}, {m.get('params')} params, holdout int8 "
          f"{m.get('holdout_int8_accuracy')}", flush=True)
    return {"dataset": dataset, "budget": budget, "family": family, "name": name, "seed": seed, **run,
            **{k: m.get(k) for k in ("params", "dendrites", "epochs", "int8_accuracy", "float_accuracy",
                                     "holdout_int8_accuracy", "holdout_float_accuracy", "sizing")}}


def pct(values: list) -> str:
    return common.fmt_pm([None if v is None else 100 * v for v in values], 1, show_n=False)


def table(measured: list[dict], datasets: list[str], budgets: list[int]) -> list[list[str]]:
    rows = []
    for ds in datasets:
        for b in budgets:
            fams = {f: sorted((r for r in measured if (r["dataset"], r["budget"], r["family"]) == (ds, b, f)
                               and r.get("holdout_int8_accuracy") is not None), key=lambda r: r["seed"])
                    for f in GRID}
            if not all(fams.values()):
                continue
            t, d = fams["traditional"], fams["dendritic"]
            by_seed = {r["seed"]: r["holdout_int8_accuracy"] for r in t}
            diff = [100 * (r["holdout_int8_accuracy"] - by_seed[r["seed"]]) for r in d if r["seed"] in by_seed]
            rows.append([ds, f"{b:,}", t[0]["name"], common.fmt_pm([r["params"] for r in t], 0, show_n=False),
                         pct([r["holdout_int8_accuracy"] for r in t]), d[0]["name"],
                         common.fmt_pm([r["params"] for r in d], 0, show_n=False),
                         common.fmt_pm([r["dendrites"] for r in d], 1, show_n=False),
                         pct([r["holdout_int8_accuracy"] for r in d]), common.fmt_pm(diff, 1, show_n=False),
                         " ".join(f"{x:+.1f}" for x in diff)])
    return rows


HEADERS = ["dataset", "budget", "best traditional (val)", "params", "holdout int8 %", "best dendritic (val)",
           "params", "dendrites", "holdout int8 %", "dendritic − traditional (pt)", "per seed"]


def selection_rows(selection: list[dict], datasets: list[str], budgets: list[int]) -> list[list[str]]:
    """Every grid entry's mean validation accuracy per dataset and budget: what was tried, and dropped."""
    names = [n for fam in GRID.values() for n in fam]
    rows = []
    for ds in datasets:
        for b in budgets:
            cells = []
            for n in names:
                rs = [r for r in selection if (r["dataset"], r["budget"], r["name"]) == (ds, b, n) and "val" in r]
                cells.append(f"{100 * sum(r['val'] for r in rs) / len(rs):.1f}" if rs else "–")
            rows.append([ds, f"{b:,}", *cells])
    return rows


def plot(measured: list[dict], datasets: list[str], budgets: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for fam, colour in (("traditional", "tab:blue"), ("dendritic", "tab:orange")):
            xs, ys, es = [], [], []
            for b in budgets:
                rs = [r for r in measured if (r["dataset"], r["budget"], r["family"]) == (ds, b, fam)
                      and r.get("holdout_int8_accuracy") is not None]
                if rs:
                    v = [100 * r["holdout_int8_accuracy"] for r in rs]
                    m = sum(v) / len(v)
                    xs.append(sum(r["params"] for r in rs) / len(rs))
                    ys.append(m)
                    es.append((sum((x - m) ** 2 for x in v) / max(1, len(v) - 1)) ** 0.5)
            ax.errorbar(xs, ys, yerr=es, marker="o", color=colour, label=fam, capsize=3)
        ax.set_xscale("log")
        ax.set_title(ds)
        ax.set_xlabel("deployed params (int8 model)")
        ax.set_ylabel("holdout int8 accuracy %")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"selection": [], "measured": []}
    if not args.report:
        jobs = [(ds, b, fam, name, s, args.data_root) for ds in args.datasets for b in args.budgets
                for fam in GRID for name in GRID[fam] for s in args.select_seeds
                if not args.configs or name in args.configs]
        with ProcessPoolExecutor(args.jobs) as pool:
            selection = list(pool.map(select_one, jobs))
        new = {(r["dataset"], r["budget"], r["name"], r["seed"]) for r in selection}
        state["selection"] = [r for r in state["selection"]
                              if (r["dataset"], r["budget"], r["name"], r["seed"]) not in new] + selection
        common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
        picks = chosen_configs(state["selection"])
        done = {(r["dataset"], r["budget"], r["family"], r["name"], r["seed"]) for r in state["measured"]
                if r.get("holdout_int8_accuracy") is not None}
        todo = [(ds, b, fam, picks[(ds, b, fam)], s) for ds in args.datasets for b in args.budgets for fam in GRID
                if (ds, b, fam) in picks for s in args.seeds if (ds, b, fam, picks[(ds, b, fam)], s) not in done]
        with ThreadPoolExecutor(args.jobs) as pool:
            measured = list(pool.map(lambda j: measure_one(j, args), todo))
        redone = {(r["dataset"], r["budget"], r["family"]) for r in measured}  # a new pick replaces the old one
        state["measured"] = [r for r in state["measured"] if (r["dataset"], r["budget"], r["family"]) not in redone
                             or (r["dataset"], r["budget"], r["family"], r["name"], r["seed"]) in done
                             and r["name"] == picks[(r["dataset"], r["budget"], r["family"])]] + measured
        common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in state["measured"])]
    budgets = sorted({r["budget"] for r in state["measured"]})
    rows = table(state["measured"], datasets, budgets)
    print(common.text_table(HEADERS, rows))
    if args.update_results_md:
        plot(state["measured"], datasets, budgets)
        cmd = "python -m bench.frontier " + " ".join(argv if argv is not None else [])
        body = (f"Command: `{cmd.strip()}`; {common.machine_info().get('cpus')} CPUs, one core per run. Selection on "
                "validation (float, 2 seeds) among the grid in bench/frontier.py; holdout int8 over 5 seeds.\n\n"
                + common.markdown_table(HEADERS, rows) + "\n\n![frontier](frontier.png)\n\nSelection: mean float validation "
                "accuracy (%) of every grid entry (selection seeds), each sized to the budget:\n\n"
                + common.markdown_table(["dataset", "budget", *[n for fam in GRID.values() for n in fam]],
                                 selection_rows(state["selection"], datasets, budgets)) + "\n")
        common.update_md_section(common.RESULTS_MD, SECTION, body, "bench.frontier")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
