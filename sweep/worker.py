"""One sweep worker: the trial objective and the loop that runs trials until the study has enough.

A trial is the block's own training: its values become block flags, `block.params.parse_args` and
`block.configs.run_config` turn them into one RunConfig exactly as for `train.py`, and `kws.trainer.fit` trains. The
sweep adds only the size budget (checked before training), a time cap, and bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import prune, space
from .budget import Budget, plan
from .study import (
    EXPLORE,
    MAX_RETRY,
    WORKER,
    Heartbeat,
    SweepError,
    Tally,
    fail_stale_trials,
    first_line,
    quiet,
    tally,
)

Log = Callable[[str], None]
BATCH = 8  # trials per batched network: bench/sweep_speed.py
DRAWS = 3  # draws of a batch-mate until it differs from the batch's other points
MAX_FAILED_IN_A_ROW = 3  # a bug or a broken dataset, not bad luck: stop instead of burning the budget
MAX_SKIPPED_IN_A_ROW = 200  # skipped trials cost milliseconds, but a budget nothing fits must not spin forever


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
    skipped_in_a_row: int = 0
    last_error: str = ""
    batch: int = 1  # trials asked and trained together (one architecture): kws.trainer.fit_many
    space: str = space.DEFAULT_SPACE
    measure: bool = False  # measure every trial's flash, RAM and MACs (also without device limits)
    min_params: int = 0  # skip searched points smaller than this (Studio: too small to beat the default)
    ranges: dict | None = None  # integer knobs' ranges narrowed to the budget (sweep/studio.py width_ranges)
    running: list = field(default_factory=list, repr=False)  # trials asked and not yet told

    def block_args(self, hp: space.HParams, max_dendrites: int | None = None):
        """The block's argparse Namespace for a point of the space, as train.py would parse it (the default
        trial: the base flags alone, the user's own settings)."""
        from block.params import parse_args

        extra = [] if hp.get(space.DEFAULT_TRIAL) else space.to_argv(hp, max_dendrites)
        return parse_args(self.base_argv + extra)

    def configs(self, args):
        from block.configs import run_config

        return run_config(args, self.data.n_features, self.data.n_classes)

    def sized_default(self, cfg, args):
        """The default trial's RunConfig: sized to the budget exactly as train.py sizes it without a search."""
        if not self.budget:
            return cfg
        from block.sizing import size_to_budget

        return size_to_budget(cfg, self.budget, reshape=args.model_preset != "custom")[0]

    def retrain(self, rows: list[dict], seeds: list[int], deadline: float | None) -> dict[int, list[float]]:
        """Train completed trials (report rows) again on other seeds, all together (kws.trainer.fit_many), and
        return {trial number: validation accuracies}; a run that fails or runs out of time adds nothing."""
        from block.params import parse_args
        from kws.trainer import FitResult, fit_many

        jobs = []
        for row in rows:
            default = bool(row["hparams"].get(space.DEFAULT_TRIAL))
            for seed in seeds:  # the trial's own flags (its argv: [] for the default), a new seed
                args = parse_args(self.base_argv + list(row["argv_list"]) + ["--seed", str(seed)])
                cfg = self.configs(args)
                jobs.append((row["number"], seed, self.sized_default(cfg, args) if default else cfg))
        cap = None if deadline is None else max(1.0, deadline - time.monotonic())
        # (not fail_fast: the epoch cap is far above where these runs stop early, so an epoch-1 estimate over
        # all epochs would wrongly end them; they stop at the cap at worst)
        results = fit_many([replace(cfg, train=replace(cfg.train, max_seconds=cap, fail_fast=False)) for *_, cfg in jobs],
                           self.data.splits(), [lambda line: None] * len(jobs))
        scores: dict[int, list[float]] = {row["number"]: [] for row in rows}
        for (number, seed, _), result in zip(jobs, results):
            if isinstance(result, FitResult):
                scores[number].append(self._accuracy(result.model.eval(), self.data.x_val, self.data.y_val))
                self.log(f"confirm: trial {number} seed {seed}: val {scores[number][-1]:.4f}, "
                         f"{result.epochs} epochs, {result.seconds:.1f}s")
            else:
                self.log(f"confirm: trial {number} seed {seed}: {type(result).__name__}: {first_line(result)}")
        return scores

    def check_budget(self) -> None:
        """Fail at once when no architecture of the space fits the budget (else every trial is skipped)."""
        # A dendritic model is never smaller than its base, and gd and cc count alike: one format decides.
        fmt = "traditional" if "traditional" in self.formats else "gd"
        cheapest = {
            "model_format": fmt,
            "max_dendrites": 1,
            "init_multiplier": 0.01,
            "dendrite_activation": "tanh",
            "perforate": "linear",
            "improvement_threshold": 0.0,
            "ds_dendrites": "classifier-relu",  # (the frontier space's forms: one dendrite on the classifier)
            "fc_dendrites": "linear-relu",
        }  # one dendrite, linear layers only
        smallest = None
        for arch in space.arch_grid(self.space):
            size = plan(self.configs(self.block_args(arch | cheapest)), self.budget)
            if size.max_dendrites is not None and (fmt == "traditional" or size.max_dendrites >= 1):
                return
            smallest = min(smallest or size.base_params, size.base_params)
        raise SweepError(
            f"no model of the search space fits the budget of {self.budget} (formats "
            f"{', '.join(self.formats)}; the smallest base network has {smallest:,} params)"
        )

    def run_batch(self, study: optuna.Study, n: int, room: Callable[[], bool] = lambda: True) -> None:
        """Ask up to n trials of one architecture (the first sampled, the rest sharing its architecture
        knobs), train them side by side (kws.trainer.fit_many: one batched network while their
        shapes agree), and tell the study each result. Heartbeats keep every trial alive until told.
        `room()` is asked before each extra trial, so workers that start batches at the same moment do not
        together overshoot the study's target."""
        with ExitStack() as beats:

            def ask(fixed: dict | None = None, explore: bool = False) -> tuple[optuna.Trial, list[tuple]]:
                with quiet():
                    trial = study.ask() if fixed is None else ask_fixed(study, fixed, explore)  # ask: a retry first
                self.running.append(trial)
                beats.enter_context(Heartbeat(study._storage, trial._trial_id))
                return trial, self._prepare(trial)

            first, ready = ask()
            arch = {k: first.params[k] for k in space.ARCH_KNOBS[self.space] if k in first.params}
            # n - 1 more of the same architecture (Optuna samples their other knobs as usual); none when
            # the first is over the size budget (so would they be) or is the default (no architecture knobs)
            for _ in range(n - 1 if ready and arch else 0):
                for attempt in range(DRAWS):  # a point already in the batch is skipped and drawn again at random
                    if not room():
                        break
                    fresh = self._unique(ask(arch, explore=attempt > 0)[1], ready)
                    if fresh:
                        ready += fresh
                        break
            for trial, hp, cfg, curve, result in self._train(ready):
                trial.set_user_attr("batch", len(ready))  # trained beside batch - 1 others (its seconds are shared)
                if (self.measure or self.budget.device) and not isinstance(result, BaseException):
                    self._measure(trial, cfg, result.model.num_dendrites)
                self._tell(study, trial, hp, curve, result)

    def _unique(self, fresh: list[tuple], ready: list[tuple]) -> list[tuple]:
        """`fresh` (a prepared trial, or []) unless the sampler drew a point already in this batch: that one is
        skipped (not trained, not counted), so a batch never trains the same point twice."""
        for trial, hp, _cfg, curve in fresh:
            twin = next((t for t, other, *_ in ready if other == hp), None)
            if twin is not None:
                if curve is not None:
                    curve.close(TrialState.FAIL)
                self._tell(trial.study, trial, hp, None, optuna.TrialPruned(f"duplicate of trial {twin.number}"))
                return []
        return fresh

    @staticmethod
    def _measure(trial: optuna.Trial, cfg, dendrites: int) -> None:
        """The trained model's flash, RAM and MACs: its shape's measure (block.sizing.device_costs, cached)."""
        from block.sizing import device_costs

        try:
            trial.set_user_attr("device", device_costs(cfg, dendrites))
        except Exception as e:  # noqa: BLE001 - a report only: the trial's result stands without it
            trial.set_user_attr("device_error", first_line(e))

    def _prepare(self, trial: optuna.Trial) -> list[tuple]:
        """[(trial, hp, cfg, curve)] for a trial ready to train; [] when it was skipped (over the size budget)."""
        trial.set_user_attr("worker", WORKER)
        if trial.user_attrs.get(space.DEFAULT_TRIAL):
            hp = {space.DEFAULT_TRIAL: True, "model_format": self.block_args({space.DEFAULT_TRIAL: True}).model_format}
        else:
            hp = space.suggest(trial, self.formats, self.space, self.ranges)
        trial.set_user_attr("hparams", hp)
        try:
            cfg, base_params = self._config(trial, hp)
            curve = None
            if self.pruner is not None:
                curve = prune.Curve(self.storage, self.study_name, base_params, self.pruner)
        except optuna.TrialPruned as e:
            self._tell(trial.study, trial, hp, None, e)
            return []
        except Exception as e:  # noqa: BLE001 - a bad point of the space: this trial fails, the sweep goes on
            self._tell(trial.study, trial, hp, None, e)
            return []
        return [(trial, hp, cfg, curve)]

    def _train(self, ready: list[tuple]):
        """Train the ready trials together; yields (trial, hp, cfg, curve, FitResult or exception)."""
        from kws.trainer import fit_many

        if not ready:
            return
        try:
            cap = self._time_cap(len(ready))
        except optuna.TrialPruned as e:  # the deadline passed while the batch was being asked
            for trial, hp, cfg, curve in ready:
                if curve is not None:
                    curve.close(TrialState.FAIL)
                yield trial, hp, cfg, None, e
            return
        with ExitStack() as stack:
            logs = [stack.enter_context(self._trial_log(t.number)) for t, *_ in ready]
            results = fit_many(
                [replace(cfg, train=replace(cfg.train, max_seconds=cap)) for _, _, cfg, _ in ready],
                self.data.splits(),
                logs,
                [prune.epoch_reporter(curve) for *_, curve in ready],
            )
        for (trial, hp, cfg, curve), result in zip(ready, results):
            yield trial, hp, cfg, curve, result

    def _config(self, trial: optuna.Trial, hp: space.HParams):
        """The trial's RunConfig within the size budget, and its base network's params; TrialPruned when
        the budget has no room for it."""
        args = self.block_args(hp)
        cfg = self.configs(args)
        if hp.get(space.DEFAULT_TRIAL):
            cfg = self.sized_default(cfg, args)
        size = plan(cfg, self.budget)
        trial.set_user_attr("base_params", size.base_params)
        dendritic = hp["model_format"] != "traditional"
        if size.max_dendrites is None:
            raise optuna.TrialPruned(f"base network over the budget of {self.budget} ({size.over})")
        if size.bound_params < self.min_params and not hp.get(space.DEFAULT_TRIAL):
            raise optuna.TrialPruned(f"{size.bound_params:,} params, under {self.min_params:,}: too small to beat the "
                                     f"default")
        if dendritic and size.max_dendrites == 0:
            raise optuna.TrialPruned(
                f"{size.base_params:,} base params leave no room for a dendrite "
                f"in the budget of {self.budget}"
            )
        if dendritic and "max_dendrites" in hp and size.max_dendrites < hp["max_dendrites"]:
            args = self.block_args(hp, size.max_dendrites)
            cfg = self.configs(args)
        trial.set_user_attr("max_dendrites_used", size.max_dendrites)
        trial.set_user_attr("bound_params", size.bound_params)
        if size.device is not None:
            trial.set_user_attr("device_bound", size.device)
        argv = [] if hp.get(space.DEFAULT_TRIAL) else space.to_argv(hp, size.max_dendrites if dendritic else None)
        trial.set_user_attr("argv", argv)
        self._time_cap(1)  # no time left at all: skipped here, before its curve study is opened
        return cfg, size.base_params

    def _tell(self, study, trial, hp, curve, result) -> None:
        """Record one trial's outcome: complete (values), stopped early (its curve), skipped (size budget or
        time cap: never trained), failed. A trial that is already finished (a heartbeat check failed it
        while it trained, on a machine too busy to beat in time) keeps its state; the worker moves on."""
        try:
            self._settle(study, trial, hp, curve, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            state = study._storage.get_trial(trial._trial_id).state.name.lower()
            self.log(f"trial {trial.number}: already {state} elsewhere (its heartbeat was late); this result "
                     f"is dropped and the sweep goes on [{space.describe(hp)}]")
        finally:
            self.running = [t for t in self.running if t.number != trial.number]

    def _settle(self, study, trial, hp, curve, result) -> None:
        from kws.trainer import FitResult, TimeLimitError

        label = space.describe(hp)
        if isinstance(result, TimeLimitError):
            result = optuna.TrialPruned(f"too slow for the trial time cap: {first_line(result)}")
            if curve is not None:
                curve.close(TrialState.FAIL)
                curve = None
        if isinstance(result, optuna.TrialPruned):
            if curve is not None:  # stopped early on its validation curve: it trained, so it counts
                curve.close(TrialState.PRUNED)
                trial.set_user_attr("stopped_epoch", curve.epoch)
                trial.set_user_attr("val_accuracy_at_stop", curve.best)
            else:  # skipped: over the size budget or out of time, never trained, not counted
                self.skipped_in_a_row += 1
            word = "stopped early" if curve is not None else "skipped"
            trial.set_user_attr("reason", str(result))
            self.log(f"trial {trial.number}: {word} ({result}) [{label}]")
            study.tell(trial, state=TrialState.PRUNED)
        elif isinstance(result, FitResult):
            values = self._record(trial, hp, result)
            if curve is not None:
                curve.close(TrialState.COMPLETE, values[0])
            self.failed_in_a_row = self.skipped_in_a_row = 0
            study.tell(trial, values if len(study.directions) > 1 else values[0])  # (Studio: accuracy only)
        else:
            if curve is not None:
                curve.close(TrialState.FAIL)
            self.failed_in_a_row += 1
            self.last_error = first_line(result)
            trial.set_user_attr("error", f"{type(result).__name__}: {self.last_error}")
            self.log(f"trial {trial.number}: FAILED {type(result).__name__}: {self.last_error} [{label}]")
            study.tell(trial, state=TrialState.FAIL)

    def _record(self, trial: optuna.Trial, hp: space.HParams, result) -> tuple[float, float]:
        d = self.data
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
        hold = f" holdout {hold_acc:.4f}" if hold_acc is not None else ""
        device = trial.user_attrs.get("device")
        costs = (f", {device['flash_bytes']:,} B flash, {device['arena_bytes']:,} B RAM, {device['macs']:,} MACs"
                 if device else "")
        self.log(
            f"trial {trial.number}: val {val_acc:.4f}{hold}, {params:,} params ({dendrites} dendrites){costs}, "
            f"{result.epochs} epochs, {result.seconds:.1f}s [{space.describe(hp)}]"
        )
        return val_acc, float(params)

    def _time_cap(self, trials: int) -> float | None:
        """Wall seconds a batch of `trials` may train: each trial's --trial-seconds (trials share the batch's
        wall clock, so a stack of 8 gets 8x), and never past the Studio search's deadline."""
        caps = [self.trial_seconds * trials] if self.trial_seconds else []
        if self.deadline is not None:
            caps.append(self.deadline - time.monotonic())
        if caps and min(caps) <= 1:
            raise optuna.TrialPruned("no time left for another trial")
        return min(caps) if caps else None

    @staticmethod
    def _accuracy(model, x, y) -> float:
        """Accuracy of the returned (best-validation) model; on the holdout: reported, never selected on."""
        import torch

        from kws.trainer import evaluate

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


def ask_fixed(study: optuna.Study, params: dict, explore: bool = False) -> optuna.Trial:
    """A new trial with `params` fixed, created RUNNING: what enqueue_trial + ask do, without the moment in
    the WAITING state in which another worker's ask could take it (SQLite has no row locks, so two workers
    could both pop that trial, train it twice and tell it twice). `explore`: its other knobs at random."""
    from optuna.trial import create_trial

    template = create_trial(state=TrialState.RUNNING, system_attrs={"fixed_params": params, EXPLORE: explore})
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def requeue(study: optuna.Study, numbers: list[int]) -> None:
    """Fail and re-queue interrupted trials exactly like those of a worker that died, so a resumed sweep
    re-runs them."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in numbers:
            study.tell(trial.number, state=TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.number in numbers and "error" not in trial.user_attrs:
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
    """Run trials until `target` trials count (complete, stopped early or failed; skipped and retried ones do not).

    Queued retries always run. When the target is covered but other workers' trials are still running, wait:
    if one of them dies, its trial goes stale, is failed and re-queued here, and this worker runs it.
    `should_start` lets the Studio search stop launching trials when time runs short; `after_trial` refreshes
    the reports, so a long sweep can be watched while it runs.
    """
    def room() -> bool:
        c = tally(study.get_trials(deepcopy=False))
        return c.counted + c.running + c.waiting < target  # queued trials (retries, starting points) run too

    while True:
        fail_stale_trials(study)
        count = tally(study.get_trials(deepcopy=False))
        if not count.waiting and count.counted + count.running >= target:
            if not count.running:
                return count
            time.sleep(poll)
            continue
        if not should_start():
            return count
        try:
            # the batch's first trial takes a queued one if any; fresh ones fill what the queue leaves
            fresh = target - count.counted - count.running - count.waiting
            runner.run_batch(study, min(runner.batch, max(1, fresh + (1 if count.waiting else 0))), room)
        except KeyboardInterrupt:
            requeue(study, [t.number for t in runner.running])
            raise
        after_trial()
        if runner.failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            raise SweepError(
                f"{runner.failed_in_a_row} trials in a row failed; last error: {runner.last_error}"
            )
        if runner.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise SweepError(
                f"{runner.skipped_in_a_row} trials in a row were skipped (budget {runner.budget}); "
                f"raise the budget or narrow --formats"
            )
