"""`python -m sweep ...`: see sweep/cli.py."""

import signal
import sys

from .cli import main


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler) ends a worker like Ctrl-C: its trial is re-queued


signal.signal(signal.SIGTERM, _interrupt)
sys.exit(main())
