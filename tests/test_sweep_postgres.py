"""Two `python -m sweep` workers share one study on a real, throwaway PostgreSQL server; one is SIGKILLed
mid-trial. The survivor must fail the dead worker's trial by its missing heartbeat, re-run it once (Optuna's
retry callback), finish the study, and every trial must be accounted for: complete, pruned by the budget,
or failed-and-retried, with no retry run twice.

The fixture installs Debian's postgresql when initdb is missing (root only, else skip), then runs initdb and
pg_ctl as the postgres user on a temp dir and a free loopback port; the cluster is removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from sweep.study import retried_numbers, with_driver

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "data"
STUDY = "pg-kill-test"
TRIALS = 8
BATCH = 2  # trials per stacked batch: a killed worker leaves up to this many trials to retry
HEARTBEAT = 2  # seconds; a worker silent for 4 beats (8 s) is failed and its trial re-queued


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def install_postgres() -> Path:
    """Debian's server package, once (apt-get is idempotent); only root can, others skip."""
    if pg_bin() is None:
        if os.geteuid() != 0:
            pytest.skip("PostgreSQL is not installed and installing it needs root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            "apt-get update -qq && apt-get install -y -qq postgresql",
            shell=True,
            check=True,
            env=env,
            timeout=900,
        )
    found = pg_bin()
    assert found is not None, "postgresql installed but initdb not found"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = install_postgres()
    as_pg: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account on a dir it owns
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_pg = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*as_pg, *cmd], check=True, capture_output=True, text=True, timeout=120, **kw)

    pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
    try:
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweep")
        yield f"postgresql://postgres@127.0.0.1:{port}/sweep"
    finally:
        subprocess.run(
            [*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def start_worker(url: str, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "--data-directory",
        str(DEMO),
        "--out-directory",
        str(out),
        "--trials",
        str(TRIALS),
        "--epochs",
        "8",
        "--max-params",
        "20000",
        "--storage",
        url,
        "--study-name",
        STUDY,
        "--heartbeat",
        str(HEARTBEAT),
        "--workers",
        "1",
        "--batch",
        str(BATCH),
        "--holdout-directory",
        str(DEMO / "holdout"),
    ]
    log = (out / "worker.log").open("w")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def trials(storage: optuna.storages.RDBStorage) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    except KeyError:  # the study is not created yet
        return []


def training_trial_of(storage: optuna.storages.RDBStorage, pid: int) -> int | None:
    """The trial the worker is training now (its `argv` attr is written just before training starts)."""
    for t in trials(storage):
        if (
            t.state.name == "RUNNING"
            and t.user_attrs.get("worker", "").endswith(f":{pid}")
            and "argv" in t.user_attrs
        ):
            return t.number
    return None


def kill_mid_trial(
    storage: optuna.storages.RDBStorage, worker: subprocess.Popen, timeout: float = 300
) -> int:
    """SIGKILL the worker while the database shows it training a trial. It is frozen (SIGSTOP) before the
    check, so the trial cannot finish between the check and the kill."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert worker.poll() is None, "worker A ended before it could be killed mid-trial"
        if training_trial_of(storage, worker.pid) is not None:
            os.kill(worker.pid, signal.SIGSTOP)
            number = training_trial_of(storage, worker.pid)
            if number is not None:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
                return number
            os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("worker A never ran a trial")


def test_killed_worker_trial_is_failed_retried_once_and_nothing_lost(
    postgres_url: str, tmp_path: Path
) -> None:
    storage = optuna.storages.RDBStorage(with_driver(postgres_url))  # one engine for all the polling
    a = start_worker(postgres_url, tmp_path / "a")
    b = start_worker(postgres_url, tmp_path / "b")
    try:
        killed = kill_mid_trial(storage, a)
        assert b.wait(timeout=600) == 0, (tmp_path / "b" / "worker.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    log_b = (tmp_path / "b" / "worker.log").read_text()
    all_trials = trials(storage)
    by_number = {t.number: t for t in all_trials}
    assert len(by_number) == len(all_trials)  # unique trial numbers

    # The killed trial was failed by its heartbeat and re-run exactly once, to completion.
    assert by_number[killed].state.name == "FAIL"
    retries = [t for t in all_trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1, [(t.number, t.state.name) for t in retries]
    assert retries[0].state.name == "COMPLETE" and retries[0].params == by_number[killed].params
    assert f"trial {retries[0].number}: val" in log_b  # the survivor ran it

    # Every trial is accounted for; no retry chain has two completed runs.
    retried = retried_numbers(all_trials)
    for t in all_trials:
        assert t.state.name in ("COMPLETE", "PRUNED") or (t.state.name == "FAIL" and t.number in retried), (
            t.number,
            t.state.name,
            t.user_attrs.get("error"),
        )
    origins = Counter(
        t.system_attrs["failed_trial"]
        for t in all_trials
        if t.state.name == "COMPLETE" and "failed_trial" in t.system_attrs
    )
    assert all(n == 1 for n in origins.values()), origins
    complete = sum(t.state.name == "COMPLETE" for t in all_trials)
    assert TRIALS <= complete <= TRIALS + BATCH, complete  # two workers may both start the last batch
    assert all(t.state.name not in ("RUNNING", "WAITING") for t in all_trials)
    csv_rows = (tmp_path / "b" / "trials.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(all_trials)
