"""The Python API (``mskd.run``, ``mskd.compare``): the README's example runs, the API and the
CLI give the same numbers, and bad options raise MskdError with the CLI's one-line message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_error

import mskd
from mskd.cli import main
from mskd.distill import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = {"epochs": 3, "patience": 3, "teacher_depths": (1, 2), "quiet": True}


def readme_example() -> str:
    section = README.read_text().split("## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_example_runs(tmp_path: Path):
    # In a fresh interpreter, as a reader would run it (the working directory is tmp_path).
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    rec = json.loads(Path("runs/toy/results.json").read_text())
    assert printed[0] == f"mskd accuracy {rec['student']['test']}"
    cmp = json.loads(Path("runs/toy-compare/compare.json").read_text())
    names = [r["name"] for r in cmp["rows"]]
    assert names == ["teacher-1", "teacher-2", "none", "mskd"]
    assert printed[1:5] == [f"{r['name']} {r['test_mean']:.3f} +- {r['test_std']:.3f}"
                            for r in cmp["rows"]]
    assert printed[5] == f"unknown method 'distil'; valid: {', '.join(METHODS)}"
    assert printed[5] in README.read_text()  # the comment in the example says what it prints
    assert not Path("runs/toy-2").exists()  # refused before anything was written


def test_run_is_the_cli_run(tiny_npz: Path, capsys: pytest.CaptureFixture[str]):
    rec = mskd.run(str(tiny_npz), out="api", method="kd", **FAST)
    assert rec == json.loads(Path("api/results.json").read_text())
    argv = ["run", "--dataset", str(tiny_npz), "--out", "cli", "--method", "kd", "--epochs", "3",
            "--patience", "3", "--teacher-depths", "1,2", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    cli = json.loads(Path("cli/results.json").read_text())
    assert rec["student"]["method"] == "kd"
    # Same seed, same options, CPU: the same numbers, however the run was started.
    for key in ("val", "test", "best_epoch", "params"):
        assert rec["student"][key] == cli["student"][key]
        assert [t[key] for t in rec["teachers"]] == [t[key] for t in cli["teachers"]]
    assert rec["config"] == cli["config"]


def test_mskd_compare_stays_the_function():
    # A submodule named ``compare`` would replace the function on the package once imported.
    import mskd.api
    import mskd.comparison  # the import that would rebind mskd.compare

    assert mskd.compare is mskd.api.compare and mskd.run is mskd.api.run


def test_compare_returns_the_compare_json_record(tiny_npz: Path):
    rec = mskd.compare(str(tiny_npz), seeds=[0, 1], methods="none,kd", out="cmp", **FAST)
    assert rec == json.loads(Path("cmp/compare.json").read_text())
    assert rec["seeds"] == [0, 1]
    assert [r["name"] for r in rec["rows"]] == ["teacher-1", "teacher-2", "none", "kd"]


@pytest.mark.parametrize("options, argv", [
    ({"epochs": 0}, ["--epochs", "0"]),
    ({"method": "distil"}, ["--method", "distil"]),
    ({"teacher_depths": (1, 0)}, ["--teacher-depths", "1,0"]),
    ({"no_such_option": 1}, ["--no-such-option", "1"]),
    ({"tau": float("nan")}, ["--tau", "nan"]),
])
def test_bad_options_raise_the_cli_message(tiny_npz: Path, capsys: pytest.CaptureFixture[str],
                                           options: dict, argv: list[str]):
    line = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--out", "cli", *argv])
    with pytest.raises(mskd.MskdError) as e:
        mskd.run(str(tiny_npz), out="api", **options)
    assert f"mskd: error: {e.value}" == line
    assert not Path("api").exists() and not Path("cli").exists()


def test_missing_data_is_an_mskd_error(tmp_path: Path):
    with pytest.raises(mskd.MskdError, match="not found"):
        mskd.run("cora", out="api", data_root=str(tmp_path / "empty"), **FAST)


@pytest.mark.slow
def test_run_with_nproc_launches_the_workers(tiny_npz: Path, tmp_path: Path):
    code = (
        f"import mskd; rec = mskd.run({str(tiny_npz)!r}, out='run', epochs=2, "
        "teacher_depths=(1,), sampler='neighbor', fanout=(4,), batch_size=32, device='cpu', "
        "quiet=True, nproc=2); print(rec['student']['scale']['processes'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(README.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "2"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["student"]["scale"][
        "processes"] == 2
