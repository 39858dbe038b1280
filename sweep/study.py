"""Optuna plumbing: storage (SQLite or any RDB URL), the study, the sampler, and trial bookkeeping.

Workers on many machines share one study through an RDB storage. A worker that dies mid-trial stops
sending heartbeats; after the grace period any other worker marks its trial FAIL and Optuna's
RetryHeartbeatStaleTrialCallback re-queues the same parameters as a WAITING trial (system attr
`retry_history` names the failed one), which the next free worker runs. `tally` counts a study with that
in mind, so a retried trial is counted once, by its retry.

(`RetryHeartbeatStaleTrialCallback` / `heartbeat_stale_trial_callback` are Optuna 5's names for the older
`RetryFailedTrialCallback` / `failed_trial_callback`, which still exist but are deprecated.)
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from kws.errors import ProjectError, first_line

from .space import FORMATS

EXPLORE = "explore"  # system attribute of a trial the sampler draws at random (sweep/worker.py run_batch)
DIRECTIONS = ("maximize", "minimize")  # validation accuracy up, deployed params down
MAX_RETRY = 3  # re-runs of a trial whose worker died; a trial failing more often than this is counted failed
RDB_BACKENDS = ("sqlite", "postgresql", "mysql")

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed/stopped/skipped trials get our own one-line log
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # a trial's owner, as its "worker" user attribute


@contextmanager
def quiet():
    """Heartbeats and retries are 'experimental' in Optuna 5 (since 2.8), and `Study.ask` on a storage with
    heartbeats warns that they are meant for `Study.optimize` (sweep/worker.py runs the heartbeat threads
    itself, as optimize does): noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        yield


class Heartbeat:
    """Records one trial's heartbeat every `interval` seconds until stopped; a context manager.

    Optuna's own heartbeat thread dies on the first storage error (a `database is locked` from SQLite on a
    busy machine, a dropped connection), and its trial then goes stale while it is still training. This one
    logs nothing and tries again at the next beat: a live trial keeps beating."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001, S110 - any storage error: beat again next time
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Self:
        if self.interval:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def owner_alive(worker: str | None) -> bool:
    """True when `worker` ("host:pid", the trial's "worker" attribute) is a live process on this machine.
    A trial of a live local worker is never failed for a late heartbeat: a loaded machine can delay a beat
    past the grace period, but the worker will still tell its trial. Workers on other machines have only
    the heartbeat to go by."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Optuna's fail_stale_trials, except for trials whose owner is a live worker on this machine (they get
    a heartbeat on its behalf instead). Fails and re-queues (RetryHeartbeatStaleTrialCallback) the rest;
    returns their numbers."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage  # Optuna wraps an RDBStorage in a cache that forwards the heartbeat calls
    if not is_heartbeat_enabled(storage):
        return []
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        if owner_alive(trial.user_attrs.get("worker")):
            storage.record_heartbeat(trial_id)
            continue
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished meanwhile, or failed by another worker first
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        for trial in failed:
            with quiet():
                callback(study, storage.get_trial(trial._trial_id))  # its FAIL state, as Optuna passes it
    return [trial.number for trial in failed]


class SweepError(ProjectError, ValueError):
    """A bad sweep input or setting, reported as one `ERR:` line."""


def storage_url(url: str | None, out: Path) -> str:
    return url or f"sqlite:///{(out / 'study.db').resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has nothing to hide we can find
        return url.split("@")[-1]


def check_url(url: str) -> None:
    """Reject what RDBStorage cannot open, before anything is trained."""
    from sqlalchemy.engine import make_url

    try:
        backend = make_url(url).get_backend_name()
    except Exception as e:  # noqa: BLE001 - sqlalchemy raises several types for a malformed URL
        raise SweepError(f"bad storage URL {redact(url)!r}: {first_line(e)}") from None
    if backend not in RDB_BACKENDS:
        raise SweepError(
            f"bad storage URL {redact(url)!r}: backend {backend!r} is not one of "
            f"{', '.join(RDB_BACKENDS)} (e.g. postgresql://user:pass@host:5432/db)"
        )


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the pinned driver is psycopg2-binary, so a URL
    that names no driver gets that one (postgresql+psycopg://... still picks psycopg 3 if installed)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def open_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: a trial whose worker is silent for 4 intervals is failed and retried."""
    check_url(url)
    url = with_driver(url)
    engine: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}  # wait for the lock instead of failing beside another writer
    with quiet():
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    for attempt in range(3):  # fresh DB: two workers may race on creating the tables
        try:
            with quiet():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat,
                    grace_period=4 * heartbeat,
                    heartbeat_stale_trial_callback=callback,
                )
        except Exception as e:  # noqa: BLE001 - driver errors differ by backend; one line either way
            if attempt == 2 or "already exists" not in str(e):
                raise SweepError(f"cannot open storage {redact(url)}: {first_line(e)}") from None
            time.sleep(1 + random.random())
    raise AssertionError("unreachable")


def open_study(storage, name: str, sampler: BaseSampler, settings: dict) -> optuna.Study:
    """Create or continue the study. Its settings (dataset, epochs, budget, ...) are stored with it so a
    second run or worker with different ones fails instead of mixing incomparable trials."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=list(DIRECTIONS),
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as e:  # e.g. an existing study with other directions
        raise SweepError(f"study {name!r}: {first_line(e)}") from None
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        diff = ", ".join(
            f"{k}: {stored.get(k)!r} -> {settings.get(k)!r}"
            for k in sorted(set(stored) | set(settings))
            if stored.get(k) != settings.get(k)
        )
        raise SweepError(
            f"study {name!r} was run with other settings ({diff}); use those or a new --study-name"
        )
    return study


class SweepSampler(BaseSampler):
    """Delegates to TPE or random search, with two changes that keep the formats comparable:

    - model_format is not sampled but balanced: each trial takes the format with the fewest live
      (complete, running or queued) trials, so every format gets the same share of the budget and the
      per-format Pareto fronts are drawn from equally many trials (TPE alone drifts to the format that
      currently dominates, which would bias the comparison this sweep is for);
    - the inner sampler is re-seeded from (seed, trial number): reproducible for one worker, and workers
      sharing a seed still draw different points.
    """

    def __init__(self, kind: str, seed: int, formats: tuple[str, ...] = FORMATS, startup: int = 16):
        self.kind, self.seed, self.formats, self.startup = kind, seed, formats, startup
        self._inner = self._make(seed)

    def _make(self, seed: int) -> BaseSampler:
        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # SeedSequence mixes (seed, number): RandomState seeded with nearby integers draws nearly the same
        # first categorical values, which made consecutive trials near-copies of each other.
        seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
        # a batch-mate redrawn after a duplicate explores at random: TPE had converged on that very point
        explore = trial.system_attrs.get(EXPLORE)
        self._inner = optuna.samplers.RandomSampler(seed=seed) if explore else self._make(seed)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name == "model_format":
            return self._least_used_format(study, trial.number)
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)

    def _least_used_format(self, study: optuna.Study, number: int) -> str:
        live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        counts = dict.fromkeys(self.formats, 0)
        for t in study.get_trials(deepcopy=False, states=live):
            fmt = t.params.get("model_format")
            if fmt in counts and t.number != number:
                counts[fmt] += 1
        fewest = min(counts.values())
        tied = [f for f in self.formats if counts[f] == fewest]
        return tied[number % len(tied)]


@dataclass
class Tally:
    """Trial counts with retries resolved: a failed trial that was re-queued is counted by its retry."""

    complete: int = 0
    stopped: int = 0  # stopped early on its validation curve (sweep/prune.py): trained a while, counted
    skipped: int = 0  # over the size budget (or out of time): not trained, not counted towards --trials
    failed: int = 0  # raised an error (or died more than MAX_RETRY times): counted, never re-run
    retried: int = 0  # failed because its worker died, re-queued as another trial
    running: int = 0
    waiting: int = 0

    @property
    def counted(self) -> int:
        """Trials that used up part of the --trials target."""
        return self.complete + self.stopped + self.failed

    def __str__(self) -> str:
        return (
            f"{self.complete} complete, {self.stopped} stopped early, {self.skipped} skipped, {self.failed} failed, "
            f"{self.retried} retried, "
            f"{self.running} running, {self.waiting} queued"
        )


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of trials that were failed by the heartbeat and re-queued (every step of a retry chain)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def state_word(t: FrozenTrial) -> str:
    """The sweep's words for a trial's state: Optuna's PRUNED is STOPPED (early, on its validation curve,
    after training a while) or SKIPPED (never trained: over the size budget or out of time)."""
    if t.state is TrialState.PRUNED:
        return "STOPPED" if "stopped_epoch" in t.user_attrs else "SKIPPED"
    return t.state.name


def tally(trials: list[FrozenTrial]) -> Tally:
    retried = retried_numbers(trials)
    t = Tally()
    for trial in trials:
        word = state_word(trial)  # COMPLETE, STOPPED, SKIPPED, RUNNING, WAITING: the Tally fields
        name = ("retried" if trial.number in retried else "failed") if word == "FAIL" else word.lower()
        setattr(t, name, getattr(t, name) + 1)
    return t
