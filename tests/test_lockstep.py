"""kws/lockstep.py: runs trained side by side along a model axis give what each gives alone.

`fit_many` stacks same-shaped runs into one batched network during their first neuron phase; a CC run
leaves the stack at its dendrite phase and goes on alone. Each run's history and final weights must equal
its solo `fit` at the same seed bit for bit: a solo run trains in a stack of one with the same kernels, and
anything less drifts into a different model over 100 epochs (a rounding difference flips a max-pool tie).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dendritic.pb import PBConfig
from dendritic.schedule import ScheduleConfig
from kws import lockstep
from kws.nets.convfc import preset
from kws.trainer import RunConfig, Splits, TrainConfig, _Run, fit, fit_many

N_FEATURES, N_CLASSES = 650, 4


@pytest.fixture(scope="module")
def data() -> Splits:
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, 300)
    x = (rng.normal(size=(300, N_FEATURES)) + 0.3 * y[:, None]).astype(np.float32)
    return Splits(x[:220], y[:220], x[220:], y[220:])


def run(mode: str, lr: float, dropout: float, noise: float, seed: int, epochs: int = 6, **schedule) -> RunConfig:
    net = replace(preset("ei-default", N_FEATURES, N_CLASSES), dropout=dropout, noise_std=noise)
    return RunConfig(net, PBConfig(mode=mode), ScheduleConfig(**schedule),
                     TrainConfig(epochs=epochs, learning_rate=lr, seed=seed, label_smoothing=0.1))


def assert_same(alone, together) -> None:
    assert [h.action for h in alone.history] == [h.action for h in together.history]
    assert [h.dendrites for h in alone.history] == [h.dendrites for h in together.history]
    for a, b in zip(alone.history, together.history):
        assert (a.val_loss, a.train_loss, a.val_acc, a.lr) == (b.val_loss, b.train_loss, b.val_acc, b.lr)
    sa, sb = alone.model.state_dict(), together.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def quiet(line: str) -> None:
    pass


def test_stacked_traditional_runs_equal_their_solo_runs(data: Splits) -> None:
    # different seeds, learning rates, dropout (0 included: it must draw nothing) and input noise
    runs = [run("traditional", 1e-3, 0.1, 0.0, 1), run("traditional", 5e-3, 0.3, 0.2, 2),
            run("traditional", 1e-2, 0.0, 0.1, 3, epochs=4)]
    together = fit_many(runs, data, [quiet] * 3)
    for r, t in zip(runs, together):
        assert_same(fit(r, data, quiet), t)
    assert len(together[2].history) == 4  # its own epoch cap, while the others went on


def test_cc_run_leaves_the_stack_at_its_dendrite_phase_and_still_matches(data: Splits) -> None:
    rng = np.random.default_rng(1)  # labels unrelated to inputs: validation stalls and CC grows at once
    data = Splits(data.x_train, rng.permutation(data.y_train), data.x_val, data.y_val)
    cc = run("cc", 1e-3, 0.2, 0.1, 4, epochs=14, switch_patience=2, dendrite_patience=2, max_dendrite_epochs=3)
    runs = [cc, run("traditional", 2e-3, 0.2, 0.0, 5, epochs=14)]
    together = fit_many(runs, data, [quiet] * 2)
    alone = fit(cc, data, quiet)
    assert max(h.dendrites for h in alone.history) >= 1  # it did grow (and left the stack)
    assert_same(alone, together[0])
    assert_same(fit(runs[1], data, quiet), together[1])


def test_only_same_shaped_neuron_phase_runs_are_stacked(data: Splits) -> None:
    wide = replace(run("traditional", 1e-3, 0.1, 0.0, 1), net=replace(run("gd", 1e-3, 0.1, 0.0, 1).net, width=9))
    runs = [run("traditional", 1e-3, 0.1, 0.0, 1), run("gd", 1e-3, 0.2, 0.0, 2), wide,
            replace(run("traditional", 1e-3, 0.1, 0.0, 1), net=replace(run("cc", 1e-3, 0.1, 0.0, 1).net,
                                                                        conv_type="conv2d"))]
    trainers = [_Run(r, data, quiet, None, None) for r in runs]
    groups = lockstep.Lockstep.form(trainers)
    # gd starts without dendrites, so it stacks with the traditional run; a lone shape gets a stack of one
    assert [[trainers.index(m) for m in g.members] for g in groups] == [[0, 1], [2], [3]]


def test_a_failing_run_ends_alone(data: Splits) -> None:
    def prune(rec) -> None:
        if rec.epoch == 2:
            raise RuntimeError("pruned")

    runs = [run("traditional", 1e-3, 0.1, 0.0, 1), run("traditional", 5e-3, 0.3, 0.2, 2)]
    out = fit_many(runs, data, [quiet] * 2, [prune, None])
    assert isinstance(out[0], RuntimeError) and str(out[0]) == "pruned"
    assert_same(fit(runs[1], data, quiet), out[1])


def test_stacked_conv2d_runs_equal_their_solo_runs(data: Splits) -> None:
    # more models (3) than channels (2): a slice along the wrong axis would show
    runs = [replace(r, net=replace(r.net, conv_type="conv2d", growth="uniform", width=2))
            for r in (run("traditional", 1e-3, 0.1, 0.1, 1, epochs=3), run("gd", 3e-3, 0.0, 0.0, 2, epochs=3),
                      run("cc", 2e-3, 0.2, 0.0, 3, epochs=3))]
    together = fit_many(runs, data, [quiet] * 3)
    for r, t in zip(runs, together):
        assert_same(fit(r, data, quiet), t)


# ---- DS-TCN stacks (issue 24): batched matrix products on a [M, B, T, C] stack, equal to rounding ----

def ds_run(seed: int, lr: float, dropout: float, noise: float, branches: tuple = (), epochs: int = 3) -> RunConfig:
    from kws.nets import dstcn

    net = dstcn.preset("dstcn", N_FEATURES, N_CLASSES, width=8, branch_kernels=branches, dropout=dropout,
                       noise_std=noise)
    return RunConfig(net, PBConfig(mode="traditional"), ScheduleConfig(),
                     TrainConfig(epochs=epochs, learning_rate=lr, seed=seed, label_smoothing=0.1))


@pytest.mark.parametrize("branches", [(), (3, 5, 7, 9)])
def test_dstcn_runs_stack_and_match_their_solo_runs_to_rounding(data: Splits, branches: tuple) -> None:
    runs = [ds_run(1, 0.005, 0.1, 0.2, branches), ds_run(2, 0.01, 0.0, 0.0, branches), ds_run(3, 0.002, 0.0, 0.1, branches)]
    trainers = [_Run(r, data, lambda line: None, None, None) for r in runs]
    stacks = lockstep.Lockstep.form(trainers)
    assert [type(s).__name__ for s in stacks] == ["DSStack"] and len(stacks[0].members) == 3
    assert lockstep.Lockstep.form(trainers[:1]) == []  # a lone DS-TCN run trains as the plain module
    alone = fit(runs[1], data, lambda line: None)
    together = fit_many(runs, data, [lambda line: None] * 3)
    # run 2 draws no dropout or noise: the same batches, so the same losses up to float rounding
    np.testing.assert_allclose([h.train_loss for h in together[1].history], [h.train_loss for h in alone.history],
                               rtol=2e-4)
    start = ds_run(2, 0.01, 0.0, 0.0, branches)
    fresh = _Run(start, data, lambda line: None, None, None).model.net
    for r in together:  # every member learnt, and its batch-norm statistics moved with the stack's
        stats = dict(r.model.net.named_buffers())
        assert not torch.equal(stats["stem.1.running_mean"], dict(fresh.named_buffers())["stem.1.running_mean"])
        assert r.history[-1].train_loss < r.history[0].train_loss
    weights = [dict(r.model.net.named_parameters())["classifier.weight"] for r in together]
    assert weights[0].data_ptr() != weights[1].data_ptr()  # each left the stack with weights of its own
