"""The PB phase schedule (pb-algorithm §5) as a pure, explicit state machine.

It only decides; it never touches a model. `DendriticModel` carries out each `Action` (revert to the best
checkpoint, add or install dendrites, rebuild the optimizer), so the schedule can be tested on scripted
validation sequences alone.

    neuron phase --plateau--> (cc) dendrite phase --correlation plateau--> install --> neuron phase
                          \\--> (gd) add dendrites immediately -------------------------/
    A grown cycle that never beats the global best is retried with fresh dendrites up to `max_tries`
    times from the best checkpoint; then the schedule stops and the best checkpoint is the final model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from .errors import ConfigError

Mode = Literal["traditional", "gd", "cc"]
MODES: tuple[Mode, ...] = ("traditional", "gd", "cc")


class Phase(str, Enum):
    NEURON = "neuron"
    DENDRITE = "dendrite"


class Action(str, Enum):
    CONTINUE = "continue"
    START_DENDRITE_PHASE = "start_dendrite_phase"  # cc: revert to best, train candidates, neurons frozen
    ADD_DENDRITES = "add_dendrites"  # gd: revert to best and add random dendrites now
    INSTALL_DENDRITES = "install_dendrites"  # cc: end of dendrite phase, install the best candidates
    STOP = "stop"  # revert to the best checkpoint and finish


@dataclass(frozen=True)
class ScheduleConfig:
    """When to grow and stop. The mode (traditional, gd, cc) is PBConfig's, passed to PhaseSchedule."""

    max_dendrites: int = 2
    switch_patience: int = 10  # neuron-phase epochs without improvement before dendrites are added
    improvement_threshold: float = 1e-4  # relative gain a validation score needs to count as better
    dendrite_patience: int = 3  # dendrite-phase epochs without a correlation gain before installing
    max_dendrite_epochs: int = 50  # hard cap on one dendrite phase
    max_tries: int = 2  # retries of a dendrite count that did not beat the best score
    early_stopping_patience: int = 15  # traditional mode: plain early stopping

    def validate(self) -> None:
        for name in ("max_dendrites", "max_tries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be >= 0")
        for name in ("switch_patience", "dendrite_patience", "max_dendrite_epochs", "early_stopping_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be >= 1")
        if not 0 <= self.improvement_threshold < 1:
            raise ConfigError("improvement threshold must be in [0, 1)")


@dataclass
class Decision:
    action: Action
    new_best: bool = False  # this epoch set a new global best: the caller saves a checkpoint
    retry: bool = False  # the growth is a retry of a dendrite count that failed to improve
    cycle_best: bool = False  # this epoch beat the best of the current cycle (same dendrite count)


class PhaseSchedule:
    """Tracks validation scores (higher is better) and correlation gains; returns what to do next."""

    def __init__(self, cfg: ScheduleConfig, mode: Mode = "cc"):
        cfg.validate()
        if mode not in MODES:
            raise ConfigError(f"model format must be {', '.join(MODES)}, got {mode!r}")
        self.cfg = cfg
        self.mode = mode
        self.phase = Phase.NEURON
        self.dendrites = 0  # dendrite count of the architecture being trained
        self.best_dendrites = 0  # dendrite count of the global-best checkpoint
        self.global_best = -math.inf
        self.cycle_best = -math.inf
        self.cycle_set_best = False
        self.stale_epochs = 0
        self.tries = 0
        self.dendrite_epochs = 0
        self.stale_dendrite_epochs = 0
        self.done = False

    def beats(self, new: float, old: float) -> bool:
        if old == -math.inf:
            return True
        return new > old + self.cfg.improvement_threshold * abs(old) + 1e-12

    def neuron_epoch(self, score: float) -> Decision:
        """Call after each neuron-phase epoch with the validation score."""
        if self.phase is not Phase.NEURON or self.done:
            raise RuntimeError(f"neuron_epoch called in {self.phase.value} phase (done={self.done})")
        new_best = False
        cycle_best = self.beats(score, self.cycle_best)
        if cycle_best:
            self.cycle_best, self.stale_epochs = score, 0
            if self.beats(score, self.global_best):
                self.global_best, self.best_dendrites = score, self.dendrites
                self.cycle_set_best = new_best = True
        else:
            self.stale_epochs += 1
        cfg = self.cfg
        plain = self.mode == "traditional" or cfg.max_dendrites == 0  # no dendrite may come: plain early stopping
        patience = cfg.early_stopping_patience if plain else cfg.switch_patience
        if self.stale_epochs < patience:
            return Decision(Action.CONTINUE, new_best, cycle_best=cycle_best)
        if plain:
            return self._stop(new_best)
        retry = not self.cycle_set_best
        if retry:
            if self.tries >= cfg.max_tries:
                return self._stop(new_best)
            self.tries += 1
        else:
            self.tries = 0
            if self.dendrites >= cfg.max_dendrites:
                return self._stop(new_best)
        # Grow from the best checkpoint: its architecture plus one dendrite set.
        self.dendrites = self.best_dendrites
        if self.mode == "gd":
            self._start_cycle()
            return Decision(Action.ADD_DENDRITES, new_best, retry)
        self.phase = Phase.DENDRITE
        self.dendrite_epochs = self.stale_dendrite_epochs = 0
        return Decision(Action.START_DENDRITE_PHASE, new_best, retry)

    def dendrite_epoch(self, correlation_improved: bool) -> Decision:
        """Call after each dendrite-phase epoch with whether any candidate's correlation improved."""
        if self.phase is not Phase.DENDRITE:
            raise RuntimeError("dendrite_epoch called outside a dendrite phase")
        self.dendrite_epochs += 1
        self.stale_dendrite_epochs = 0 if correlation_improved else self.stale_dendrite_epochs + 1
        if (self.stale_dendrite_epochs >= self.cfg.dendrite_patience
                or self.dendrite_epochs >= self.cfg.max_dendrite_epochs):
            self.phase = Phase.NEURON
            self._start_cycle()
            return Decision(Action.INSTALL_DENDRITES)
        return Decision(Action.CONTINUE)

    def _start_cycle(self) -> None:
        self.dendrites += 1
        self.cycle_best, self.cycle_set_best, self.stale_epochs = -math.inf, False, 0

    def stop(self) -> None:
        """Finish now (also used when the epoch budget runs out): the best checkpoint is the result."""
        self.done, self.phase, self.dendrites = True, Phase.NEURON, self.best_dendrites

    def _stop(self, new_best: bool) -> Decision:
        self.stop()
        return Decision(Action.STOP, new_best)
