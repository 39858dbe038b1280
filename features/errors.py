"""The one exception type the features CLIs turn into a one-line `error:` message."""


class InputError(Exception):
    """Bad user input (audio, folder, options): reported without a traceback, unlike a bug."""
