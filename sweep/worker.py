"""One sweep worker: the trial objective and the loop that runs trials until the study has enough.

A trial is the block's own training: its values become block flags, `block.params.parse_args` and
`block.configs.run_config` turn them into one RunConfig exactly as for `train.py`, and `dendritic.trainer.fit` trains. The
sweep adds only the size budget (checked before training), a time cap, and bookkeeping.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import prune, space
from .budget import Budget, plan
from .study import MAX_RETRY, SweepError, Tally, first_line, quiet, tally

Log = Callable[[str], None]
WORKER = f"{socket.gethostname()}:{os.getpid()}"
MAX_FAILED_IN_A_ROW = 3  # a bug or a broken dataset, not bad luck: stop instead of burning the budget
MAX_PRUNED_IN_A_ROW = 200  # pruned trials cost milliseconds, but a budget nothing fits must not spin forever


@dataclass
class Runner:
    """Runs one trial per call; holds what every trial shares (data, base block flags, budget, limits)."""

    data: object  # block.data.EIData
    base_argv: list[str]  # block flags every trial starts from: data dirs, epochs, seed, user extras
    budget: Budget
    formats: tuple[str, ...]
    trial_seconds: float | None = None  # per-trial training time cap (TrainConfig.max_seconds)
    deadline: float | None = None  # time.monotonic() by which any trial must be over (Studio search)
    log_dir: Path | None = None  # per-trial training logs; None: discard them
    log: Log = print
    pruner: object = None  # an Optuna pruner (sweep/prune.py) or None: every trial runs to its early stop
    storage: object = None  # where the pruner's per-size curve studies live (the sweep's own storage)
    study_name: str = "sweep"
    failed_in_a_row: int = 0
    pruned_in_a_row: int = 0
    last_error: str = ""
    current: int | None = field(default=None, repr=False)  # number of the trial being run

    def block_args(self, hp: space.HParams, max_dendrites: int | None = None):
        """The block's argparse Namespace for a point of the space, as train.py would parse it."""
        from block.params import parse_args

        return parse_args(self.base_argv + space.to_argv(hp, max_dendrites))

    def configs(self, args):
        from block.configs import run_config

        return run_config(args, self.data.n_features, self.data.n_classes)

    def check_budget(self) -> None:
        """Fail at once when no architecture of the space fits the budget (else every trial is pruned)."""
        # A dendritic model is never smaller than its base, and gd and cc count alike: one format decides.
        fmt = "traditional" if "traditional" in self.formats else "gd"
        cheapest = {
            "model_format": fmt,
            "max_dendrites": 1,
            "init_multiplier": 0.01,
            "dendrite_activation": "tanh",
            "perforate": "linear",
            "improvement_threshold": 0.0,
        }  # one dendrite, linear layers only
        smallest = None
        for arch in space.arch_grid():
            size = plan(self.configs(self.block_args(arch | cheapest)), self.budget)
            if size.max_dendrites is not None and (fmt == "traditional" or size.max_dendrites >= 1):
                return
            smallest = min(smallest or size.base_params, size.base_params)
        raise SweepError(
            f"no model of the search space fits the budget of {self.budget} (formats "
            f"{', '.join(self.formats)}; the smallest base network has {smallest:,} params)"
        )

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        self.current = trial.number
        trial.set_user_attr("worker", WORKER)
        hp = space.suggest(trial, self.formats)
        trial.set_user_attr("hparams", hp)
        try:
            result = self._run(trial, hp)
        except optuna.TrialPruned as e:
            self.pruned_in_a_row += 1
            trial.set_user_attr("pruned", str(e))
            self.log(f"trial {trial.number}: pruned ({e}) [{space.describe(hp)}]")
            raise
        except Exception as e:
            self.failed_in_a_row += 1
            self.last_error = first_line(e)
            trial.set_user_attr("error", f"{type(e).__name__}: {self.last_error}")
            self.log(
                f"trial {trial.number}: FAILED {type(e).__name__}: {self.last_error} [{space.describe(hp)}]"
            )
            raise
        self.failed_in_a_row = self.pruned_in_a_row = 0
        return result

    def _run(self, trial: optuna.Trial, hp: space.HParams) -> tuple[float, float]:
        from dendritic.trainer import TimeLimitError, fit

        args = self.block_args(hp)
        cfg = self.configs(args)
        size = plan(cfg, self.budget)
        trial.set_user_attr("base_params", size.base_params)
        dendritic = hp["model_format"] != "traditional"
        if size.max_dendrites is None:
            raise optuna.TrialPruned(
                f"base network has {size.base_params:,} params, over the budget of {self.budget}"
            )
        if dendritic and size.max_dendrites == 0:
            raise optuna.TrialPruned(
                f"{size.base_params:,} base params leave no room for a dendrite "
                f"in the budget of {self.budget}"
            )
        if dendritic and size.max_dendrites < hp["max_dendrites"]:
            args = self.block_args(hp, size.max_dendrites)
            cfg = self.configs(args)
        trial.set_user_attr("max_dendrites_used", size.max_dendrites)
        trial.set_user_attr("bound_params", size.bound_params)
        trial.set_user_attr("flash_kb_bound", round(size.flash_kb, 2))
        trial.set_user_attr("argv", space.to_argv(hp, size.max_dendrites if dendritic else None))

        cfg = replace(cfg, train=replace(cfg.train, max_seconds=self._time_cap()))
        d = self.data
        curve = None
        if self.pruner is not None:
            curve = prune.Curve(self.storage, self.study_name, size.base_params, self.pruner)
        with self._trial_log(trial.number) as fit_log:
            try:
                result = fit(cfg, d.splits(), fit_log, on_epoch=prune.epoch_reporter(curve))
            except TimeLimitError as e:
                if curve is not None:
                    curve.close(TrialState.FAIL)
                raise optuna.TrialPruned(f"too slow for the trial time cap: {first_line(e)}") from None
            except optuna.TrialPruned:
                curve.close(TrialState.PRUNED)
                trial.set_user_attr("stopped_epoch", curve.epoch)  # trained, then stopped: counts as a trial
                trial.set_user_attr("val_accuracy_at_stop", curve.best)
                raise
            except BaseException:
                if curve is not None:
                    curve.close(TrialState.FAIL)
                raise
        model = result.model.eval()
        params, dendrites = model.deployed_params(), model.num_dendrites
        val_acc = self._accuracy(model, d.x_val, d.y_val)
        hold_acc = self._accuracy(model, d.x_holdout, d.y_holdout) if d.x_holdout is not None else None
        best = next((c for c in result.cycles if c["dendrites"] == dendrites), {})
        attrs = {
            "params": params,
            "dendrites": dendrites,
            "val_accuracy": val_acc,
            "holdout_accuracy": hold_acc,
            "epochs": result.epochs,
            "best_epoch": best.get("epoch"),
            "seconds": round(result.seconds, 2),
            "cycles": result.cycles,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if curve is not None:
            curve.close(TrialState.COMPLETE, val_acc)
        hold = f" holdout {hold_acc:.4f}" if hold_acc is not None else ""
        self.log(
            f"trial {trial.number}: val {val_acc:.4f}{hold}, {params:,} params ({dendrites} dendrites), "
            f"{result.epochs} epochs, {result.seconds:.1f}s [{space.describe(hp)}]"
        )
        return val_acc, float(params)

    def _time_cap(self) -> float | None:
        caps = [self.trial_seconds] if self.trial_seconds else []
        if self.deadline is not None:
            caps.append(self.deadline - time.monotonic())
        if caps and min(caps) <= 1:
            raise optuna.TrialPruned("no time left for another trial")
        return min(caps) if caps else None

    @staticmethod
    def _accuracy(model, x, y) -> float:
        """Accuracy of the returned (best-validation) model; on the holdout: reported, never selected on."""
        import torch

        from dendritic.trainer import evaluate

        device = next(model.parameters()).device
        return evaluate(model, torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))[1]

    @contextmanager
    def _trial_log(self, number: int):
        """The trainer's per-epoch lines go to log_dir/trial-NNNNN.log; the sweep log gets one per trial."""
        if self.log_dir is None:
            yield lambda line: None
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"trial-{number:05d}.log").open("w") as f:
            yield lambda line: print(line, file=f, flush=True)


def requeue(study: optuna.Study, number: int | None) -> None:
    """Re-queue an interrupted trial exactly like one whose worker died, so a resumed sweep re-runs it."""
    if number is None:
        return
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is not None and trial.state is TrialState.FAIL and "error" not in trial.user_attrs:
        with quiet():
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def work(
    study: optuna.Study,
    runner: Runner,
    target: int,
    poll: float,
    should_start: Callable[[], bool] = lambda: True,
    after_trial: Callable[[], None] = lambda: None,
) -> Tally:
    """Run trials until `target` trials count (complete or failed; pruned and retried ones do not).

    Queued retries always run. When the target is covered but other workers' trials are still running, wait:
    if one of them dies, its trial goes stale, is failed and re-queued here, and this worker runs it.
    `should_start` lets the Studio search stop launching trials when time runs short; `after_trial` refreshes
    the reports, so a long sweep can be watched while it runs.
    """
    while True:
        with quiet():
            optuna.storages.fail_stale_trials(study)
        count = tally(study.get_trials(deepcopy=False))
        if not count.waiting and count.counted + count.running >= target:
            if not count.running:
                return count
            time.sleep(poll)
            continue
        if not should_start():
            return count
        try:
            study.optimize(runner, n_trials=1, catch=(Exception,))
        except KeyboardInterrupt:
            requeue(study, runner.current)
            raise
        after_trial()
        if runner.failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            raise SweepError(
                f"{runner.failed_in_a_row} trials in a row failed; last error: {runner.last_error}"
            )
        if runner.pruned_in_a_row >= MAX_PRUNED_IN_A_ROW:
            raise SweepError(
                f"{runner.pruned_in_a_row} trials in a row were pruned (budget {runner.budget}); "
                f"raise the budget or narrow --formats"
            )
