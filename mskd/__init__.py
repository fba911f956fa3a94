"""mskd: multi-scale knowledge distillation from multiple graph neural networks.

The data flows one way, and the modules are layered in the same order (lowest first; each imports
only modules before it, ``tests/test_layers.py``): ``errors``; the pure tensor functions
``losses``, ``attention``, ``sparse``, ``convs``; infrastructure ``runs``, ``distributed``,
``sampling``; ``config``; ``ogb_data``, ``data`` (a name becomes a graph); ``plots``;
``inference``, ``models``; ``evaluate``; ``train`` (the loop); ``targets`` (checkpoints, teacher
outputs per step); ``scale`` (mini-batches); ``teachers`` (graphs train teachers); ``distill``
(frozen teachers' targets and labels train the student); ``report``, ``deploy``, ``comparison``,
``bench``; ``options`` (the flags), ``api`` (:func:`run`, :func:`compare`), ``cli`` on top. This
module only re-exports: ``run`` and ``compare`` (the Python API, :mod:`mskd.api`) and
:class:`MskdError`, the base of every error that is the user's input rather than a bug.
"""

import os

# Transparent huge pages for torch's large CPU tensors. A GAT layer on a PPI batch allocates
# message tensors of hundreds of MB per op; with 4 KiB pages, faulting them in cost more kernel
# time than the arithmetic (docs/performance.md: a PPI-like student step 4.1 s -> 2.1 s). torch
# reads the variable once, at its first allocation, so it has to be set before torch is imported;
# setdefault keeps a user's explicit THP_MEM_ALLOC_ENABLE=0.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

from .errors import MskdError

__all__ = ["MskdError", "__version__", "compare", "run"]


def __getattr__(name: str):
    # mskd.run and mskd.compare load torch and every layer: only when first asked for, so that
    # the modules' own ``from . import __version__`` never waits on the layers above them.
    if name in ("run", "compare"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mskd' has no attribute {name!r}")
