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
UNIFORM3 = ["--model-preset", "custom", "--conv-layers", "3", "--width-growth", "uniform"]  # conv3's shape
DSTCN_PW = "blocks.0.pw.0,blocks.1.pw.0"  # the pointwise convs of a DS-TCN's first two blocks


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
    # issue 23: the DS-TCN family (kws/nets/dstcn.py), its depth and width sized to the budget by block/sizing.py
    "tiny": {
        "dstcn": ["--model-format", "traditional", "--model-preset", "dstcn"],
        "dstcn, multi-kernel 3/5/7/9": ["--model-format", "traditional", "--model-preset", "dstcn-multikernel"],
    },
    "tiny dendritic": {  # dendrites on the pointwise convs of the first two blocks (every depth has them)
        "cc, dstcn pointwise, k<=2": cc(DSTCN_PW, 2, "--model-preset", "dstcn"),
        "cc linear, dstcn pointwise, k<=2": cc(DSTCN_PW, 2, "--model-preset", "dstcn",
                                               "--dendrite-activation", "linear"),
    },
}
CONVFC = ("traditional", "dendritic")  # issue 14's families: the conv+FC net with and without dendrites
RESULTS_JSON = common.RESULTS_DIR / "frontier.json"
PLOT = common.REPO / "bench" / "frontier.png"
SECTION = "## Frontier: best traditional vs best dendritic model per parameter budget (issue 14)"
SECTION_TINY = "## Frontier rerun: the DS-TCN family beside the conv+FC family, with and without dendrites (issue 23)"


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
    p.add_argument("--families", nargs="+", choices=list(GRID), help="only these families (default: all)")
    p.add_argument("--measured-selection", action="store_true",
                   help="run the selection seeds end to end (train.py, int8) instead of a library-level fit; "
                        "the pick's selection runs then count among its measured seeds")
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
                and r.get("val") is not None]
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
    slug = f"{dataset}-{budget}-{name.replace(' ', '').replace(',', '_').replace('<=', 'le').replace('/', '-')}-{seed}"
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
                    for f in CONVFC}
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


def selection_md(selection: list[dict], datasets: list[str], budgets: list[int], families: tuple[str, ...]) -> str:
    """Every grid entry's mean validation accuracy per dataset and budget: what was tried, and dropped."""
    names = [n for fam in families for n in GRID[fam]]
    rows = []
    for ds in datasets:
        for b in budgets:
            cells = []
            for n in names:
                rs = [r for r in selection if (r["dataset"], r["budget"], r["name"]) == (ds, b, n) and r.get("val") is not None]
                cells.append(f"{100 * sum(r['val'] for r in rs) / len(rs):.1f}" if rs else "–")
            if any(c != "–" for c in cells):
                rows.append([ds, f"{b:,}", *cells])
    return common.markdown_table(["dataset", "budget", *names], rows)


TINY_HEADERS = ["dataset", "budget", "conv+FC params", "conv+FC holdout int8 %", "DS-TCN pick (val)", "params",
                "holdout float %", "holdout int8 %", "d vs conv+FC (pt)", "DS-TCN + dendrites pick (val)", "params",
                "dendrites", "holdout int8 %", "d vs DS-TCN (pt)"]


def tiny_table(picked: list[dict], datasets: list[str], budgets: list[int]) -> list[list[str]]:
    """Per dataset and budget: the conv+FC pick, the DS-TCN pick and the dendritic DS-TCN pick, int8 holdout."""
    def rows_of(ds: str, b: int, fam: str) -> dict[int, dict]:
        return {r["seed"]: r for r in picked if (r["dataset"], r["budget"], r["family"]) == (ds, b, fam)
                and r.get("holdout_int8_accuracy") is not None}

    def acc(rs: dict[int, dict], key: str = "holdout_int8_accuracy") -> str:
        return pct([r[key] for r in rs.values()]) if rs else "–"

    def diff(a: dict[int, dict], b: dict[int, dict]) -> str:
        d = [100 * (a[s]["holdout_int8_accuracy"] - b[s]["holdout_int8_accuracy"]) for s in a if s in b]
        return common.fmt_pm(d, 1, show_n=False) if len(d) > 1 else "–"

    def params(rs: dict[int, dict]) -> str:
        return common.fmt_pm([r["params"] for r in rs.values()], 0, show_n=False) if rs else "–"

    out = []
    for ds in datasets:
        for b in budgets:
            conv, tiny, dend = (rows_of(ds, b, f) for f in ("traditional", "tiny", "tiny dendritic"))
            if not tiny:
                continue
            name = lambda rs: next(iter(rs.values()))["name"] if rs else "–"
            out.append([ds, f"{b:,}", params(conv), acc(conv), name(tiny), params(tiny),
                        acc(tiny, "holdout_float_accuracy"), acc(tiny), diff(tiny, conv), name(dend), params(dend),
                        common.fmt_pm([r["dendrites"] for r in dend.values()], 1, show_n=False) if dend else "–",
                        acc(dend), diff(dend, tiny)])
    return out


def plot(measured: list[dict], datasets: list[str], budgets: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for fam, colour in (("traditional", "tab:blue"), ("dendritic", "tab:orange"), ("tiny", "tab:green"),
                            ("tiny dendritic", "tab:red")):
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


def measure_all(jobs: list[tuple], state: dict, args: argparse.Namespace) -> list[dict]:
    """Measure the (dataset, budget, family, name, seed) jobs not yet in state["measured"] (two at a time),
    merge them in and save; return the rows of every job, earlier or new."""
    key = lambda r: (r["dataset"], r["budget"], r["family"], r["name"], r["seed"])
    have = {key(r): r for r in state["measured"] if r.get("holdout_int8_accuracy") is not None}
    with ThreadPoolExecutor(args.jobs) as pool:
        new = list(pool.map(lambda j: measure_one(j, args), [j for j in jobs if j not in have]))
    redone = {key(r) for r in new}
    state["measured"] = [r for r in state["measured"] if key(r) not in redone] + new
    common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
    have |= {key(r): r for r in new}
    return [have[j] for j in jobs if j in have]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"selection": [], "measured": []}
    families = args.families or list(GRID)
    if not args.report:
        grid = [(ds, b, fam, name, s) for ds in args.datasets for b in args.budgets for fam in families
                for name in GRID[fam] for s in args.select_seeds if not args.configs or name in args.configs]
        if args.measured_selection:  # the selection seeds run end to end; they count among the pick's seeds
            selection = [{"dataset": r["dataset"], "budget": r["budget"], "family": r["family"], "name": r["name"],
                          "seed": r["seed"], "val": r["float_accuracy"], "params": r["params"],
                          "dendrites": r["dendrites"], "measured": True}
                         for r in measure_all(grid, state, args)]
        else:
            with ProcessPoolExecutor(args.jobs) as pool:
                selection = list(pool.map(select_one, [(*job, args.data_root) for job in grid]))
        new = {(r["dataset"], r["budget"], r["name"], r["seed"]) for r in selection}
        state["selection"] = [r for r in state["selection"]
                              if (r["dataset"], r["budget"], r["name"], r["seed"]) not in new] + selection
        common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
        picks = chosen_configs(state["selection"])
        measure_all([(ds, b, fam, picks[(ds, b, fam)], s) for ds in args.datasets for b in args.budgets
                     for fam in families if (ds, b, fam) in picks for s in args.seeds], state, args)
    picks = chosen_configs(state["selection"])
    picked = [r for r in state["measured"] if picks.get((r["dataset"], r["budget"], r["family"])) == r["name"]]
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in picked)]
    budgets = sorted({r["budget"] for r in picked})
    rows = table(picked, datasets, budgets)
    print(common.text_table(HEADERS, rows))
    tiny = tiny_table(picked, datasets, budgets)
    if tiny:
        print(common.text_table(TINY_HEADERS, tiny))
    if args.update_results_md:
        plot(picked, datasets, budgets)
        body = (f"Command: `python -m bench.frontier --families traditional dendritic`; "
                f"{common.machine_info().get('cpus')} CPUs, one core per run. Selection on "
                "validation (float, 2 seeds) among the grid in bench/frontier.py; holdout int8 over 5 seeds.\n\n"
                + common.markdown_table(HEADERS, rows) + "\n\n![frontier](frontier.png)\n\nSelection: mean float validation "
                "accuracy (%) of every grid entry (selection seeds), each sized to the budget:\n\n"
                + selection_md(state["selection"], datasets, budgets, CONVFC) + "\n")
        common.update_md_section(common.RESULTS_MD, SECTION, body, "bench.frontier")
        if tiny:
            tiny_body = (
                "Command: `python -m bench.frontier --families tiny \"tiny dendritic\" --measured-selection "
                "--datasets D --budgets B` (2 runs at a time, one core each); the shared "
                f"{common.machine_info().get('cpus')}-CPU dev machine, last run "
                f"{state.get('machine', {}).get('date_utc', '')[:16]} UTC at commit "
                f"{state.get('machine', {}).get('git_head', '')}. Every run is `train.py` end to end (sizing, "
                "training, fold, int8 export, TFLite Micro). Per family the selection seeds (1, 2) run first; the "
                "configuration with the best mean float *validation* accuracy is picked and run on seeds 3-5 too "
                "(its seeds 1-2 count among its 5). The holdout (new speakers or voices) is never used to choose. "
                "The conv+FC columns are issue 14's frontier (its pick: 3 uniform convs, today's `conv3`, the "
                "same 5 seeds and recipe). Means ± sd over 5 seeds; d = paired per-seed difference.\n\n"
                + common.markdown_table(TINY_HEADERS, tiny) + "\n\nSelection (mean float validation %, seeds 1-2):\n\n"
                + selection_md(state["selection"], datasets, budgets, ("tiny", "tiny dendritic")) + "\n")
            common.update_md_section(common.RESULTS_MD, SECTION_TINY, tiny_body, "bench.frontier")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
