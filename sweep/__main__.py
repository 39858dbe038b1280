"""`python -m sweep ...`: see sweep/cli.py."""

import signal
import sys

from dendritic.errors import Terminated

from .cli import main


def _interrupt(signum, frame) -> None:
    raise Terminated  # SIGTERM (kill, a scheduler) ends a worker like Ctrl-C (a KeyboardInterrupt): re-queued


signal.signal(signal.SIGTERM, _interrupt)
sys.exit(main())
