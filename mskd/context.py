"""What a run is given besides its configuration: the device, what it says and where, and how it
keeps its work (saved training states, starting over, the teacher cache).

One rule for output: progress bars and log lines go to stderr, and none at all with ``quiet``;
results (tables, "results in ...") go to stdout, printed by the command line alone. A run's
settings (:class:`mskd.config.RunConfig`) decide its numbers; nothing here changes them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch


def to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _drop(msg: str) -> None:
    pass


def stderr_log(quiet: bool) -> Callable[[str], None]:
    """Progress and log lines go to stderr (stdout holds results), none with ``quiet``."""
    return _drop if quiet else to_stderr


@dataclass(frozen=True)
class RunContext:
    """How one run (or comparison) executes, passed as one value from the API down to the
    training of teachers and students.

    ``checkpoint_every``: seconds between saved training states (0 = every epoch); ``fresh``
    ignores saved states and finished teachers and starts over (``--force``); ``teacher_cache``
    computes frozen teachers' outputs once (``--no-teacher-cache`` turns it off). Which process of
    a distributed run this is, :mod:`mskd.distributed` says: the process group is the one record
    of it.
    """

    device: torch.device
    quiet: bool = False
    sink: Callable[[str], None] = to_stderr  # where log lines go
    checkpoint_every: float = 30.0
    fresh: bool = False
    teacher_cache: bool = True

    def log(self, msg: str) -> None:
        """A progress or log line: to ``sink``, none when ``quiet``."""
        if not self.quiet:
            self.sink(msg)
