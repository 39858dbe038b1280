"""Why do dendrites not beat a wider traditional net at equal deployed params? (issue 3)

    .venv/bin/python -m bench.why_dendrites                       # all experiments, seeds 1-3, both datasets
    .venv/bin/python -m bench.why_dendrites --seeds 1 --datasets hello-world
    .venv/bin/python -m bench.why_dendrites --report              # tables from the JSON only, no training

Controlled experiments, each run through `kws.trainer.fit` with the RunConfig that
`block.configs.run_config` builds from the block's own argument parser (so the block defaults apply: relu
dendrites, noise 0.3, dropout 0.25, lr 0.005, batch 32, switch patience 10, dendrite patience 3, <= 200
epochs), 1 torch thread, strictly one run after another:

- E1 (rule & perforation): ei-default + <= 1 dendrite on all layers, gd (joint backprop, no perforation)
  vs cc (correlation rule, perforated) vs a traditional ei-shaped net widened to about the same params.
  The cc and traditional runs are reused from bench/results/deploy_compare.json (pair b) when their
  settings equal the current defaults (checked; fit is deterministic on 1 CPU thread, so a re-run gives
  the same model); `--rerun-reused` trains them here instead.
- E2 (where the params go): dendrites on the classifier only (scope linear, <= 2 dendrites) on ei-default
  vs a traditional net widened to the same params.
- E3 (dendrites or schedule?): the E1 cc run, but every installed dendrite's output weight T is held at
  zero (monkeypatched here, dendritic/ untouched): the cycle's revert, neuron freeze, LR restart and extra
  epochs all happen, the dendrites contribute nothing. Its params are the base net's in effect. Beside
  it, plain traditional ei-default (early stopping, no restart; deploy_compare pair c, reused).

Best-validation checkpoint = what fit returns; its validation and holdout accuracy are measured here on the
torch model. Holdout is reported, never used to choose anything. Results: bench/results/why_dendrites.json.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})

from bench.common import (
    DATA_ROOT,
    RESULTS_DIR,
    RESULTS_MD,
    block_run,
    load_dataset,
    machine_info,
    markdown_table,
    mean_sd,
    text_table,
    update_md_section,
    write_json,
)

RESULTS_JSON = RESULTS_DIR / "why_dendrites.json"
SECTION = "## Why dendrites do not help at equal params (issue 3)"
DEPLOY_JSON = RESULTS_DIR / "deploy_compare.json"
EI = ["--model-preset", "ei-default"]


def custom(width: int) -> list[str]:
    """ei-default's shape (Conv1d x2 doubling, kernel 3, one Dense) at another first-layer width."""
    return ["--model-preset", "custom", "--conv-type", "conv1d", "--conv-layers", "2", "--conv-width",
            str(width), "--width-growth", "doubling", "--kernel-size", "3", "--linear-layers", "1"]


def cc(k: int, scope: str = "all") -> list[str]:
    return ["--model-format", "cc", "--max-dendrites", str(k), "--perforate", scope]


def gd(k: int, scope: str = "all") -> list[str]:
    return ["--model-format", "gd", "--max-dendrites", str(k), "--perforate", scope]


TRAD = ["--model-format", "traditional"]
# E1's equal-param traditional width per dataset (deploy_compare pair b), E2's (params of ei-default with
# 2 linear-only dendrites: 2,610 at 3 classes, 8,280 at 12; w13 = 2,577, w18 = 8,328).
E1_WIDTH = {"hello-world": 14, "commands12": 15}
E2_WIDTH = {"hello-world": 13, "commands12": 18}


def variants(ds: str) -> list[tuple[str, str, list[str], str | None]]:
    """(experiment, variant label, train.py flags, deploy_compare pair it can be reused from) per dataset."""
    return [
        ("E1", "gd ≤1 all", EI + gd(1), None),
        ("E1", "cc ≤1 all", EI + cc(1), "b"),
        ("E1", f"traditional w{E1_WIDTH[ds]}", custom(E1_WIDTH[ds]) + TRAD, "b"),
        ("E3", "cc ≤1 all, T frozen at 0", EI + cc(1), None),
        ("E3", "traditional ei-default (no restart)", EI + TRAD, "c"),
        ("E2", "cc ≤2 linear only", EI + cc(2, "linear"), None),
        ("E2", f"traditional w{E2_WIDTH[ds]}", custom(E2_WIDTH[ds]) + TRAD, None),
    ]


@contextlib.contextmanager
def frozen_out_weights() -> Iterator[None]:
    """Patch DendriticModel.end_epoch so every installed dendrite's T is zero and untrainable afterwards.

    Adam skips parameters whose grad stays None, so T never moves; the dendrite copies then get zero
    gradient too. Everything else (revert to best, frozen dendrite phase, fresh optimizer/LR) is unchanged.
    """
    import torch

    from dendritic.pb import DendriticModel

    original = DendriticModel.end_epoch

    def end_epoch(self, val_score=None):
        decision = original(self, val_score)
        for layer in self.layers.values():
            for t in layer.out_weights:
                with torch.no_grad():
                    t.zero_()
                t.requires_grad_(False)
        return decision

    DendriticModel.end_epoch = end_epoch
    try:
        yield
    finally:
        DendriticModel.end_epoch = original


def run_one(ds: str, exp: str, label: str, flags: list[str], seed: int, data) -> dict:
    """One fit with the block's configs; returns accuracies at the best-validation checkpoint."""
    import torch

    from kws.trainer import evaluate, fit

    args, run = block_run(["--seed", str(seed), *flags], data.n_features, data.n_classes)
    control = exp == "E3"
    t0 = time.monotonic()
    with frozen_out_weights() if control else contextlib.nullcontext():
        res = fit(run, data.splits(), log=lambda s: None)
    wall = time.monotonic() - t0
    dm = res.model.cpu().eval()

    def acc(x, y) -> float:
        return evaluate(dm, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))[1]

    params = dm.deployed_params()
    return {
        "dataset": ds, "experiment": exp, "variant": label, "seed": seed, "flags": " ".join(flags),
        "val_accuracy": acc(data.x_val, data.y_val), "holdout_accuracy": acc(data.x_holdout, data.y_holdout),
        "params": params, "effective_params": dm.deployed_params(0) if control else params,
        "dendrites": dm.num_dendrites, "epochs": res.epochs, "train_seconds": res.seconds,
        "wall_seconds": wall, "source": "why_dendrites.py (fit)", "cycles": res.cycles,
        "settings": {k: v for k, v in sorted(vars(args).items()) if k not in ("data_directory", "out_directory")},
        "machine": machine_info(),
    }


def reused(ds: str, exp: str, label: str, seed: int, pair: str) -> dict | None:
    """The matching deploy_compare run if its block settings equal today's defaults, else None."""
    import json

    from block.params import parse_args

    if not DEPLOY_JSON.exists():
        return None
    side = "traditional" if label.startswith("traditional") else "dendritic"
    runs = [r for r in json.loads(DEPLOY_JSON.read_text())["runs"]
            if r["dataset"] == ds and r["pair"] == pair and r["side"] == side and r["seed"] == seed
            and r.get("returncode") == 0]
    if not runs:
        return None
    r = runs[-1]
    stored = dict(i.split("=", 1) for i in r["arguments"].removeprefix("arguments: ").split())
    now = {k: str(v) for k, v in vars(parse_args(["--data-directory", "x", "--out-directory", "x"])).items()}
    skip = {"data_directory", "holdout_directory", "out_directory", "seed", "info_file", "model_preset",
            "model_format", "max_dendrites", "perforate", "conv_type", "conv_layers", "conv_width",
            "width_growth", "kernel_size", "linear_layers"}
    diff = {k for k in now if k not in skip and stored.get(k) != now[k]}
    if diff:
        print(f"[why] not reusing {ds} {label} seed {seed}: settings differ in {sorted(diff)}", flush=True)
        return None
    final = next(c for c in r["cycles"] if c["dendrites"] == r["dendrites"])
    return {
        "dataset": ds, "experiment": exp, "variant": label, "seed": seed, "flags": r["command"],
        "val_accuracy": final["best_val_accuracy"], "holdout_accuracy": final["holdout_accuracy"],
        "params": r["params"], "effective_params": r["params"], "dendrites": r["dendrites"],
        "epochs": r["epochs"], "train_seconds": r["train_seconds"], "wall_seconds": r["train_seconds"],
        "source": f"deploy_compare.json (train.py, {r['block'] if isinstance(r['block'], str) else 'see there'})",
        "cycles": r["cycles"], "machine": r["machine"],
    }


def key(r: dict) -> tuple:
    return r["dataset"], r["experiment"], r["variant"], r["seed"]


HEADERS = ["dataset", "exp", "variant", "params", "dendrites kept", "val %", "holdout %",
           "Δval grown cycle pp", "Δholdout grown cycle pp", "epochs", "train s", "n"]


def cycle_gain(r: dict, field: str) -> float | None:
    """Best-validation cycle with 1 dendrite minus the one with 0 (at each cycle's best-val epoch), in pp:
    what the first growth cycle (new dendrites + revert + LR restart) bought, kept or not."""
    by_k = {c["dendrites"]: c for c in r.get("cycles", [])}
    if 0 not in by_k or 1 not in by_k or by_k[1].get(field) is None:
        return None
    return 100 * (by_k[1][field] - by_k[0][field])


def table_rows(runs: list[dict]) -> list[list[str]]:
    """Mean ± sd over seeds per (dataset, experiment, variant), in run order."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(key(r)[:3], []).append(r)
    order = {"E1": 0, "E3": 1, "E2": 2}
    rows = []
    for (ds, exp, var), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "hello-world",
                                                                      order[kv[0][1]])):
        def pm(field: str, scale: float = 100.0, digits: int = 1, rs: list[dict] = rs) -> str:
            m, s = mean_sd([r[field] * scale for r in rs])
            return f"{m:.{digits}f} ± {s:.{digits}f}" if len(rs) > 1 else f"{m:.{digits}f}"

        def vals(field: str, rs: list[dict] = rs) -> str:
            v = [f"{r[field]:,}" for r in sorted(rs, key=lambda r: r["seed"])]
            return v[0] if len(set(v)) == 1 else " / ".join(v)

        params = vals("params")
        if any(r["effective_params"] != r["params"] for r in rs):
            params += f" (effective {vals('effective_params')})"
        gains = []
        for field in ("best_val_accuracy", "holdout_accuracy"):
            g = [x for x in (cycle_gain(r, field) for r in rs) if x is not None]
            gains.append("–" if not g else (f"{mean_sd(g)[0]:+.1f} ± {mean_sd(g)[1]:.1f}" if len(g) > 1
                                            else f"{g[0]:+.1f}"))
        rows.append([ds, exp, var, params, vals("dendrites"), pm("val_accuracy"), pm("holdout_accuracy"),
                     *gains, vals("epochs"), pm("train_seconds", 1.0, 0), str(len(rs))])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["hello-world", "commands12"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--experiments", nargs="+", default=["E1", "E2", "E3"])
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--rerun-reused", action="store_true", help="train E1 cc/traditional here too")
    p.add_argument("--report", action="store_true", help="no training: print the tables")
    p.add_argument("--update-results-md", action="store_true", help=f"refresh the generated block of {SECTION!r}")
    args = p.parse_args(argv)
    import json

    runs: list[dict] = json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.exists() else []
    if not args.report:
        done = {key(r) for r in runs}
        cache: dict[str, object] = {}
        for seed in args.seeds:  # seed-major: every variant gets seed 1 before any gets seed 2
            for ds in args.datasets:
                for exp, label, flags, pair in variants(ds):
                    if exp not in args.experiments or (ds, exp, label, seed) in done:
                        continue
                    rec = reused(ds, exp, label, seed, pair) if pair and not args.rerun_reused else None
                    if rec is None:
                        print(f"[why] {ds} {exp} {label} seed {seed} ...", flush=True)
                        if ds not in cache:
                            cache[ds] = load_dataset(ds, args.data_root)
                        rec = run_one(ds, exp, label, flags, seed, cache[ds])
                    runs = [r for r in runs if key(r) != key(rec)] + [rec]
                    write_json(RESULTS_JSON, {"runs": runs})
                    print(f"[why]   {ds} {exp} {label} s{seed}: val {100 * rec['val_accuracy']:.1f} holdout "
                          f"{100 * rec['holdout_accuracy']:.1f} params {rec['params']} k={rec['dendrites']} "
                          f"ep {rec['epochs']} {rec['train_seconds']:.0f}s ({rec['source'][:14]})", flush=True)
    print(text_table(HEADERS, table_rows(runs)))
    if args.update_results_md:
        update_md_section(RESULTS_MD, SECTION, markdown(runs), tool="bench/why_dendrites.py")
    return 0


def markdown(runs: list[dict]) -> str:
    """The generated part of the RESULTS.md section: one table per experiment, dates, load, sources."""
    rows = table_rows(runs)
    out = []
    for exp, title in (("E1", "E1 — rule & perforation (ei-default + ≤1 dendrite, all layers, vs wider net)"),
                       ("E3", "E3 — dendrites or schedule? (cc with T frozen at 0 = restart without capacity)"),
                       ("E2", "E2 — where the params go (classifier-only dendrites vs wider net)")):
        out += [f"**{title}**", "", markdown_table(HEADERS, [r for r in rows if r[1] == exp]), ""]
    ours = [r for r in runs if r["source"].startswith("why")]
    loads = [r["machine"]["loadavg_1_5_15"][0] for r in ours]
    dates = sorted({r["machine"]["date_utc"][:10] for r in ours})
    seeds = sorted({r["seed"] for r in runs})
    out += [
        (f"Measured {', '.join(dates)} (UTC), seeds {', '.join(map(str, seeds))}, on the shared 2-core Xeon "
         f"dev box (CPU only, 1 torch thread, runs one after another; 1-min load {min(loads):.1f}–{max(loads):.1f} at run "
         f"ends from other jobs, so train s is noisy), commit {ours[-1]['machine']['git_head']} + this script. "
         "val/holdout = torch accuracy of the best-validation checkpoint (holdout never used to choose). "
         "Accuracies mean ± sample sd over seeds; counts show each seed's value where they differ. "
         "Δ grown cycle = best-val epoch of the 1-dendrite cycle minus that of the 0-dendrite cycle. "
         "E1 cc / traditional and E3 traditional ei-default rows are reused from "
         "`bench/results/deploy_compare.json` (same block defaults, checked by the script; train s = its "
         "train_seconds, measured under other load)."), "",
        "```", (".venv/bin/python -m bench.why_dendrites                          # trains, merges into "
                "bench/results/why_dendrites.json"),
        ".venv/bin/python -m bench.why_dendrites --report --update-results-md  # regenerates this block", "```"]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
