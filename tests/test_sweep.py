"""sweep/: resumable SQLite studies, the size budget, bad CLI input, the Studio hook and the report helpers.

Trials here train tiny random-data nets for 1 epoch, so the tests check bookkeeping, not accuracy. They run
in-process (one torch import for the module) except one real `python -m sweep` process for the error path.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from ei_dirs import write_ei_dir

from sweep import budget, report, space
from sweep.cli import main
from sweep.study import SweepError, SweepSampler, tally
from sweep.worker import requeue

REPO = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_ei_dir(tmp_path_factory.mktemp("sweep") / "data", n_train=45, n_val=12, holdout=True)


def sweep(data: Path, out: Path, trials: int, *extra: str) -> int:
    return main(
        [
            "--data-directory",
            str(data),
            "--out-directory",
            str(out),
            "--trials",
            str(trials),
            "--epochs",
            "1",
            "--holdout-directory",
            str(data / "holdout"),
            "--workers",
            "1",
            *extra,
        ]
    )


def load(out: Path, name: str = "dendritic-sweep") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").get_trials()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERR: "), err
    return lines[0]


def test_sqlite_study_resumes_and_adds_up(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert sweep(data_dir, out, 2) == 0
    first = {t.number: t.datetime_start for t in load(out)}
    assert len(first) == 2
    assert sweep(data_dir, out, 2) == 0  # same command again: the study already has its 2 trials
    assert len(load(out)) == 2
    assert sweep(data_dir, out, 4) == 0  # a larger target continues the same study
    trials = load(out)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert {t.number: t.datetime_start for t in trials if t.number in first} == first  # not re-run
    for t in trials:
        attrs = t.user_attrs
        assert attrs["params"] == t.values[1] and attrs["val_accuracy"] == t.values[0]
        assert attrs["holdout_accuracy"] is not None and attrs["epochs"] == 1 and attrs["hparams"]
    assert len((out / "trials.csv").read_text().splitlines()) == 5
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "Best model under each parameter budget" in (out / "frontier.md").read_text()
    capsys.readouterr()
    assert sweep(data_dir, out, 4, "--max-params", "5000") == 1  # other settings must not mix into the study
    assert "other settings" in one_error_line(capsys)


def test_two_long_lived_workers_share_the_sqlite_study(data_dir: Path, tmp_path: Path) -> None:
    """--workers 2: this process and one spawned worker each run several trials (no process per trial),
    batches of 2 share an architecture, and the study reaches its target (two workers that both start a
    last batch at once may add one trial more: no worker starts one once running + counted reach the target)."""
    out = tmp_path / "out"
    # 16 trials of 3 epochs: enough work for the spawned worker to start and join in
    assert sweep(data_dir, out, 16, "--workers", "2", "--batch", "2", "--pruner", "none", "--epochs", "3") == 0
    trials = load(out)
    assert 16 <= len(trials) <= 17 and all(t.state.name == "COMPLETE" for t in trials)
    by_worker: dict[str, list[int]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    # (with 8 one-epoch trials CI once saw the spawned worker, still importing torch, get only 1 of 9;
    # with this much work it got 4-6 of 16 in two runs here, and 1 on a machine with 4 other busy processes)
    assert len(by_worker) == 2
    arch = {n: tuple(t.params.get(k) for k in space.ARCH_KNOBS["frontier"]) for n, t in enumerate(trials)}
    assert any(arch[a] == arch[a + 1] for a in range(len(trials) - 1))  # a batch shares its architecture


def test_a_batch_shares_its_trials_time_caps_and_never_passes_the_deadline() -> None:
    import time as clock

    from sweep.budget import Budget
    from sweep.worker import Runner

    runner = Runner(None, [], Budget(), space.FORMATS, trial_seconds=10.0)
    assert runner._time_cap(1) == 10.0 and runner._time_cap(8) == 80.0  # 8 trials share one wall clock
    runner.deadline = clock.monotonic() + 30
    assert 28 < runner._time_cap(8) <= 30
    runner.deadline = clock.monotonic()
    with pytest.raises(optuna.TrialPruned, match="no time left"):
        runner._time_cap(1)


def test_budget_caps_dendrites_before_training() -> None:
    from block.configs import run_config as configs
    from block.params import parse_args

    hp = {
        "model_format": "gd",
        "conv_type": "conv1d",
        "conv_layers": 2,
        "linear_layers": 1,
        "width_mult": 1.0,
        "growth": "doubling",
        "dropout": 0.1,
        "input_noise": 0.0,
        "lr_mult": 1,
        "patience": 5,
        "max_dendrites": 4,
        "improvement_threshold": 0.0,
        "init_multiplier": 0.01,
        "dendrite_activation": "tanh",
        "perforate": "all",
    }
    cfgs = configs(parse_args(["--data-directory", "d", "--out-directory", "o", *space.to_argv(hp)]), 650, 3)
    unlimited = budget.plan(cfgs, budget.Budget())
    assert unlimited.base_params == 1347 and unlimited.max_dendrites == 4  # ei-default-sized base
    two = budget.plan(
        cfgs, budget.Budget(4122)
    )  # 2 dendrites on every layer, U counted: 4,122 (bench/RESULTS.md)
    assert (two.max_dendrites, two.bound_params) == (2, 4122)
    assert budget.plan(cfgs, budget.Budget(4121)).max_dendrites == 1
    assert budget.plan(cfgs, budget.Budget(1346)).max_dendrites is None
    from block.sizing import FLASH_SLACK, device_costs

    full = device_costs(cfgs, 4)["flash_bytes"]  # the int8 file at 4 dendrites, measured on the built model
    roomy = budget.plan(cfgs, budget.Budget(flash_bytes=round(full * (1 + FLASH_SLACK)) + 1))
    assert roomy.max_dendrites == 4 and roomy.device["flash_bytes"] == full
    smaller = round(device_costs(cfgs, 2)["flash_bytes"] * (1 + FLASH_SLACK)) + 1
    assert budget.plan(cfgs, budget.Budget(flash_bytes=smaller)).max_dendrites == 2
    assert budget.plan(cfgs, budget.Budget(flash_bytes=smaller, params=4121)).max_dendrites == 1


def test_budget_prunes_before_training_and_holds(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert sweep(data_dir, out, 3, "--max-params", "3000") == 0
    trials = load(out)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 3
    assert all(t.user_attrs["params"] <= t.user_attrs["bound_params"] <= 3000 for t in done)
    for t in trials:
        if t.state.name == "PRUNED":
            assert "epochs" not in t.user_attrs  # never trained
            assert "budget" in t.user_attrs["reason"]
    rows = report.trial_rows(trials)
    assert {r["state"] for r in rows} <= {"COMPLETE", "SKIPPED"}  # one word per kind of stop, as in the log


def test_impossible_budget_fails_at_once(data_dir: Path, tmp_path: Path, capsys) -> None:
    assert sweep(data_dir, tmp_path / "out", 3, "--max-params", "10") == 1
    assert "no model of the search space fits" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--formats", "traditional,dendritic"], "unknown model format dendritic"),
        (["--trials", "0"], "--trials"),
        (["--storage", "bogus://nowhere/db"], "bad storage URL"),
        (["--storage", "postgresql+nosuchdriver://u@localhost/db"], "cannot open storage"),
        (
            ["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
            "cannot open storage postgresql+psycopg2://u:***@",
        ),
        (["--space", "tiny"], "invalid choice: 'tiny'"),
        (["--", "--batch-sise", "8"], "unknown block flags"),
    ],
)
def test_bad_options_give_one_error_line(data_dir: Path, tmp_path: Path, capsys, argv, message) -> None:
    trials = [] if "--trials" in argv else ["--trials", "2"]
    code = main(["--data-directory", str(data_dir), "--out-directory", str(tmp_path / "o"), *trials, *argv])
    assert code in (1, 2)
    assert message in one_error_line(capsys)


def test_unwritable_out_dir_and_missing_data(data_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("x")
    assert sweep(data_dir, tmp_path / "a-file" / "out", 2) == 1
    assert "not writable" in one_error_line(capsys)
    assert sweep(tmp_path / "nothing-here", tmp_path / "out", 2) == 1
    assert "missing data directory" in one_error_line(capsys)


def test_cli_process_exits_with_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep",
            "--data-directory",
            str(tmp_path),
            "--out-directory",
            str(tmp_path / "o"),
            "--trials",
            "3",
            "--formats",
            "gd,nope",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = "ERR: argument --formats: unknown model format nope (choose from traditional, gd, cc)"
    assert result.stderr.strip().splitlines() == [expected]


def test_studio_hook_searches_then_returns_best_args(data_dir: Path) -> None:
    from block.data import load_ei_data
    from block.params import parse_args
    from sweep import best_args

    args = parse_args(
        [
            "--data-directory",
            str(data_dir),
            "--out-directory",
            "unused",
            "--search-trials",
            "3",
            "--max-params",
            "3000",
            "--epochs",
            "1",
        ]
    )
    data = load_ei_data(data_dir)
    lines: list[str] = []
    chosen, data2 = best_args(args, data, lines.append)
    assert chosen.epochs == 1 and chosen.max_params == 3000
    assert 0 < data2.max_training_seconds < data.max_training_seconds == 3600
    trials = [line for line in lines if line.startswith("trial ") and "params" in line and "skipped" not in line]
    assert len(trials) == 3 and trials[0].startswith("trial 0: ") and "[the default" in trials[0]
    summary = [line for line in lines if line.startswith("search: ")]
    assert len(summary) == 1 and summary[0].startswith(("search: kept the default", "search: picked trial"))
    if summary[0].startswith("search: picked"):  # a searched architecture, within the budget as it stands
        from block.configs import run_config as configs

        assert chosen.model_preset == "custom" and chosen.sized_by_search
        assert budget.plan(configs(chosen, data.n_features, data.n_classes), budget.Budget()).bound_params <= 3000
    else:
        assert chosen is args
    # A limit too short for any trial: the search stops launching trials and says so in one line.
    data.info["maxTrainingTimeSeconds"] = 1
    with pytest.raises(SweepError, match="no trial finished"):
        best_args(args, data, lines.append)


def test_studio_search_auto_runs_as_many_trials_as_fit(data_dir: Path) -> None:
    """--search-trials auto: batches go on until the next would pass 3/4 of the limit, then stop."""
    from dataclasses import replace

    from block.data import load_ei_data
    from block.params import parse_args
    from sweep import best_args
    from sweep.studio import SEARCH_SHARE

    argv = ["--data-directory", str(data_dir), "--out-directory", "unused", "--search-trials", "auto"]
    # no budget (so no size floor); 40 s: the search also measures each trained shape on the device (the first
    # measure imports TensorFlow) and keeps a third of its time to confirm its best on fresh seeds
    args = parse_args([*argv, "--epochs", "1", "--max-params", "0"])
    data = load_ei_data(data_dir)
    data = replace(data, info={**data.info, "maxTrainingTimeSeconds": 40})
    lines: list[str] = []
    t0 = time.monotonic()
    _, data2 = best_args(args, data, lines.append)
    spent = time.monotonic() - t0
    trials = sum(line.startswith("trial ") and " val " in line for line in lines)
    assert trials > 8  # more than one batch of 8
    assert spent <= SEARCH_SHARE * 40 + 8  # a batch or confirmation may overrun its estimate on a busy machine
    assert any("the next batch would not fit" in line for line in lines)
    assert data2.max_training_seconds == pytest.approx(40 - spent, abs=1.0)
    with pytest.raises(SweepError, match="needs a time limit"):
        best_args(args, replace(data, info={}), lines.append)


def test_formats_are_balanced_and_retries_counted_once() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=SweepSampler("random", 0))
    for _ in range(6):
        trial = study.ask()
        space.suggest(trial, space.FORMATS)
        study.tell(trial, [0.5, 100.0])
    formats = [t.params["model_format"] for t in study.trials]
    assert sorted(formats) == sorted(space.FORMATS * 2)
    assert len({space.describe(t.params | {"model_format": "traditional"}) for t in study.trials}) == 6
    trial = study.ask()  # a trial interrupted mid-run: re-queued like a dead worker's trial
    space.suggest(trial, space.FORMATS)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    requeue(study, [trial.number])
    count = tally(study.get_trials())
    assert (count.complete, count.retried, count.waiting, count.failed, count.counted) == (6, 1, 1, 0, 6)
    waiting = study.get_trials(states=[optuna.trial.TrialState.WAITING])[0]
    assert waiting.params == trial.params and waiting.system_attrs["retry_history"] == [trial.number]


def test_pareto_front_and_best_pick() -> None:
    rows = [
        {
            "number": i,
            "state": "COMPLETE",
            "params": p,
            "val_accuracy": a,
            "holdout_accuracy": h,
            "dendrites": 0,
            "model_format": f,
            "argv": "",
        }
        for i, (p, a, h, f) in enumerate(
            [
                (100, 0.80, 0.7, "gd"),
                (200, 0.80, 0.9, "gd"),
                (300, 0.90, 0.8, "cc"),
                (50, 0.60, 0.6, "traditional"),
                (300, 0.90, 0.85, "traditional"),
            ]
        )
    ]
    assert [r["number"] for r in report.pareto_front(rows)] == [3, 0, 2]
    assert report.pick_best(rows)["number"] == 2  # tie on accuracy and params: the earlier trial
    assert report.pick_best(rows, max_params=250)["number"] == 0  # never picks on holdout (#1 has 0.9 there)
    text = report.frontier_markdown(rows, {"n_val": 100, "n_holdout": 100})
    assert "| 250 |" in text and "| any |" in text


@pytest.mark.slow
def test_export_best_and_train_py_search_write_models_within_budget(data_dir: Path, tmp_path: Path) -> None:
    """Both exits of the search end in train.py's own pipeline: `--export-best` and `train.py --search-trials`."""
    import json

    out = tmp_path / "sweep"
    assert sweep(data_dir, out, 2, "--max-params", "3000", "--export-best") == 0
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    best = report.pick_best(report.trial_rows(load(out)))
    assert metrics["params"] == best["params"] <= 3000
    assert (out / "best" / "model_quantized_int8_io.tflite").is_file()

    studio = tmp_path / "studio"
    cmd = [
        sys.executable,
        "train.py",
        "--data-directory",
        str(data_dir),
        "--out-directory",
        str(studio),
        "--search-trials",
        "2",
        "--max-params",
        "3000",
        "--epochs",
        "1",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "architecture search:" in result.stdout
    assert json.loads((studio / "metrics.json").read_text())["params"] <= 3000


# ---- a busy machine (issue 21): late heartbeats, trials finished elsewhere, a worker that dies ----

def _heartbeat_study(tmp_path: Path) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    from sweep.study import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat=1)  # grace period: 4 s
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"]), storage


def _age_heartbeat(tmp_path: Path, trial_id: int, seconds: int = 3600) -> None:
    """Make the trial's last heartbeat `seconds` old, as on a machine too busy to beat (no sleeping)."""
    import sqlite3

    with sqlite3.connect(tmp_path / "hb.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', ?) WHERE trial_id = ?",
                   (f"-{seconds} seconds", trial_id))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_late_heartbeat_never_fails_a_live_local_trial(tmp_path: Path) -> None:
    from sweep.study import WORKER, fail_stale_trials

    study, storage = _heartbeat_study(tmp_path)
    live, dead, remote = (study.ask() for _ in range(3))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that has exited
    for trial, worker in ((live, WORKER), (dead, f"{WORKER.rpartition(':')[0]}:{gone}"),
                          (remote, "another-machine:1")):
        trial.set_user_attr("worker", worker)
        storage.record_heartbeat(trial._trial_id)
        _age_heartbeat(tmp_path, trial._trial_id)
    assert sorted(storage._get_stale_trial_ids(study._study_id)) == sorted(
        t._trial_id for t in (live, dead, remote))  # all three are late
    assert sorted(fail_stale_trials(study)) == sorted([dead.number, remote.number])
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[live.number] == "RUNNING" and states[dead.number] == states[remote.number] == "FAIL"
    assert storage._get_stale_trial_ids(study._study_id) == []  # the live one got a beat on its behalf
    assert tally(study.get_trials()).waiting == 2  # the other two are queued again


def test_the_heartbeat_outlives_a_storage_error() -> None:
    """Optuna's heartbeat thread dies on the first storage error (e.g. SQLite's `database is locked`)."""
    import threading

    from sweep.study import Heartbeat

    class Flaky:
        calls = 0
        beat = threading.Event()

        def get_heartbeat_interval(self) -> float:
            return 0.001

        def record_heartbeat(self, trial_id: int) -> None:
            Flaky.calls += 1
            if Flaky.calls <= 2:
                raise RuntimeError("database is locked")
            Flaky.beat.set()

    with Heartbeat(Flaky(), 1):
        assert Flaky.beat.wait(60)
    assert Flaky.calls >= 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_whose_trial_was_finished_elsewhere_carries_on(tmp_path: Path) -> None:
    from sweep.budget import Budget
    from sweep.worker import Runner

    study, storage = _heartbeat_study(tmp_path)
    lines: list[str] = []
    runner = Runner(None, [], Budget(0, 0), space.FORMATS, log=lines.append)
    trial = study.ask()
    hp = space.suggest(trial, space.FORMATS)
    runner.running.append(trial)
    storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)  # failed elsewhere
    runner._tell(study, trial, hp, None, optuna.TrialPruned("validation accuracy behind its size"))
    assert runner.running == [] and study.get_trials()[0].state.name == "FAIL"
    assert len(lines) == 1 and lines[0].startswith(f"trial {trial.number}: already fail elsewhere")


def test_the_reports_are_written_when_a_worker_dies(data_dir: Path, tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    from sweep import worker

    real_work = worker.work

    def dies_after_its_trials(study, runner, target, poll, **kw):
        real_work(study, runner, 2, poll, **kw)
        raise RuntimeError("worker died")

    monkeypatch.setattr(worker, "work", dies_after_its_trials)
    out = tmp_path / "out"
    assert sweep(data_dir, out, 4, "--space", "paper") == 1  # (the frontier space queues 4 starting trials)
    assert "worker died" in one_error_line(capsys)
    assert len((out / "trials.csv").read_text().splitlines()) == 3  # the 2 finished trials
    assert (out / "pareto.png").exists() and (out / "frontier.md").exists()


def test_the_header_is_printed_once_and_says_how_trials_count(data_dir: Path, tmp_path: Path, capsys) -> None:
    assert sweep(data_dir, tmp_path / "out", 2) == 0
    out = capsys.readouterr().out.splitlines()
    headers = [line for line in out if line.startswith("sweep: study ")]
    assert len(headers) == 1 and "target 2 trials (complete, stopped early or failed" in headers[0]
