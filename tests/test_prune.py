"""sweep/prune.py: a trial stops when its validation curve falls behind trials of its own size."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweep import prune
from sweep.study import Tally, tally

optuna.logging.set_verbosity(optuna.logging.ERROR)


def finished(storage, params: int, accuracy: float, epochs: int = 30) -> None:
    """A completed trial of `params` whose curve rises linearly to `accuracy`."""
    curve = prune.Curve(storage, "s", params, prune.make_pruner("median"))
    for epoch in range(1, epochs + 1):
        curve.report(epoch, accuracy * epoch / epochs)
    curve.close(TrialState.COMPLETE, accuracy)


def run_curve(storage, params: int, accuracy: float, pruner: str = "median", epochs: int = 30) -> int | None:
    """The epoch at which a trial with that curve is stopped, or None when it runs to the end."""
    curve = prune.Curve(storage, "s", params, prune.make_pruner(pruner))
    try:
        for epoch in range(1, epochs + 1):
            curve.report(epoch, accuracy * epoch / epochs)
    except optuna.TrialPruned as e:
        assert f"bucket {prune.size_bucket(params)}" in str(e)
        curve.close(TrialState.PRUNED)
        return epoch
    curve.close(TrialState.COMPLETE, accuracy)
    return None


def test_median_pruner_stops_the_laggard_after_warm_up_only_against_its_size() -> None:
    storage = optuna.storages.InMemoryStorage()
    assert run_curve(storage, 4_000, 0.1) is None  # no completed trial of its size yet: nothing to compare
    for acc in (0.6, 0.7, 0.8, 0.9):
        finished(storage, 4_000, acc)
    assert run_curve(storage, 4_000, 0.3) == prune.WARMUP_EPOCHS  # behind the median, judged from then on
    assert run_curve(storage, 4_000, 0.85) is None  # ahead of the median
    # A 16k-param trial is a different size class: the 4k trials do not judge it.
    assert prune.size_bucket(16_000) != prune.size_bucket(4_000)
    assert run_curve(storage, 16_000, 0.3) is None


def test_halving_keeps_the_top_third_at_each_rung() -> None:
    storage = optuna.storages.InMemoryStorage()
    stops = [run_curve(storage, 4_000, acc, "halving", epochs=40) for acc in (0.9, 0.8, 0.7, 0.6, 0.5, 0.95)]
    assert stops[0] is None and stops[-1] is None  # the best ones go on
    assert all(s == prune.WARMUP_EPOCHS for s in stops[2:5])  # the bottom ones stop at the first rung


def test_size_buckets_are_half_octaves() -> None:
    assert prune.size_bucket(1_024) == prune.size_bucket(1_448) == 20
    assert prune.size_bucket(1_449) == prune.size_bucket(2_047) == 21
    assert prune.size_bucket(2_048) == 22
    with pytest.raises(ValueError, match="unknown pruner"):
        prune.make_pruner("hyperband-ish")
    assert prune.make_pruner("none") is None


def test_stopped_trials_count_towards_the_target_skipped_ones_do_not() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for attrs in ({"stopped_epoch": 12}, {}):  # stopped on its curve / over the size budget
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, state=TrialState.PRUNED)
    study.tell(study.ask(), [0.8, 1000.0])
    count = tally(study.get_trials())
    assert (count.complete, count.stopped, count.skipped, count.counted) == (1, 1, 1, 2)
    assert "1 stopped early" in str(count) and isinstance(count, Tally)
