"""The run context: one value for device, log sink, checkpoint policy, force and teacher cache;
and the one output rule (log lines on stderr, none with --quiet; results on stdout)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mskd.cli import main
from mskd.context import RunContext, stderr_log

ARGS = ["--teacher-depths", "1,2", "--epochs", "2", "--device", "cpu"]


def test_log_lines_go_to_the_sink_unless_quiet(capsys):
    seen: list[str] = []
    ctx = RunContext(torch.device("cpu"), sink=seen.append)
    ctx.log("one")
    dataclasses.replace(ctx, quiet=True).log("two")
    assert seen == ["one"]
    RunContext(torch.device("cpu")).log("three")
    stderr_log(False)("four")
    stderr_log(True)("five")
    RunContext(torch.device("cpu"), quiet=True).log("six")
    assert capsys.readouterr() == ("", "three\nfour\n")


def test_a_context_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunContext(torch.device("cpu")).quiet = True


def test_results_go_to_stdout_and_log_lines_to_stderr(tiny_npz, tmp_path, capsys):
    teachers = tmp_path / "teachers"
    assert main(["teachers", "--dataset", str(tiny_npz), "--out", str(tmp_path / "t"),
                 "--teachers", str(teachers), "--quiet", *ARGS]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "kd", "--out", str(out),
                 "--teachers", str(teachers), *ARGS]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[-2:] == ["mean teacher weights: teacher-2=1.000",
                                             f"results in {out / 'results.json'}"]
    assert "reusing" not in printed.out and "teacher cache" not in printed.out
    err = printed.err.splitlines()
    assert sum(line.startswith("reusing teacher-") for line in err) == 2
    assert f"teacher cache: wrote {teachers / 'cache' / 'outputs-t2-none.pt'}" in err

    quiet = tmp_path / "quiet"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "kd", "--out", str(quiet),
                 "--teachers", str(teachers), "--quiet", *ARGS]) == 0
    printed_quiet = capsys.readouterr()
    assert printed_quiet.err == ""
    # Same table apart from the timings, and the run directory's name.
    assert len(printed_quiet.out.splitlines()) == len(printed.out.splitlines())
