"""Edge Impulse learning block entry point: parse, log, run the pipeline (block/pipeline.py), report errors.

Studio runs `python3 -u train.py --data-directory D --out-directory O --info-file F --<param> V ...`
(ei-contract §3). A problem with the user's data or settings prints one `ERR:` line and exits 1 without
leaving model files; anything else is an internal error, printed as `ERR: internal error ...` with the hint
to rerun with DENDRITIC_DEBUG=1 for the traceback. SIGTERM (Studio cancelling the job, `docker stop`) and
SIGINT stop the run at any moment the same way: `ERR: terminated (SIGTERM)` / `ERR: interrupted`, exit 143 /
130, no model files (kws/errors.py `stop_on_signals`). Only the tests import this file.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()  # EI's maxTrainingTimeSeconds covers the whole job, start-up included
    from kws.errors import exit_code  # torch-free, like block.params: `--help` stays instant

    def work() -> int:
        from block.params import defaults_note, parse_args

        args = parse_args(argv)
        log("arguments: " + " ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
        note = defaults_note(args)  # the EI runner passes its own epochs and learning rate: say so
        if note:
            log(note)
        from block.pipeline import run

        search = None
        if args.search_trials:  # 0 = off; N or "auto": the in-Studio architecture search (sweep/studio.py)
            from sweep import best_args as search
        return run(args, search, log, started=started)

    return exit_code(work)  # signal handlers from here on: SIGTERM is an error like any other


if __name__ == "__main__":
    sys.exit(main())
