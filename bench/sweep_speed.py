"""Sweep speed (issue 16): the same study the old way (one trial at a time, one worker, no pruning) and the
new way (two workers, batched same-architecture trials, pruning), on gsc12-real with --epochs 100.

    python -m bench.sweep_speed [--trials 48] [--data-root ../shared/data] [--update-results-md]

The new way runs first and samples the study (TPE). The old way then runs exactly those trials (their
values are enqueued into a fresh study), so both fronts come from the same points and seeds. Reported:
trials per hour (complete + stopped early + failed, per wall-clock hour, process start-up included), the
overlap of the two validation Pareto fronts, and how far the trials both ways completed differ (they should
not: a batched trial is its solo run to float rounding).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

from bench import common
from sweep.report import pareto_front, trial_rows
from sweep.space import ALL_KNOBS, DEFAULT_TRIAL

SECTION = "## Sweep speed: trials per hour on two cores (issue 16)"
SECTION_NEW = "## Sweep speed in the frontier space (issue 24)"
STUDY = "dendritic-sweep"


def sweep(data: Path, out: Path, trials: int, epochs: int, *flags: str) -> float:
    """One `python -m sweep` process (its own start-up counted); returns its wall seconds."""
    cmd = [sys.executable, "-m", "sweep", "--data-directory", str(data), "--holdout-directory",
           str(data / "holdout"), "--out-directory", str(out), "--trials", str(trials), "--epochs", str(epochs),
           "--seed", "3", *flags]
    t0 = time.monotonic()
    with (out.parent / f"{out.name}.log").open("w") as log:
        proc = subprocess.run(cmd, cwd=common.REPO, env=os.environ | common.thread_env(1), stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        raise SystemExit(f"ERR: {' '.join(cmd)} exited {proc.returncode}; see {out.parent / (out.name + '.log')}")
    return time.monotonic() - t0


def load(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}").get_trials()


def enqueue_same_trials(source: list[optuna.trial.FrozenTrial], out: Path) -> int:
    """A fresh study holding the source study's trained trials as queued trials (all values fixed)."""
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}",
                                directions=["maximize", "minimize"])
    trained = [t for t in source if "hparams" in t.user_attrs and t.state.name in ("COMPLETE", "PRUNED", "FAIL")
               and (t.state.name != "PRUNED" or "stopped_epoch" in t.user_attrs)]
    for t in trained:  # (the default trial has no searched values: it stays the default)
        study.enqueue_trial(dict(t.params), user_attrs={DEFAULT_TRIAL: True} if t.user_attrs.get(DEFAULT_TRIAL) else None)
    return len(trained)


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(1 for t in trials if t.state.name in ("COMPLETE", "FAIL")
               or (t.state.name == "PRUNED" and "stopped_epoch" in t.user_attrs))


def key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ALL_KNOBS) + (row["model_format"], bool(row["hparams"].get(DEFAULT_TRIAL)))


def new_way_only(args: argparse.Namespace, trials: list[optuna.trial.FrozenTrial], seconds: float) -> int:
    """--new-only: the sweep's trials per hour as it runs by default (its own section of RESULTS.md)."""
    rows = trial_rows(trials)
    families = {}
    for r in rows:
        name = "default" if r["hparams"].get(DEFAULT_TRIAL) else r.get("family") or r.get("conv_type") or "?"
        families[name] = families.get(name, 0) + 1
    result = {"trials": counted(trials), "seconds": round(seconds, 1),
              "trials_per_hour": round(3600 * counted(trials) / seconds),
              "stopped_early": sum(1 for t in trials if "stopped_epoch" in t.user_attrs),
              "families": families, "front": [[r["params"], r["val_accuracy"]] for r in pareto_front(rows)],
              "machine": common.machine_info(), "new_flags": args.new_flags or "(defaults)"}
    common.write_json(args.out / "sweep_speed_new.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}))
    if args.update_results_md:
        m = result["machine"]
        body = (f"`python -m bench.sweep_speed --trials {args.trials} --new-only` on {m['date_utc'][:10]} at "
                f"{m['git_head']}, {m['cpus']} cores, load {m['loadavg_1_5_15'][0]:.1f} at the end; gsc12-real, "
                f"--epochs {args.epochs}, seed 3, flags: {result['new_flags']}: **{result['trials']} trials in "
                f"{result['seconds']:.0f} s = {result['trials_per_hour']} trials/h** ({result['stopped_early']} "
                f"stopped early; trials by family: {result['families']}). Validation front (params: accuracy): "
                + ", ".join(f"{p:,}: {a:.3f}" for p, a in result["front"]) + ".\n")
        common.update_md_section(common.RESULTS_MD, SECTION_NEW, body, "bench.sweep_speed --new-only")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=48)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR / "sweep_speed")
    p.add_argument("--new-flags", default="", help="extra flags of the new way (default: the sweep's defaults)")
    p.add_argument("--new-only", action="store_true", help="time the new way only (no one-at-a-time baseline)")
    p.add_argument("--update-results-md", action="store_true")
    args = p.parse_args(argv)
    data = args.data_root / "gsc12-real"
    new, old = args.out / "new", args.out / "old"
    for d in (new, old):
        if d.exists():
            raise SystemExit(f"ERR: {d} exists; remove it to re-run")
    args.out.mkdir(parents=True, exist_ok=True)
    t_new = sweep(data, new, args.trials, args.epochs, *args.new_flags.split())
    new_trials = load(new)
    if args.new_only:
        return new_way_only(args, new_trials, t_new)
    n_queued = enqueue_same_trials(new_trials, old)
    t_old = sweep(data, old, n_queued, args.epochs, "--workers", "1", "--batch", "1", "--pruner", "none")
    old_trials = load(old)

    rows_new, rows_old = trial_rows(new_trials), trial_rows(old_trials)
    front_new, front_old = pareto_front(rows_new), pareto_front(rows_old)
    keys_new = {key(r) for r in front_new}
    shared = [r for r in front_old if key(r) in keys_new]
    done_new = {key(r): r for r in rows_new if r["state"] == "COMPLETE"}
    diffs = [abs(r["val_accuracy"] - done_new[key(r)]["val_accuracy"]) for r in rows_old
             if r["state"] == "COMPLETE" and key(r) in done_new]
    stopped = sum(1 for t in new_trials if "stopped_epoch" in t.user_attrs)
    result = {
        "trials": {"new": counted(new_trials), "old": counted(old_trials)},
        "seconds": {"new": round(t_new, 1), "old": round(t_old, 1)},
        "trials_per_hour": {"new": round(3600 * counted(new_trials) / t_new),
                            "old": round(3600 * counted(old_trials) / t_old)},
        "stopped_early_new": stopped,
        "front_old": [[r["params"], r["val_accuracy"], r["number"]] for r in front_old],
        "front_new": [[r["params"], r["val_accuracy"], r["number"]] for r in front_new],
        "front_overlap": f"{len(shared)}/{len(front_old)}",
        "max_val_diff_same_trial": max(diffs, default=None),
        "machine": common.machine_info(),
        "new_flags": args.new_flags or "(defaults)",
    }
    common.write_json(args.out / "sweep_speed.json", result)
    table = common.markdown_table(
        ["way", "trials", "wall s", "trials / hour", "Pareto front (params: val acc)"],
        [[w, result["trials"][w], result["seconds"][w], result["trials_per_hour"][w],
          ", ".join(f"{p:,}: {a:.3f}" for p, a, _ in result["front_" + w])] for w in ("old", "new")])
    print(table)
    print(json.dumps({k: result[k] for k in ("front_overlap", "max_val_diff_same_trial", "stopped_early_new")}))
    if args.update_results_md:
        m = result["machine"]
        cpu = next((line.split(":", 1)[1].strip() for line in m["lscpu_head"] if "Model name" in line), "CPU")
        body = (f"`python -m bench.sweep_speed --trials {args.trials}` on {m['date_utc'][:10]} at {m['git_head']}, "
                f"{cpu}, {m['cpus']} cores, no GPU; gsc12-real, "
                f"--epochs {args.epochs}, seed 3. Old way: `--workers 1 --batch 1 --pruner none` on the very "
                f"trials the new way sampled (enqueued). New way: {result['new_flags']}.\n\n{table}\n\n"
                f"Front overlap (old front's points also on the new front): {result['front_overlap']}; "
                f"{stopped} trials stopped early by the pruner; largest validation-accuracy difference of a trial "
                f"completed both ways: {result['max_val_diff_same_trial']}.\n")
        common.update_md_section(common.RESULTS_MD, SECTION, body, "bench.sweep_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
