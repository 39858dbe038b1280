"""`python -m sweep ...`: see sweep/cli.py."""

import sys

from .cli import main, terminate_on_sigterm

terminate_on_sigterm()
sys.exit(main())
