"""Bad input is an MskdError (one line, exit code 2); anything else is a bug and says so (exit
code 1, one line, the traceback in a file or, with ``--debug``, on stderr)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from conftest import cli_error

import mskd.distill
from mskd.cli import main
from mskd.errors import CheckpointError, ConfigError, DataError, MskdError, RunDirError, UsageError

FAST = ["--epochs", "2", "--patience", "2", "--teacher-depths", "1", "--quiet", "--method", "kd"]


def test_error_kinds_share_one_base_and_keep_their_old_homes():
    import mskd.cli
    import mskd.config
    import mskd.data
    import mskd.runs

    assert mskd.MskdError is MskdError
    for kind in (UsageError, ConfigError, DataError, CheckpointError, RunDirError):
        assert issubclass(kind, MskdError) and issubclass(kind, ValueError)
    assert (mskd.config.ConfigError, mskd.data.DataError) == (ConfigError, DataError)
    assert (mskd.runs.CheckpointError, mskd.runs.RunDirError) == (CheckpointError, RunDirError)
    assert mskd.cli.CliError is MskdError


def _shape_bug(*_args, **_kwargs):
    raise ValueError("z_student and z_teacher must have the same shape, got (3, 2) and (3, 4)")


def _break_kd(monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry holds the loss itself: the kd method's term gets the failing one.
    term = dataclasses.replace(mskd.distill.KD, loss=_shape_bug)
    monkeypatch.setitem(mskd.distill.METHODS, "kd", mskd.distill.Method("one", (term,)))


def test_a_bug_during_training_is_reported_as_a_bug(
        tiny_npz: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    # A loss's shape check firing in the middle of training is mskd's bug, not bad input.
    _break_kd(monkeypatch)
    code = main(["run", "--dataset", str(tiny_npz), "--out", "run", *FAST])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mskd: error: internal error (a bug in mskd, not your input): "
                               "ValueError: z_student and z_teacher must have the same shape")
    where = re.search(r"traceback in (\S+\.txt);", lines[0])
    assert where, lines[0]
    saved = Path(where.group(1)).read_text()
    Path(where.group(1)).unlink()
    assert saved.startswith("Traceback (most recent call last):")
    assert "in _shape_bug" in saved and "in train_student" in saved


def test_debug_prints_the_traceback(tiny_npz: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch):
    _break_kd(monkeypatch)
    code = main(["--debug", "run", "--dataset", str(tiny_npz), "--out", "run", *FAST])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("Traceback (most recent call last):") and "in _shape_bug" in err
    assert err.strip().splitlines()[-1] == (
        "mskd: error: internal error (a bug in mskd, not your input): ValueError: z_student and "
        "z_teacher must have the same shape, got (3, 2) and (3, 4)")


def test_bad_input_is_still_one_line_exit_2(tiny_npz: Path, capsys: pytest.CaptureFixture[str]):
    line = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--device", "tpu", *FAST])
    assert line == "mskd: error: unknown device 'tpu'; use auto, cpu, cuda or cuda:N"
    assert not Path("run").exists()
