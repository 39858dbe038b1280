"""The PB library's one error class, so the library stands alone: a caller's own loop gets a plain ValueError
subclass, and the block (kws/errors.py) reports it as a user's `ERR:` line like its own errors."""
from __future__ import annotations


class ConfigError(ValueError):
    """An impossible or inconsistent setting, raised by the configs' `validate()` (one readable line)."""
