"""Two processes on CPU (gloo) distil a small synthetic graph under DDP.

With fanout -1 every seed sees its full neighbourhood, so sampling adds no randomness; 2 ranks x 8
seeds per step must then give the gradient of 1 process x 16 seeds (every loss term is a mean or a
scaled sum over seeds, see ``mskd.scale``). Tolerance: parameters equal to 1e-4 after training
(float32 gradients summed in another order, amplified a little by Adam), scores equal.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tree_snapshot
from test_distill import SMALL, _dataset, _teachers

from mskd.cli import main
from mskd.config import DistillConfig, RunConfig, ScaleConfig, TrainConfig
from mskd.context import RunContext
from mskd.distill import train_student

CPU = torch.device("cpu")


def _config(batch_size: int) -> RunConfig:
    return RunConfig(
        dataset="toy", teachers=tuple(dataclasses.replace(SMALL, hidden_layers=d) for d in (1, 2)),
        student=SMALL, student_train=TrainConfig(epochs=4, patience=10),
        distill=DistillConfig(method="mskd"),
        scale=ScaleConfig("neighbor", (-1,), batch_size=batch_size),
    )


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = _dataset()
        student, details = train_student(_config(8), data, _teachers(data, depths=(1, 2)),
                                         Path(out) / f"rank{rank}", RunContext(CPU, quiet=True))
        flat = _flat(student.model)
        every = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(every, flat)
        if rank == 0:
            torch.save({"params": every, "history": details["history"], "val": student.val,
                        "test": student.test, "scale": details["scale"]},
                       Path(out) / "result.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "result.pt", weights_only=False)
    # Every rank holds the same model (DDP kept them in step through every update).
    assert torch.equal(got["params"][0], got["params"][1])
    assert got["scale"]["processes"] == 2
    hist = got["history"]
    assert hist[-1]["task"] < hist[0]["task"]
    # Only rank 0 writes the checkpoint.
    assert (tmp_path / "rank0" / "student-mskd.pt").exists()
    assert not (tmp_path / "rank1" / "student-mskd.pt").exists()

    data = _dataset()
    single, details = train_student(_config(16), data, _teachers(data, depths=(1, 2)),
                                    tmp_path / "single", RunContext(CPU, quiet=True))
    torch.testing.assert_close(got["params"][0], _flat(single.model), atol=1e-4, rtol=1e-4)
    assert got["val"] == pytest.approx(single.val, abs=1e-6)
    assert got["test"] == pytest.approx(single.test, abs=1e-6)
    for a, b in zip(hist, details["history"]):
        assert a["val"] == pytest.approx(b["val"], abs=1e-6)


SAMPLED = ["--teacher-depths", "1", "--sampler", "neighbor", "--fanout", "4", "--batch-size", "32",
           "--quiet", "--device", "cpu"]


def _nproc_2(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mskd.cli", *argv, *SAMPLED, "--nproc", "2"],
        check=False, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


@pytest.mark.slow
def test_cli_nproc_2_launches_torchrun(tiny_npz, tmp_path):
    out = tmp_path / "run"
    proc = _nproc_2("distill", "--dataset", str(tiny_npz), "--epochs", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2 processes)" in proc.stdout
    assert (out / "results.json").exists() and (out / "student-mskd.pt").exists()


@pytest.mark.parametrize("case", ["finished-run", "bad-data"])
def test_nproc_2_errors_are_agreed_and_reported_once(tiny_npz, tmp_path, case):
    # Rank 0 alone finds a finished run; every rank finds bad data. Either way the other rank
    # must not die waiting in a collective (a gloo traceback, exit 1), nor print the error again.
    out = tmp_path / "run"
    if case == "finished-run":
        assert main(["distill", "--dataset", str(tiny_npz), "--epochs", "1", "--out", str(out),
                     *SAMPLED]) == 0
        dataset, expected = tiny_npz, f"mskd: error: {out} already holds a finished run"
    else:
        dataset = tmp_path / "bad.npz"
        dataset.write_text("hello")
        expected = f"mskd: error: {dataset} is not a readable .npz file"
    before = tree_snapshot(tmp_path)
    proc = _nproc_2("distill", "--dataset", str(dataset), "--epochs", "1", "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]
    assert proc.stdout == ""
    assert tree_snapshot(tmp_path) == before
