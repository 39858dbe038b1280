"""The in-Studio search behind `train.py --search-trials N [--max-params P] [--max-flash-kb F ...]`.

Studio gives one job and one compute limit (maxTrainingTimeSeconds), so the search runs in memory within
the job, in this process, the sweep's fast way (trials of one architecture batched into one network,
hopeless trials stopped on their validation curves), over the `frontier` space (sweep/space.py), for the
highest validation accuracy within the budget (points under MIN_FILL of the parameter budget are skipped as
too small to win). It may use
SEARCH_SHARE of the limit; the rest is for the final training and export of the chosen configuration,
which train.py then does as usual. `--search-trials auto` runs as many trials as fit.

A search must never make the model worse than not searching:
1. The default is in the race: trial 0 trains the user's own settings sized to the budget (what train.py
   trains without a search), and the frontier's picks at nearby budgets are queued next (`starting_points`).
2. The pick is noise-aware: a single validation score on a few hundred rows is noise of 1-2 points, and the
   top of many trials is biased up by the selection itself. So the top CONFIRM_TOP trials that beat the
   default on their first seed are trained again on CONFIRM_SEEDS fresh seeds, and so is the default
   (the search stops starting batches when the rest of its time is what that needs: `confirm_seconds`). A candidate scores the mean of its fresh seeds (its
   first score chose it, so it is left out); the default the mean of all its seeds. The best candidate ships
   only if its mean is above the default's; otherwise the default ships, and the log says so.
Trials use the user's block arguments (epochs, batch size, seed, ...) with the searched values on top, so
the final training repeats the chosen trial.
"""

from __future__ import annotations

import time
from argparse import Namespace
from dataclasses import replace

SEARCH_SHARE = 0.75  # of maxTrainingTimeSeconds; the rest is for the final training and the export
CONFIRM_TOP = 3  # candidates confirmed (those that beat the default's first score)
CONFIRM_SEEDS = 2  # fresh seeds per candidate and for the default
# Searched points under this share of the parameter budget are skipped: the frontier's smaller nets lose on
# validation at every budget of gsc12-real and commands12 (bench/RESULTS.md "Frontier rerun"), so they
# cannot beat the default, and a search has little time. 0.3 keeps the 1k pick of EI's 3.2k default size.
MIN_FILL = 0.3
AS_MANY_AS_FIT = 10**9  # the trial target of --search-trials auto: the time limit ends the search
FRONTIER_BUDGETS = (1_000, 2_000, 4_000, 8_000, 16_000)  # the frontier's grid (bench/RESULTS.md)


def namespace_argv(args: Namespace) -> list[str]:
    """Block flags that reproduce a parsed Namespace, so trials start from the user's own settings."""
    from block.params import dest, load_parameters

    argv = ["--data-directory", args.data_directory, "--out-directory", args.out_directory]
    for name in ("info_file", "holdout_directory"):
        if getattr(args, name, None):
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for item in load_parameters():
        value = getattr(args, dest(item["param"]))
        argv += [f"--{item['param']}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def budget_of(args: Namespace):
    """The search's limits: the resolved parameter budget and the device limits."""
    from block.sizing import Budget

    return Budget.from_kb(int(args.max_params), args.max_flash_kb, args.max_ram_kb, args.max_macs)


def starting_points(args: Namespace, data, budget) -> list[dict]:
    """Frontier-space points queued right after the default: the `auto` preset (the frontier's pick per
    budget) sized to the two grid budgets below this one, the default's shape with the other choice of
    multi-kernel branches, and the conv+FC `conv3` at this budget. Each with the user's recipe (nearest
    listed values). Sizing failures (a budget too small for a shape) just leave that point out."""
    from block.configs import run_config
    from block.sizing import Budget, deployed, size_to_budget
    from kws.errors import ConfigError

    from .space import frontier_point

    def sized(preset: str, limits: Budget):
        # max_params = this point's budget, so that budget-dependent defaults (`--dropout auto`) are auto's there
        at = {"model_preset": preset, "max_params": limits.params or args.max_params}
        cfg = run_config(Namespace(**{**vars(args), **at}), data.n_features, data.n_classes)
        return size_to_budget(cfg, limits)[0] if limits else cfg

    try:
        default = sized("auto", budget)
    except ConfigError:
        return []
    top = budget.params or deployed(default, 0)
    nets = []
    for b in [b for b in FRONTIER_BUDGETS if b < top][-2:]:
        try:
            nets.append(sized("auto", replace(budget, params=b)).net)
        except ConfigError:
            pass
    if default.net.kernel == 9:
        branches = () if default.net.branch_kernels else (3, 5, 7, 9)
        nets.append(replace(default.net, branch_kernels=branches))
    try:
        nets.append(sized("conv3", budget).net)
    except ConfigError:
        pass
    points = [frontier_point(net, default.train, args.model_format) for net in nets]
    for p in points:
        if p is not None and args.model_format != "traditional":  # the first listed dendrite form
            p |= {"max_dendrites": 1, "ds_dendrites" if p["family"] == "dstcn" else "fc_dendrites":
                  "pointwise-linear" if p["family"] == "dstcn" else "conv-relu"}
    return [p for p in points if p is not None]


def width_ranges(args: Namespace, data, budget, min_params: int) -> dict[str, tuple[int, int]]:
    """The frontier space's width knobs narrowed to the widths whose nets fall between `min_params` and the
    parameter budget at some depth of the space: under EI's 1,347-param budget at 3 classes, 4-64 channels
    left TPE drawing so many nets over the budget or under the floor that 200 in a row were skipped."""
    from block.configs import run_config
    from block.params import parse_args
    from block.sizing import Budget, widest

    from .space import DS_DEPTHS, FC_DEPTHS, FRONTIER_KNOBS, to_argv

    if not budget.params:
        return {}
    knobs = {k.name: k.int_range for k in FRONTIER_KNOBS if k.int_range}
    recipe = {"model_format": "traditional", "learning_rate": 0.005, "dropout": 0.0, "input_noise": 0.3,
              "label_smoothing": 0.1, "time_shift": 4, "masks": 1, "patience": 30}
    shapes = {"ds_width": [{"family": "dstcn", "ds_blocks": b, "ds_width": 4, "ds_kernel": 9, "ds_multikernel": False}
                           for b in DS_DEPTHS],
              "fc_width": [{"family": "convfc", "fc_conv_layers": n, "fc_width": 4} for n in FC_DEPTHS]}
    ranges = {}
    for name, points in shapes.items():
        lo, hi = knobs[name]
        runs = [run_config(parse_args(namespace_argv(args) + to_argv(p | recipe)), data.n_features, data.n_classes)
                for p in points]
        tops = [widest(r, 0, Budget(params=budget.params)) for r in runs]
        floors = [widest(r, 0, Budget(params=max(min_params, 1))) for r in runs]
        top = max((t for t in tops if t), default=None)
        if top is None:
            continue
        ranges[name] = (max(lo, min((f or lo) for f in floors)), max(min(hi, top), lo))
    return ranges


def enqueue_start(study, args: Namespace, data, budget, target: int) -> None:
    """Queue the default trial (the user's settings, sized to the budget) and the frontier's starting points,
    no more than `target` in all (queued trials always run, even past the target)."""
    from .space import DEFAULT_TRIAL

    study.enqueue_trial({}, user_attrs={DEFAULT_TRIAL: True})
    for point in starting_points(args, data, budget)[:max(0, target - 1)]:
        study.enqueue_trial(point, skip_if_exists=True)


def best_args(args: Namespace, data, log) -> tuple[Namespace, object]:
    """Search `args.search_trials` trials, confirm the best on fresh seeds, and return the block arguments
    of the chosen model (the user's own when the default wins) and the data with maxTrainingTimeSeconds
    lowered by the time the search took."""
    import optuna

    from block.params import parse_args

    from .prune import DEFAULT as DEFAULT_PRUNER
    from .prune import make_pruner
    from .report import trial_rows
    from .space import DEFAULT_SPACE
    from .study import SweepError, SweepSampler, tally
    from .worker import BATCH, Runner, work

    t0 = time.monotonic()
    limit = data.max_training_seconds
    search_end = t0 + SEARCH_SHARE * limit if limit else None
    base = namespace_argv(args)
    budget = budget_of(args)
    formats = (args.model_format,)  # the format the user chose; its own default is the one to beat
    storage = optuna.storages.InMemoryStorage()
    target = AS_MANY_AS_FIT if args.search_trials == "auto" else args.search_trials
    if target == AS_MANY_AS_FIT and not limit:
        raise SweepError("--search-trials auto needs a time limit (maxTrainingTimeSeconds in the job's info file)")
    min_params = int(MIN_FILL * budget.params)
    runner = Runner(data, base, budget, formats, deadline=search_end, log=log, pruner=make_pruner(DEFAULT_PRUNER),
                    storage=storage, study_name="search", batch=BATCH, space=DEFAULT_SPACE, measure=True,
                    min_params=min_params, ranges=width_ranges(args, data, budget, min_params))
    if budget:
        runner.check_budget()
    # one objective, validation accuracy: the budget bounds the size, and a second objective (fewer params,
    # as in the sweep) drew most trials to tiny nets that cannot win
    study = optuna.create_study(storage=storage, direction="maximize", sampler=SweepSampler("tpe", args.seed, formats))
    enqueue_start(study, args, data, budget, target)
    wanted = "as many trials as fit" if target == AS_MANY_AS_FIT else f"up to {target} trials"
    log(f"architecture search: {wanted} in the {DEFAULT_SPACE} space, format {args.model_format}, budget {budget}"
        + (f", {SEARCH_SHARE * limit:.0f}s of the {limit:.0f}s limit (keeping the time to confirm the best on "
           f"{CONFIRM_SEEDS} fresh seeds)" if limit else "")
        + "; trial 0 is the default (your settings)")

    def time_for_another() -> bool:
        """A batch takes as long as its slowest trial: start one only if the slowest so far still fits
        before the search's end, less the time that confirming the current rivals of the default needs."""
        seconds = [t.user_attrs["seconds"] for t in study.trials if "seconds" in t.user_attrs]
        if search_end is None:
            return True
        default, rivals = contenders(trial_rows(study.get_trials(deepcopy=False)))
        reserve = confirm_seconds(default, rivals) if rivals else 0.0
        enough = time.monotonic() + max(seconds, default=0.0) + reserve <= search_end
        if not enough:
            log("architecture search: stopping, the next batch would not fit in the time left for the search")
        return enough

    try:
        count = work(study, runner, target, poll=1.0, should_start=time_for_another)
    except SweepError as e:  # e.g. too many skipped points in a row: the search ends, the job goes on
        count = tally(study.get_trials(deepcopy=False))
        log(f"architecture search: stopping early: {e}")
    pick = confirm(study, runner, args, search_end, log)
    if pick is None:
        raise SweepError(f"architecture search: no trial finished ({count}); raise the time limit or the budget")
    spent = time.monotonic() - t0
    log(f"architecture search: {count} in {spent:.0f}s")
    log(pick["summary"])
    chosen = args if pick["default"] else parse_args(base + pick["argv"])
    if not pick["default"]:
        chosen.sized_by_search = True  # block/pipeline.py: the pick is within the budget as it stands
    if limit:
        data = replace(data, info={**data.info, "maxTrainingTimeSeconds": max(1.0, limit - spent)})
    return chosen, data


def confirm(study, runner, args: Namespace, deadline: float | None, log) -> dict | None:
    """The noise-aware pick (module docstring): {"default": bool, "argv", "summary"}, or None when no trial
    completed. Candidates and fresh seeds are trained together (kws.trainer.fit_many), as many as the time
    left holds (`confirm_seconds`)."""
    from .report import trial_rows
    from .space import describe

    rows = [r for r in trial_rows(study.get_trials(deepcopy=False)) if r["state"] == "COMPLETE"]
    if not rows:
        return None
    default, rivals = contenders(rows)
    if default is None:  # the default did not finish: nothing is known to beat it, so it ships
        return {"default": True, "argv": [], "summary": (
            "search: kept the default: its trial did not finish within the search's time, so no other trial can "
            "be shown to beat it; raise the time limit for a search")}
    if not rivals:
        return {"default": True, "argv": [], "summary": (
            f"search: kept the default [{describe(default['hparams'])}]: no other trial of {len(rows)} scored above "
            f"its validation {default['val_accuracy']:.4f}; {_costs(default)}")}
    while rivals and deadline is not None and time.monotonic() + confirm_seconds(default, rivals) > deadline:
        rivals = rivals[:-1]
    if not rivals:
        return {"default": True, "argv": [], "summary": (
            f"search: kept the default [{describe(default['hparams'])}]: no time left to confirm the trials that "
            f"scored above it on one seed (validation {default['val_accuracy']:.4f}); {_costs(default)}")}
    fresh = runner.retrain([default, *rivals], [args.seed + i + 1 for i in range(CONFIRM_SEEDS)], deadline)
    scores = {n: ([default["val_accuracy"]] if n == default["number"] else []) + fresh[n] for n in fresh}
    mean = {n: sum(v) / len(v) if v else float("-inf") for n, v in scores.items()}
    best = max(rivals, key=lambda r: (mean[r["number"]], -r["params"]))
    d, b = mean[default["number"]], mean[best["number"]]
    seeds = f"{len(scores[best['number']])} fresh seeds"
    if b > d:
        return {"default": False, "argv": best["argv_list"], "summary": (
            f"search: picked trial {best['number']} [{describe(best['hparams'])}]: mean validation {b:.4f} over "
            f"{seeds}, {100 * (b - d):+.1f} points over the default's {d:.4f} over {len(scores[default['number']])} "
            f"seeds; {_costs(best)} (default: {_costs(default)})")}
    return {"default": True, "argv": [], "summary": (
        f"search: kept the default [{describe(default['hparams'])}]: mean validation {d:.4f} over "
        f"{len(scores[default['number']])} seeds; the best of {len(rivals)} confirmed rivals, trial {best['number']}, "
        f"scored {b:.4f} over {seeds} ({100 * (b - d):+.1f} points); {_costs(default)}")}


def contenders(rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """(the default trial's row, the up to CONFIRM_TOP complete trials that scored above it on their seed)."""
    from .space import DEFAULT_TRIAL

    done = [r for r in rows if r["state"] == "COMPLETE"]
    default = next((r for r in done if r["hparams"].get(DEFAULT_TRIAL)), None)
    if default is None:
        return None, []
    rivals = sorted((r for r in done if r is not default and r["val_accuracy"] > default["val_accuracy"]),
                    key=lambda r: (-r["val_accuracy"], r["params"], r["number"]))
    return default, rivals[:CONFIRM_TOP]


def confirm_seconds(default: dict, rivals: list[dict]) -> float:
    """Seconds to train the default and the rivals on CONFIRM_SEEDS more seeds: each trial's share of its
    batch's wall time (its own seconds span the whole batch it trained in), once per seed."""
    return CONFIRM_SEEDS * sum(r["seconds"] / (r.get("batch") or 1) for r in [default, *rivals])


def _costs(row: dict) -> str:
    """'3,112 params, 13.2 KB flash, 7.8 KB RAM, 81k MACs' of a trial row (what it measured)."""
    device = row.get("device") or {}
    text = f"{row['params']:,} params"
    if device:
        text += (f", {device['flash_bytes'] / 1024:.1f} KB flash, {device['arena_bytes'] / 1024:.1f} KB RAM, "
                 f"{device['macs'] / 1000:.0f}k MACs")
    return text
