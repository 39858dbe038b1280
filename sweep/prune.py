"""Early pruning of hopeless trials with Optuna's own pruners, made Pareto-aware.

Optuna's pruners read a trial's intermediate values, but `Trial.report` does not exist for multi-objective
studies like ours (accuracy up, params down). So each sweep trial also gets a *curve trial* in a small
single-objective study beside it (same storage, so every worker sees every curve): the trial reports its
validation accuracy there after each epoch and asks that study's pruner whether to stop.

A small model that is worse than the median of all trials may still be on the Pareto front, so the curves
are kept per size bucket (half an octave of deployed params at the start of training): a trial is only
compared with trials of about its own size. A trial stopped this way is an Optuna PRUNED trial with a
`stopped_epoch` attribute: never on the front, but counted towards --trials, since it trained (a trial
pruned over the size budget is not).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from .study import quiet

PRUNERS = ("halving", "median", "none")
DEFAULT = "halving"  # the faster; bench/sweep_speed.py compares its front with an unpruned run
WARMUP_EPOCHS = 10  # no trial is judged before this epoch (its learning rate, augmentation settle first)
STARTUP_TRIALS = 4  # a bucket prunes nothing until this many of its trials have completed


def make_pruner(name: str) -> optuna.pruners.BasePruner | None:
    """`median`: stop a trial whose best accuracy so far is below the median of its bucket's completed
    trials at the same epoch (Optuna's MedianPruner). `halving`: asynchronous successive halving (keep the
    top third at epochs 10, 30, 90). `none`: every trial runs to its own early stop."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=WARMUP_EPOCHS, reduction_factor=3)
    if name == "none":
        return None
    raise ValueError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")


def size_bucket(params: int) -> int:
    """Half-octave size class: 1,024-1,448 params -> 20, 1,449-2,047 -> 21, 2,048 -> 22, ..."""
    return math.floor(2 * math.log2(max(params, 1)))


class Curve:
    """One trial's validation curve in its size bucket's study; `report` raises TrialPruned to stop it."""

    def __init__(self, storage, study_name: str, params: int, pruner: optuna.pruners.BasePruner):
        self.bucket = size_bucket(params)
        self.study = optuna.create_study(
            storage=storage,
            study_name=f"{study_name}:curves:{self.bucket}",
            direction="maximize",
            pruner=pruner,
            load_if_exists=True,
        )
        with quiet():  # a curve trial needs no heartbeat: its sweep trial has one
            self.trial = self.study.ask()
        self.best = 0.0
        self.epoch = 0

    def report(self, epoch: int, val_acc: float) -> None:
        self.best, self.epoch = max(self.best, val_acc), epoch
        self.trial.report(val_acc, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"validation accuracy {self.best:.4f} by epoch {epoch} is behind trials of its size "
                f"(bucket {self.bucket})"
            )

    def close(self, state: TrialState, value: float | None = None) -> None:
        self.study.tell(self.trial, value if state is TrialState.COMPLETE else None, state=state)


def epoch_reporter(curve: Curve | None) -> Callable | None:
    """The `fit(on_epoch=...)` hook: every epoch reports (a dendrite phase repeats the last accuracy)."""
    if curve is None:
        return None

    def on_epoch(rec) -> None:
        curve.report(rec.epoch, rec.val_acc)

    return on_epoch
