"""`python -m sweep`: multi-objective search (validation accuracy up, deployed params down) over the
paper's KWS sweep space, resumable and shareable between machines through an Optuna RDB storage.

    python -m sweep --data-directory D --out-directory O --trials N [--storage URL] [--study-name S]
        [--space frontier|paper] [--max-params P] [--max-flash-kb K] [--max-ram-kb R] [--max-macs M]
        [--seed S] [--holdout-directory H] [--export-best]
        [--epochs E] [--formats traditional,gd,cc] [--sampler tpe|random] [--heartbeat S]
        [--trial-seconds T] [--workers W] [--batch B] [--pruner halving|median|none]
        [-- BLOCK FLAGS, e.g. --batch-size 64]

--space frontier (default) searches the DS-TCN and conv+FC families and the training recipe, starting from
the block's default run and the frontier's picks; --space paper replays the paper's conv+FC sweep space.
--trials is the study's target: the run (or all workers together) stops when N trials are complete or
failed; re-running the same command continues a study and adds nothing once it has N. Every bad input ends
with one `ERR:` line and exit code 1 (2 for bad options), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .prune import DEFAULT as DEFAULT_PRUNER
from .prune import PRUNERS
from .space import DEFAULT_SPACE, FORMATS, SPACES
from .study import SweepError
from .worker import BATCH

DEFAULT_STUDY = "dendritic-sweep"


def log(msg: str) -> None:
    print(msg, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage + error pair
        raise SweepError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model format {', '.join(unknown) or repr(text)} (choose from {', '.join(FORMATS)})"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sweep", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data-directory", required=True, help="EI data dir (X/Y_split_{train,test}.npy)")
    p.add_argument(
        "--out-directory", required=True, help="study.db, trials.csv, pareto.png, frontier.md, logs/"
    )
    p.add_argument("--trials", required=True, type=_positive_int,
                   help="target number of trials in the study: complete, stopped early or failed ones count, "
                   "skipped ones (over the budget, never trained) do not; no worker starts a trial once the "
                   "trials running and counted reach it, so batches do not round it up")
    p.add_argument(
        "--storage",
        help="RDB URL shared by workers, e.g. postgresql://u:p@host/db (default: sqlite:///OUT/study.db)",
    )
    p.add_argument("--study-name", default=DEFAULT_STUDY)
    p.add_argument("--space", choices=SPACES, default=DEFAULT_SPACE,
                   help="frontier: DS-TCN and conv+FC families with the recipe knobs (sweep/space.py); "
                   "paper: the paper's 800-trial conv+FC space, to replay it")
    p.add_argument("--max-params", type=_positive_int, default=0, help="deployed-parameter budget")
    p.add_argument("--max-flash-kb", type=_positive_float, default=0.0,
                   help="budget on the int8 .tflite file, measured on the built model (block/sizing.py)")
    p.add_argument("--max-ram-kb", type=_positive_float, default=0.0,
                   help="budget on the TFLite Micro arena of the int8 model, measured in the interpreter")
    p.add_argument("--max-macs", type=_positive_int, default=0, help="budget on conv/FC MACs per inference")
    p.add_argument("--seed", type=int, default=3, help="training seed of every trial and sampler seed")
    p.add_argument("--holdout-directory", help="X_test.npy/Y_test.npy: reported per trial, never selected on")
    p.add_argument(
        "--export-best", action="store_true", help="retrain and export the best model into OUT/best"
    )
    p.add_argument("--epochs", type=_positive_int, default=60, help="epoch cap per trial")
    p.add_argument("--formats", type=_formats, default=FORMATS, help="comma list of model formats to search")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument(
        "--heartbeat",
        type=_positive_int,
        default=30,
        help="seconds between trial heartbeats; a trial silent for 4x this is failed and retried",
    )
    p.add_argument(
        "--trial-seconds",
        type=_positive_float,
        default=600.0,
        help="training time cap per trial (slower architectures are pruned after epoch 1)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=2,
        help="worker processes on this machine, all on one study (one core each; default 2: a 2-core box). "
        "More machines: start this command on each with the same --storage",
    )
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        default=DEFAULT_PRUNER,
        help="stop trials whose validation curve is behind trials of their size (sweep/prune.py): halving keeps "
        "the top third at epochs 10, 30, 90; median stops those below the median from epoch 10; none: off",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=BATCH,
        help="trials of one architecture each worker trains together as one batched network "
        "(kws/lockstep.py); 1: one trial at a time",
    )
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)  # a --workers child
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Sweep options, and the block flags after `--` (passed to every trial as train.py flags)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return build_parser().parse_args(argv[:cut]), argv[cut + 1 :]


def block_argv(opts: argparse.Namespace, out: Path, extra: list[str]) -> list[str]:
    """train.py flags every trial starts from; the searched values are appended after them (and win)."""
    argv = [
        "--data-directory",
        opts.data_directory,
        "--out-directory",
        str(out),
        "--epochs",
        str(opts.epochs),
        "--seed",
        str(opts.seed),
    ]
    if opts.holdout_directory:
        argv += ["--holdout-directory", opts.holdout_directory]
    return argv + extra


def check_block_flags(argv: list[str]):
    """Parse the base flags once, so a typo after `--` fails now rather than warning in every trial."""
    from block.params import build_parser as block_parser
    from block.params import load_parameters

    parser = block_parser(load_parameters())
    parser.error = lambda message: (_ for _ in ()).throw(SweepError(f"block flags after --: {message}"))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise SweepError(f"unknown block flags after --: {' '.join(unknown)}")
    return args


def terminate_on_sigterm() -> None:
    """SIGTERM (kill, a scheduler, the parent worker) ends a worker like Ctrl-C: it raises Terminated (a
    KeyboardInterrupt), so the running trials are re-queued."""
    import signal

    from kws.errors import Terminated

    def interrupt(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, interrupt)


def _worker_main(argv: list[str]) -> None:
    """A --workers child: the same command, one worker, no reports."""
    terminate_on_sigterm()
    sys.exit(main([*argv, "--workers", "1", "--worker-only"]))


def start_workers(n: int, argv: list[str]) -> list:
    """n more worker processes on this study (spawned: a fresh interpreter each, no forked torch state)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(argv,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def stop_workers(procs: list, terminate: bool = False) -> None:
    """Wait for the children to run out of trials; `terminate` (this worker stopped on an error or Ctrl-C)
    SIGTERMs them first, so they re-queue their running trials."""
    if terminate:
        for p in procs:
            if p.is_alive():
                p.terminate()
    for p in procs:
        p.join()


def run(opts: argparse.Namespace, extra: list[str], argv: list[str]) -> int:
    from block.data import load_ei_data
    from export.staging import writable_out_dir

    from .budget import Budget
    from .prune import make_pruner
    from .report import pick_best, write_reports
    from .study import (
        SweepSampler,
        check_url,
        first_line,
        open_storage,
        open_study,
        redact,
        storage_url,
        tally,
    )
    from .worker import Runner, work

    out = writable_out_dir(opts.out_directory)
    url = storage_url(opts.storage, out)
    check_url(url)
    base = block_argv(opts, out, extra)
    block = check_block_flags(base)
    data = load_ei_data(opts.data_directory, None, opts.holdout_directory, block.mfcc_coefficients)
    budget = Budget.from_kb(opts.max_params, opts.max_flash_kb, opts.max_ram_kb, opts.max_macs)
    storage = open_storage(url, opts.heartbeat)
    runner = Runner(
        data,
        base,
        budget,
        opts.formats,
        opts.trial_seconds,
        None,
        out / "logs",
        log,
        pruner=make_pruner(opts.pruner),
        storage=storage,
        study_name=opts.study_name,
        batch=opts.batch,
        space=opts.space,
    )
    if budget:
        runner.check_budget()
    settings = {
        "classes": data.classes,
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "n_holdout": None if data.x_holdout is None else len(data.x_holdout),
        "features": data.n_features,
        "epochs": opts.epochs,
        "seed": opts.seed,
        "max_params": opts.max_params,
        "max_flash_kb": opts.max_flash_kb,
        "max_ram_kb": opts.max_ram_kb,
        "max_macs": opts.max_macs,
        "space": opts.space,
        "formats": list(opts.formats),
        "block_flags": extra,
        "trial_seconds": opts.trial_seconds,
        "pruner": opts.pruner,
    }
    study = open_study(
        storage,
        opts.study_name,
        SweepSampler(opts.sampler, opts.seed, opts.formats),
        settings,
    )
    t0 = time.monotonic()
    meta = {
        "title": f"{Path(opts.data_directory).name}, study {opts.study_name}",
        "budget": str(budget),
        "epochs": opts.epochs,
        "n_val": len(data.x_val),
        "n_holdout": settings["n_holdout"],
    }

    drawn = [time.monotonic()]

    def reports(final: bool = False) -> list[dict]:
        """trials.csv after every trial; the figure and frontier.md at most once a minute, and at the end."""
        figures = final or time.monotonic() - drawn[0] > 60
        if figures:
            drawn[0] = time.monotonic()
        return write_reports(study.get_trials(deepcopy=False), out, meta, opts.max_params, figures)

    if opts.worker_only:
        work(study, runner, opts.trials, poll=opts.heartbeat)
        return 0
    if not study.trials and opts.space == "frontier":  # a new study starts from the default and the frontier
        from .studio import enqueue_start

        enqueue_start(study, block, data, budget, opts.trials)
    log(
        f"sweep: study {opts.study_name!r} in {redact(url)}: target {opts.trials} trials (complete, stopped "
        f"early or failed; {opts.workers} worker(s) train batches of up to {opts.batch} and start no trial past "
        f"the target), formats {','.join(opts.formats)}, budget {budget}, {opts.epochs} epochs max per trial, "
        f"sampler {opts.sampler}"
    )
    children = start_workers(opts.workers - 1, argv)
    try:
        work(study, runner, opts.trials, poll=opts.heartbeat, after_trial=reports)
    except BaseException:
        stop_workers(children, terminate=True)
        raise
    else:
        stop_workers(children)
    finally:  # the trials that finished get their reports, also when this worker stopped on an error
        try:
            rows = reports(final=True)
        except Exception as e:  # noqa: BLE001 - never hide the error that got us here behind this one
            log(f"sweep: could not write the reports to {out}: {first_line(e)}")
            rows = []
    count = tally(study.get_trials(deepcopy=False))
    log(
        f"sweep: {count} after {time.monotonic() - t0:.0f}s ({opts.workers} workers here); wrote trials.csv, pareto.png, "
        f"frontier.md to {out}"
    )
    best = pick_best(rows, opts.max_params)
    if best is None:
        raise SweepError("no trial completed, so there is no best model")
    log(
        f"best: trial {best['number']} val {best['val_accuracy']:.4f}, {best['params']:,} params, "
        f"{best['dendrites']} dendrites: {best['argv']}"
    )
    if not opts.export_best:
        return 0
    from block.params import parse_args
    from block.pipeline import run as run_block

    best_out = out / "best"
    log(f"export-best: retraining trial {best['number']} with train.py's pipeline into {best_out}")
    return run_block(parse_args(block_argv(opts, best_out, extra) + best["argv"].split()), log=log)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 bad input or failure, 2 bad options, 130 interrupted, 143 SIGTERM."""
    os.environ.setdefault(
        "OMP_NUM_THREADS", "1"
    )  # one sweep worker = one core; torch threads are set per fit
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else argv
    stage = 2
    try:
        opts, extra = parse(argv)
        stage = 1
        return run(opts, extra, argv)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as Terminated (sweep/__main__.py)
        from kws.errors import Terminated

        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(
            f"ERR: {what} (the running trial is queued again; re-run the command to continue)",
            file=sys.stderr,
            flush=True,
        )
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # the contract: one readable line, never a traceback
        if os.environ.get("DENDRITIC_DEBUG"):
            raise
        from kws.errors import error_line

        print(f"ERR: {error_line(e)}", file=sys.stderr, flush=True)
        return stage
