"""The in-Studio search behind `train.py --search-trials N [--max-params P]`.

Studio gives one job and one compute limit (maxTrainingTimeSeconds), so the search runs in memory within
the job, in this process, the sweep's fast way (trials of one architecture batched into one network, hopeless
trials pruned on their validation curves): it may use SEARCH_SHARE of the limit, stops launching a batch
when the next one would not fit, and leaves the rest to the final training and export of the chosen
configuration, which train.py then does as usual. `--search-trials auto` runs as many trials as fit.
Trials use the user's block arguments (epochs, batch size, seed, ...) with the searched values on top, so
the final training repeats the best trial and ends with the model (and size) the search saw.
"""

from __future__ import annotations

import time
from argparse import Namespace
from dataclasses import replace

SEARCH_SHARE = 0.75  # of maxTrainingTimeSeconds; the rest is for the final training and the export
AS_MANY_AS_FIT = 10**9  # the trial target of --search-trials auto: the time limit ends the search


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


def best_args(args: Namespace, data, log) -> tuple[Namespace, object]:
    """Search `args.search_trials` trials, then return the block arguments of the best model within
    `args.max_params` and the data with maxTrainingTimeSeconds lowered by the time the search took."""
    import optuna

    from block.params import parse_args

    from .budget import Budget
    from .cli import BATCH
    from .prune import DEFAULT as DEFAULT_PRUNER
    from .prune import make_pruner
    from .report import pick_best, trial_rows
    from .space import FORMATS
    from .study import DIRECTIONS, SweepError, SweepSampler
    from .worker import Runner, work

    t0 = time.monotonic()
    limit = data.max_training_seconds
    deadline = t0 + SEARCH_SHARE * limit if limit else None
    base = namespace_argv(args)
    budget = Budget(args.max_params)
    storage = optuna.storages.InMemoryStorage()
    target = AS_MANY_AS_FIT if args.search_trials == "auto" else args.search_trials
    if target == AS_MANY_AS_FIT and not limit:
        raise SweepError("--search-trials auto needs a time limit (maxTrainingTimeSeconds in the job's info file)")
    runner = Runner(data, base, budget, FORMATS, deadline=deadline, log=log, pruner=make_pruner(DEFAULT_PRUNER),
                    storage=storage, study_name="search", batch=BATCH)
    if budget:
        runner.check_budget()
    study = optuna.create_study(storage=storage, directions=list(DIRECTIONS), sampler=SweepSampler("tpe", args.seed))
    wanted = "as many trials as fit" if target == AS_MANY_AS_FIT else f"up to {target} trials"
    log(
        f"architecture search: {wanted}, formats {', '.join(FORMATS)}, "
        f"budget {budget}" + (f", {SEARCH_SHARE * limit:.0f}s of the {limit:.0f}s limit" if limit else "")
    )

    def time_for_another() -> bool:
        """A batch takes as long as its slowest trial: start one only if the slowest so far still fits."""
        seconds = [t.user_attrs["seconds"] for t in study.trials if "seconds" in t.user_attrs]
        enough = deadline is None or time.monotonic() + max(seconds, default=0.0) <= deadline
        if not enough:
            log("architecture search: stopping, the next batch would not fit in the time left for the search")
        return enough

    count = work(study, runner, target, poll=1.0, should_start=time_for_another)
    best = pick_best(trial_rows(study.trials), budget.max_params)
    if best is None:
        raise SweepError(
            f"architecture search: no trial finished ({count}); raise the time limit or the budget"
        )
    spent = time.monotonic() - t0
    log(
        f"architecture search: {count} in {spent:.0f}s; best trial {best['number']}: validation accuracy "
        f"{best['val_accuracy']:.4f}, {best['params']:,} params, {best['dendrites']} dendrites; training it: "
        f"{best['argv']}"
    )
    chosen = parse_args(base + best["argv"].split())
    if limit:
        data = replace(data, info={**data.info, "maxTrainingTimeSeconds": max(1.0, limit - spent)})
    return chosen, data
