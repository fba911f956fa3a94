"""Multi-process training with ``torch.distributed``: one process per device, DDP over the student.

A run is started by ``torchrun --nproc-per-node N -m mskd.cli distill ...`` (or ``mskd distill
--nproc N``, which calls torchrun's own launcher in-process). torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`setup` joins the process group
with gloo on CPU and nccl on GPU. Everything else is torch's: ``DistributedDataParallel`` averages
gradients, collectives keep metrics and stopping decisions equal on every rank. Only rank 0
writes files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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

    Returns 0 when every worker succeeded, else 1 (the workers print their own errors).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    # Otherwise argparse reads mskd's --nproc as an abbreviation of torchrun's --nproc-per-node.
    parser.allow_abbrev = False
    args = parser.parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "mskd.cli", *argv])
    try:
        run(args)
    except ChildFailedError:
        return 1
    return 0
