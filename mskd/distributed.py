"""Multi-process training with ``torch.distributed``: one process per device, DDP over the student.

A run is started by ``torchrun --nproc-per-node N -m mskd.cli distill ...`` (or ``mskd distill
--nproc N``, which calls torchrun's own launcher in-process). torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`setup` joins the process group
with gloo on CPU and nccl on GPU. Everything else is torch's: ``DistributedDataParallel`` averages
gradients, collectives keep metrics and stopping decisions equal on every rank. Only rank 0
writes files.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by torchrun as one of several workers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> None:
    """Join the process group of a torchrun launch (no-op for a single process)."""
    if not launched() or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's value of a picklable object, on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone: its value on every rank, or its exception raised on every
    rank. The other ranks would otherwise wait in their next collective for a rank 0 that has
    stopped, and die there with a gloo or nccl traceback instead of the error."""
    if not dist.is_initialized():
        return fn()
    box: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - any failure must reach the other ranks
            error = e
            box[0] = ("error", _portable(e))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise error if error is not None else value
    return value


def on_every_rank(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank, its value kept where it was computed; if it fails on any rank,
    the failure of the lowest such rank is raised on every rank (the same error everywhere, so
    the exit code agrees and rank 0 reports it)."""
    if not dist.is_initialized():
        return fn()
    value: Any = None
    error: BaseException | None = None
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - any failure must reach the other ranks
        error = e
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, None if error is None else _portable(error))
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise error if error is not None and errors.index(first) == rank() else first
    return value


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (it travels to the other ranks), else a RuntimeError
    with its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - unpicklable attributes, classes defined in functions
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def reporting() -> bool:
    """Whether this process prints errors: rank 0 of a launch, or a single process. Read from
    the environment, so it holds after the process group is gone."""
    return int(os.environ.get("RANK", "0")) == 0


def mean(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise mean over ranks (float64, so equal inputs give back the same floats)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` under DDP when several processes run, else itself."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return module
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m mskd.cli ARGV`` in ``nproc`` local processes with torchrun's launcher.

    Returns 0 when every worker succeeded, else rank 0's exit code (its own error, already
    printed once by rank 0, see :func:`reporting`), or 1 when rank 0 did not fail by itself.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    # Otherwise argparse reads mskd's --nproc as an abbreviation of torchrun's --nproc-per-node.
    parser.allow_abbrev = False
    args = parser.parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "mskd.cli", *argv])
    # The launcher logs every failed worker (and its own state) at length; the workers have
    # already reported the error, once, as mskd's one line.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("torch.distributed")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as e:
        code = next((f.exitcode for r, f in e.failures.items() if r == 0), 1)
        return code if code > 0 else 1
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return 0
