"""What a user can get wrong, as exception types: the leaf module every layer may import.

An :class:`MskdError` is bad input (an option, a dataset, a checkpoint, a run directory): the CLI
prints it as one line ``mskd: error: ...`` with exit code 2, and the Python API (``mskd.run``,
``mskd.compare``) raises it with the same message. Any other exception that escapes a command is
a bug in mskd, not the user's input, and is reported as one (exit code 1, traceback kept).
"""

from __future__ import annotations


class MskdError(ValueError):
    """Bad input, with a one-line message for the user.

    A ``ValueError`` because each kind below was one before this base existed: code that caught
    ``ValueError`` from them still does.
    """


class UsageError(MskdError):
    """Options that cannot be used together or parsed: an unknown option, a bad value, a
    missing argument."""


class ConfigError(MskdError):
    """An invalid setting of a run (method, schedule, weights, sizes)."""


class DataError(MskdError):
    """A dataset that cannot be found, read or trusted."""


class CheckpointError(MskdError):
    """A checkpoint that cannot be used (unreadable, made for another dataset or settings)."""


class RunDirError(MskdError):
    """A run directory that cannot be used (finished run, in use, other settings)."""
