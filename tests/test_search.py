"""Issue 24: a search that never ships worse than the default. The frontier space and its starting points,
the noise-aware pick, deduplication within a batch, device budgets in the search, and `--space paper`."""
from __future__ import annotations

import random
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from ei_dirs import write_ei_dir

from block.configs import run_config
from block.params import parse_args
from block.sizing import Budget, size_to_budget
from sweep import space
from sweep.studio import CONFIRM_SEEDS, confirm, starting_points

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_ei_dir(tmp_path_factory.mktemp("search") / "data", n_train=45, n_val=12)


def block_args(*flags: str) -> Namespace:
    return parse_args(["--data-directory", "d", "--out-directory", "o", *flags])


def test_paper_space_still_samples_the_papers_values() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0))
    choices = {k.name: k.choices for k in space.PAPER_KNOBS}
    for _ in range(60):
        hp = space.suggest(study.ask(), space.FORMATS, "paper")
        assert set(hp) - {"model_format"} <= set(choices)
        assert all(hp[k] in choices[k] for k in hp if k != "model_format")
        flags = dict(zip(space.to_argv(hp)[::2], space.to_argv(hp)[1::2]))
        assert flags["--model-preset"] == "custom" and flags["--conv-type"] in ("conv1d", "conv2d")
        assert float(flags["--learning-rate"]) in (0.001, 0.005, 0.01)
        assert float(flags["--dropout"]) in (0.1, 0.3, 0.5)


def test_frontier_space_points_build_what_they_say() -> None:
    """Every sampled point of the frontier space parses as block flags into the network it describes."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(1))
    families = set()
    for _ in range(40):
        hp = space.suggest(study.ask(), space.FORMATS, "frontier")
        cfg = run_config(block_args(*space.to_argv(hp)), 650, 12)
        families.add(hp["family"])
        if hp["family"] == "dstcn":
            assert (cfg.net.blocks, cfg.net.width, cfg.net.kernel) == (hp["ds_blocks"], hp["ds_width"], hp["ds_kernel"])
            assert bool(cfg.net.branch_kernels) == (hp["ds_multikernel"] and hp["ds_kernel"] > 3)
        else:
            assert (cfg.net.conv_layers, cfg.net.width, cfg.net.growth) == (hp["fc_conv_layers"], hp["fc_width"], "uniform")
        assert cfg.train.learning_rate == hp["learning_rate"] and cfg.net.dropout == hp["dropout"]
        assert cfg.train.augment.freq_masks == cfg.train.augment.time_masks == hp["masks"]
        if hp["model_format"] != "traditional":
            assert cfg.schedule.max_dendrites == hp["max_dendrites"]
            assert cfg.pb.layers or cfg.pb.scope in ("conv", "linear")
    assert families == {"dstcn", "convfc"}


@pytest.mark.parametrize("n_classes", [3, 12])
def test_starting_points_are_the_frontier_picks(n_classes: int) -> None:
    """The queued points are `auto` sized at the frontier's budgets below this one (plus the multi-kernel
    twin and conv3 at the budget): each point's flags rebuild exactly that sized network."""
    args = block_args()
    data = Namespace(n_features=650, n_classes=n_classes)
    budget = Budget(params=3228)
    points = starting_points(args, data, budget)
    nets = [run_config(block_args(*space.to_argv(p)), 650, n_classes).net for p in points]
    for b in (1000, 2000):
        sized = size_to_budget(run_config(block_args(), 650, n_classes), b)[0].net
        assert replace(sized, dropout=0.0, noise_std=0.3) in [replace(n, dropout=0.0, noise_std=0.3) for n in nets]
    assert any(p["family"] == "convfc" for p in points)
    assert all(p["learning_rate"] == args.learning_rate and p["patience"] == 30 and p["masks"] == 1 for p in points)
    # `--dropout auto` as auto has it at each point's own budget: none at 1k, 0.1 for the default's twin
    assert points[0]["dropout"] == 0.0 and 0.1 in [p["dropout"] for p in points]


# ---- the noise-aware pick ----

class FakeRunner:
    """Retraining answers from a table: {trial number: [validation accuracy per fresh seed]}."""

    def __init__(self, fresh: dict[int, list[float]]):
        self.fresh, self.asked = fresh, []

    def retrain(self, rows, seeds, deadline):
        self.asked.append(([r["number"] for r in rows], seeds))
        return {r["number"]: self.fresh[r["number"]][:len(seeds)] for r in rows}


def study_of(scores: list[float]) -> optuna.Study:
    """Trial 0 is the default; the others searched points; every trial complete with its first score."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for n, acc in enumerate(scores):
        hp = {space.DEFAULT_TRIAL: True, "model_format": "traditional"} if n == 0 else {"model_format": "traditional"}
        attrs = {"hparams": hp, "argv": [] if n == 0 else ["--conv-width", str(n)], "val_accuracy": acc,
                 "params": 1000 + n, "seconds": 1.0, "dendrites": 0}
        study.add_trial(optuna.trial.create_trial(values=[acc, 1000 + n], user_attrs=attrs))
    return study


def describe_stub(hp):  # (space.describe needs full points; the pick only logs it)
    return "default" if hp.get(space.DEFAULT_TRIAL) else "searched"


@pytest.fixture
def short_labels(monkeypatch):
    monkeypatch.setattr(space, "describe", describe_stub)


def test_a_lucky_first_seed_does_not_beat_the_default(short_labels) -> None:
    """Trial 1 beat the default on its first seed, but its fresh seeds say otherwise: the default ships."""
    runner = FakeRunner({0: [0.80, 0.82], 1: [0.78, 0.79], 2: [0.70, 0.71]})
    pick = confirm(study_of([0.81, 0.86, 0.84]), runner, block_args(), None, print)
    assert pick["default"] and pick["argv"] == [] and pick["summary"].startswith("search: kept the default")
    assert runner.asked == [([0, 1, 2], [4, 5])]  # the default and both rivals, on seeds 4 and 5 (seed 3 + 1, 2)
    assert "mean validation 0.8100 over 3 seeds" in pick["summary"]


def test_a_confirmed_rival_is_picked_and_says_by_how_much(short_labels) -> None:
    runner = FakeRunner({0: [0.80, 0.80], 1: [0.85, 0.87]})
    pick = confirm(study_of([0.80, 0.84]), runner, block_args(), None, print)
    assert not pick["default"] and pick["argv"] == ["--conv-width", "1"]
    assert "mean validation 0.8600 over 2 fresh seeds, +6.0 points over the default's 0.8000" in pick["summary"]


def test_nothing_above_the_default_keeps_it_without_retraining(short_labels) -> None:
    runner = FakeRunner({})
    pick = confirm(study_of([0.90, 0.85, 0.90]), runner, block_args(), None, print)  # a tie is not a win
    assert pick["default"] and runner.asked == [] and "no other trial of 3 scored above" in pick["summary"]


def test_the_pick_is_never_below_the_defaults_mean(short_labels) -> None:
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 8)
        first = [rng.uniform(0.6, 0.9) for _ in range(n)]
        fresh = {i: [rng.uniform(0.6, 0.9) for _ in range(CONFIRM_SEEDS)] for i in range(n)}
        pick = confirm(study_of(first), FakeRunner(fresh), block_args(), None, lambda line: None)
        default_mean = (first[0] + sum(fresh[0])) / (1 + CONFIRM_SEEDS)
        if not pick["default"]:
            chosen = int(pick["argv"][1])
            assert sum(fresh[chosen]) / CONFIRM_SEEDS > default_mean


# ---- deduplication, the default trial and device budgets in a real search ----

class SameEveryTime(optuna.samplers.RandomSampler):
    """Draws the first choice (or the lowest integer) of every knob: every trial is the same point."""

    def sample_independent(self, study, trial, name, distribution):
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return distribution.choices[0]
        return distribution.low


def test_a_batch_never_trains_the_same_point_twice(data_dir: Path) -> None:
    from block.data import load_ei_data
    from sweep.worker import DRAWS, Runner

    lines: list[str] = []
    runner = Runner(load_ei_data(data_dir), ["--data-directory", str(data_dir), "--out-directory", "o",
                                             "--epochs", "1"], Budget(), ("traditional",), log=lines.append)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=SameEveryTime())
    runner.run_batch(study, 4)
    states = [space_state(t) for t in study.trials]
    assert states == ["COMPLETE"] + ["SKIPPED"] * 3 * DRAWS  # each of 3 slots drawn DRAWS times, never trained
    assert all(t.user_attrs["reason"] == "duplicate of trial 0" for t in study.trials[1:])
    assert sum("duplicate of trial 0" in line for line in lines) == 3 * DRAWS
    assert [bool(t.system_attrs.get("explore")) for t in study.trials[1:4]] == [False, True, True]


def test_a_redrawn_batch_mate_explores_at_random() -> None:
    """The sweep's sampler draws a trial marked `explore` at random, not by TPE (which had converged)."""
    from sweep.study import SweepSampler
    from sweep.worker import ask_fixed

    study = optuna.create_study(direction="maximize", sampler=SweepSampler("tpe", 3, ("traditional",), startup=0))
    for _ in range(12):  # TPE learns that learning rate 0.005 is good
        t = study.ask()
        hp = space.suggest(t, ("traditional",))
        study.tell(t, 1.0 if hp["learning_rate"] == 0.005 else 0.0)
    tpe = [space.suggest(ask_fixed(study, {}), ("traditional",))["learning_rate"] for _ in range(12)]
    rand = [space.suggest(ask_fixed(study, {}, explore=True), ("traditional",))["learning_rate"] for _ in range(12)]
    assert tpe.count(0.005) > rand.count(0.005)


def space_state(t) -> str:
    from sweep.study import state_word

    return state_word(t)


def test_studio_search_runs_the_default_first_and_stays_in_the_device_budget(data_dir: Path) -> None:
    from block.data import load_ei_data
    from sweep import best_args

    args = block_args("--search-trials", "4", "--epochs", "1", "--max-ram-kb", "5.5", "--max-flash-kb", "11")
    args = Namespace(**{**vars(args), "data_directory": str(data_dir), "max_params": 1347})
    lines: list[str] = []
    chosen, _ = best_args(args, load_ei_data(data_dir), lines.append)
    first = next(line for line in lines if line.startswith("trial "))
    assert first.startswith("trial 0: ") and "[the default" in first
    import re

    trained = [re.search(r"params \(\d+ dendrites\), ([\d,]+) B flash, ([\d,]+) B RAM", line)
               for line in lines if line.startswith("trial ") and " val " in line]
    assert trained and all(m is not None for m in trained)
    for m in trained:  # every trained trial, counted on its built model, within both limits
        assert int(m[1].replace(",", "")) <= 11 * 1024 and int(m[2].replace(",", "")) <= 5.5 * 1024
    summary = [line for line in lines if line.startswith("search: ")]
    assert len(summary) == 1 and "KB flash" in summary[0] and "KB RAM" in summary[0]
    if not summary[0].startswith("search: kept"):
        assert chosen.sized_by_search


def test_a_dendritic_format_searches_its_own_format_from_its_own_default(data_dir: Path) -> None:
    """--model-format cc: the budget check, the default trial and the starting points are cc too."""
    from block.data import load_ei_data
    from sweep import best_args

    args = block_args("--search-trials", "3", "--epochs", "1", "--model-format", "cc", "--max-dendrites", "1")
    args = Namespace(**{**vars(args), "data_directory": str(data_dir), "max_params": 4000})
    lines: list[str] = []
    chosen, _ = best_args(args, load_ei_data(data_dir), lines.append)
    trials = [line for line in lines if line.startswith("trial ")]
    assert trials[0].startswith("trial 0: ") and all("[cc " in line for line in trials[1:])
    assert chosen.model_format == "cc"


def test_sweep_under_a_ram_budget_reports_the_device_side_by_side(data_dir: Path, tmp_path: Path) -> None:
    import csv

    from sweep.cli import main

    out = tmp_path / "out"
    assert main(["--data-directory", str(data_dir), "--out-directory", str(out), "--trials", "3", "--epochs", "1",
                 "--workers", "1", "--max-ram-kb", "6", "--formats", "traditional"]) == 0
    rows = [r for r in csv.DictReader((out / "trials.csv").open()) if r["state"] == "COMPLETE"]
    assert rows and all(0 < int(r["arena_bytes"]) <= 6 * 1024 and int(r["flash_bytes"]) > 0 for r in rows)
    assert "| format | params | flash B | RAM B | MACs |" in (out / "frontier.md").read_text()
    assert (out / "pareto.png").stat().st_size > 10_000


def test_confirmation_runs_stop_at_their_cap_instead_of_failing(data_dir: Path) -> None:
    """EI's epoch-1 rule (estimate over the limit: fail) ended every confirmation run of a 10-minute search,
    whose 200-epoch cap is far above where early stopping ends them; with fail_fast off a run keeps its best."""
    from block.data import load_ei_data
    from kws.errors import TimeLimitError
    from kws.trainer import fit

    cfg = run_config(block_args("--epochs", "50"), 650, 3)
    splits = load_ei_data(data_dir).splits()
    with pytest.raises(TimeLimitError):
        fit(replace(cfg, train=replace(cfg.train, max_seconds=1e-3)), splits, lambda line: None)
    result = fit(replace(cfg, train=replace(cfg.train, max_seconds=1e-3, fail_fast=False)), splits, lambda line: None)
    assert result.epochs == 1


def test_without_a_finished_default_the_default_ships(short_labels) -> None:
    study = optuna.create_study(direction="maximize")
    attrs = {"hparams": {"model_format": "traditional"}, "argv": ["--conv-width", "9"], "val_accuracy": 0.99,
             "params": 900, "seconds": 1.0, "dendrites": 0}
    study.add_trial(optuna.trial.create_trial(value=0.99, user_attrs=attrs))
    pick = confirm(study, FakeRunner({}), block_args(), None, print)
    assert pick["default"] and "did not finish" in pick["summary"]


def test_a_search_that_gives_up_still_ships_the_default(data_dir: Path, monkeypatch) -> None:
    """200 skipped points in a row (hello-world once: widths far over its budget) ended the whole job with an
    ERR; now the search stops and the job goes on with what it has, here the default."""
    from block.data import load_ei_data
    from sweep import best_args, worker
    from sweep.study import SweepError

    real_work = worker.work

    def gives_up(study, runner, target, poll, **kw):
        real_work(study, runner, 1, poll, **kw)  # the default trial, then the skip limit
        raise SweepError("200 trials in a row were skipped")

    monkeypatch.setattr(worker, "work", gives_up)
    args = block_args("--search-trials", "auto", "--epochs", "1")
    args = Namespace(**{**vars(args), "data_directory": str(data_dir), "max_params": 1347})
    lines: list[str] = []
    chosen, _ = best_args(args, load_ei_data(data_dir), lines.append)
    assert chosen is args and any("stopping early: 200 trials in a row" in line for line in lines)
