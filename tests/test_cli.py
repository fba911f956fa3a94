"""Tests for the command line: one-line errors with exit code 2, finished runs left untouched,
--help everywhere, and an end-to-end ``mskd run`` on a tiny graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_error as _fail
from conftest import make_graph

from mskd.cli import main
from mskd.config import RunConfig, preset
from mskd.data import DATASETS, load_npz
from mskd.evaluate import evaluate_split
from mskd.models import GNN, count_parameters
from mskd.runs import load_checkpoint
from mskd.targets import model_from_checkpoint

EPOCHS = 20


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- a finished run, shared by the tests below ---------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """``mskd run`` on the tiny graph: (graph path, run directory)."""
    base = tmp_path_factory.mktemp("cli-run")
    npz = base / "tiny.npz"
    np.savez(npz, **make_graph())
    out = base / "run"
    code = main(["run", "--dataset", str(npz), "--epochs", str(EPOCHS), "--patience",
                 str(EPOCHS), "--quiet", "--device", "cpu", "--out", str(out)])
    assert code == 0
    return npz, out


def test_run_writes_results(finished_run, capsys) -> None:
    npz, out = finished_run
    assert sorted(_files(out)) == [
        "config.json", "results.json", "student-mskd.pt",
        "teachers/cache/outputs-t1-2-3-l1.pt",
        "teachers/teacher-1.pt", "teachers/teacher-2.pt", "teachers/teacher-3.pt",
    ]
    rec = json.loads((out / "results.json").read_text())
    assert rec["dataset"] == "tiny" and rec["metric"] == "accuracy"
    cfg = RunConfig.from_dict(rec["config"])
    assert cfg == RunConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert cfg.dataset == str(npz)
    assert cfg.teacher_train.epochs == cfg.student_train.epochs == EPOCHS
    assert cfg.teachers == preset("npz").teachers and cfg.student == preset("npz").student

    assert [t["layers"] for t in rec["teachers"]] == [1, 2, 3]
    data = load_npz(npz)
    for t in rec["teachers"]:
        assert t["params"] == count_parameters(GNN(16, 3, cfg.teacher(t["layers"])))
        # The recorded scores are those of the saved teacher.
        path = out / "teachers" / f"teacher-{t['layers']}.pt"
        model = model_from_checkpoint(load_checkpoint(path))
        assert (t["val"], t["test"]) == pytest.approx(
            (evaluate_split(model, data, "val")[0], evaluate_split(model, data, "test")[0]))
        assert 1 <= t["best_epoch"] <= EPOCHS
    student = rec["student"]
    assert student["method"] == "mskd"
    assert student["params"] == count_parameters(GNN(16, 3, cfg.student))
    assert student["params"] < min(t["params"] for t in rec["teachers"][1:])
    # The tiny graph is easy (chance is 1/3): the best teacher and the student learn it.
    assert max(t["test"] for t in rec["teachers"]) > 0.7
    assert student["val"] > 0.7 and student["test"] > 0.7


@pytest.mark.parametrize("explicit_dataset", [False, True])
def test_evaluate_reproduces_reported_scores(finished_run, capsys, tmp_path,
                                             explicit_dataset) -> None:
    npz, out = finished_run
    before = _files(out)
    scores = tmp_path / "scores.json"
    # Without --dataset the checkpoint's own record of its graph file is used.
    extra = ["--dataset", str(npz)] if explicit_dataset else []
    argv = ["evaluate", "--run", str(out), "--device", "cpu", "--json", str(scores), *extra]
    assert main(argv) == 0
    assert "teacher-3.pt" in capsys.readouterr().out
    assert _files(out) == before
    rows = {Path(r["checkpoint"]).stem: r for r in json.loads(scores.read_text())}
    rec = json.loads((out / "results.json").read_text())
    for m in [*rec["teachers"], rec["student"]]:
        row = rows[m["name"]]
        assert (row["params"], row["layers"]) == (m["params"], m["layers"])
        assert row["val"] == pytest.approx(m["val"]) and row["test"] == pytest.approx(m["test"])


@pytest.mark.parametrize("command", ["run", "distill"])
def test_finished_run_is_refused_and_untouched(finished_run, capsys, command) -> None:
    npz, out = finished_run
    before = _files(out)
    msg = _fail(capsys, [command, "--dataset", str(npz), "--epochs", "1", "--quiet",
                         "--device", "cpu", "--out", str(out)])
    assert "already holds a finished run" in msg and str(out) in msg
    assert _files(out) == before


def test_teachers_command_reuses_finished_runs_teachers(finished_run, capsys) -> None:
    npz, out = finished_run
    before = _files(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "teachers").iterdir()}
    assert main(["teachers", "--dataset", str(npz), "--epochs", str(EPOCHS), "--patience",
                 str(EPOCHS), "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("(cached)") == 3
    assert captured.err.count("reusing teacher-") == 3
    assert _files(out) == before
    assert {p.name: p.stat().st_mtime_ns for p in (out / "teachers").iterdir()} == mtimes


def test_evaluate_checkpoint_against_other_graph(finished_run, capsys, tmp_path) -> None:
    _, out = finished_run
    other = tmp_path / "other.npz"
    np.savez(other, **make_graph(seed=1))
    msg = _fail(capsys, ["evaluate", str(out / "teachers" / "teacher-1.pt"), "--dataset",
                         str(other), "--device", "cpu"])
    assert "was trained on 'tiny', not 'other'" in msg


def test_evaluate_user_graph_checkpoint_without_source(finished_run, capsys, tmp_path) -> None:
    _, out = finished_run
    payload = torch.load(out / "teachers" / "teacher-1.pt", weights_only=True)
    del payload["data_source"]  # as written before checkpoints recorded their graph file
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    msg = _fail(capsys, ["evaluate", str(old), "--device", "cpu"])
    assert "trained on the user graph 'tiny'; pass --dataset PATH.npz" in msg


# --- bad input: one line, exit code 2 ------------------------------------------------------------


def test_unknown_dataset(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    msg = _fail(capsys, ["run", "--dataset", "imagenet", "--out", str(out)])
    assert "unknown dataset 'imagenet'" in msg
    assert all(name in msg for name in DATASETS)
    assert not out.exists()


def test_malformed_npz(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00\x01 this is no zip archive")
    msg = _fail(capsys, ["run", "--dataset", str(bad), "--out", str(tmp_path / "out")])
    assert f"{bad} is not a readable .npz file" in msg
    assert not (tmp_path / "out").exists()


def test_missing_keys(capsys, tmp_path, tiny_graph) -> None:
    path = tmp_path / "nokeys.npz"
    np.savez(path, x=tiny_graph["x"], y=tiny_graph["y"])
    msg = _fail(capsys, ["teachers", "--dataset", str(path), "--out", str(tmp_path / "out")])
    assert "missing key(s) edge_index" in msg


def test_labels_out_of_range(capsys, tmp_path, tiny_graph) -> None:
    y = tiny_graph["y"].copy()
    y[5] = -1
    path = tmp_path / "labels.npz"
    np.savez(path, **{**tiny_graph, "y": y})
    msg = _fail(capsys, ["run", "--dataset", str(path), "--out", str(tmp_path / "out")])
    assert "labels out of range" in msg


@pytest.mark.parametrize(
    ("y", "expected"),
    [(np.zeros(177, dtype=np.int64), "y has 177 rows but x has 180 nodes"),
     (np.int64(2), "y must have shape [N] or [N, C]"),
     (np.zeros((180, 0), dtype=np.int64), "y must have shape [N] or [N, C]")],
)
def test_mismatched_shapes(capsys, tmp_path, tiny_graph, y, expected) -> None:
    path = tmp_path / "shapes.npz"
    np.savez(path, **{**tiny_graph, "y": y})
    msg = _fail(capsys, ["run", "--dataset", str(path), "--out", str(tmp_path / "out")])
    assert expected in msg


def test_corrupt_checkpoint_to_evaluate(capsys, tmp_path) -> None:
    ckpt = tmp_path / "teacher-1.pt"
    torch.save({"kind": "teacher", "state_dict": {"w": torch.ones(100)}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    msg = _fail(capsys, ["evaluate", str(ckpt)])
    assert f"corrupt or unreadable checkpoint {ckpt}" in msg


def test_evaluate_needs_something(capsys, tmp_path) -> None:
    assert "nothing to evaluate" in _fail(capsys, ["evaluate"])
    msg = _fail(capsys, ["evaluate", "--run", str(tmp_path / "nope")])
    assert f"run directory not found: {tmp_path / 'nope'}" in msg


@pytest.mark.parametrize(
    ("dataset", "folder"), [("ppi", "PPI/raw"), ("pubmed", "Planetoid/PubMed/raw")]
)
def test_missing_dataset(capsys, tmp_path, dataset, folder) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    msg = _fail(capsys, ["run", "--dataset", dataset, "--data-root", str(root),
                         "--out", str(tmp_path / "out")])
    assert "not found" in msg and str(root / folder) in msg
    assert not (tmp_path / "out").exists()


def test_bad_device(capsys, tiny_npz, tmp_path) -> None:
    msg = _fail(capsys, ["run", "--dataset", str(tiny_npz), "--device", "bogus",
                         "--out", str(tmp_path / "out")])
    assert "unknown device 'bogus'" in msg
    if not torch.cuda.is_available():
        msg = _fail(capsys, ["teachers", "--dataset", str(tiny_npz), "--device", "cuda:0",
                             "--out", str(tmp_path / "out")])
        assert "CUDA is not available" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [("--method", "bogus", "unknown method 'bogus'"),
     ("--attention", "psychic", "unknown attention 'psychic'"),
     ("--teacher-layers", "7", "--teacher-layers 7: no such teacher")],
)
def test_bad_distill_option_fails_before_any_work(capsys, tiny_npz, tmp_path, flag, value,
                                                  expected) -> None:
    out = tmp_path / "out"
    msg = _fail(capsys, ["run", "--dataset", str(tiny_npz), flag, value, "--epochs", "1",
                         "--quiet", "--out", str(out)])
    assert expected in msg
    assert not out.exists()  # no teacher trained, no run directory left behind


def test_bad_config_value(capsys, tiny_npz, tmp_path) -> None:
    msg = _fail(capsys, ["run", "--dataset", str(tiny_npz), "--epochs", "0",
                         "--out", str(tmp_path / "out")])
    assert "argument --epochs: expected an integer >= 1 (at most 2^63-1), got '0'" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["distill"], ["teachers"], ["evaluate"]])
def test_help(capsys, command) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mskd") and "--help" in out


def test_subprocess_error_exit_code_and_no_traceback(tmp_path) -> None:
    missing = tmp_path / "nothere.npz"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "mskd.cli", "run", "--dataset", str(missing),
         "--out", str(tmp_path / "out")],
        check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"mskd: error: graph file not found: {missing}"
    assert not (tmp_path / "out").exists()


def test_evaluate_json_never_overwrites(finished_run, capsys) -> None:
    _, out = finished_run
    target = out / "results.json"
    before = target.read_bytes()
    msg = _fail(capsys, ["evaluate", "--run", str(out), "--device", "cpu", "--json", str(target)])
    assert "exists" in msg and "nothing is overwritten" in msg
    assert target.read_bytes() == before


def test_unknown_kernel_is_refused_before_training(tiny_npz, capsys, tmp_path) -> None:
    out = tmp_path / "never"
    msg = _fail(capsys, ["run", "--dataset", str(tiny_npz), "--kernel", "bogus", "--out", str(out)])
    assert "unknown kernel 'bogus'; valid: l1" in msg
    assert not out.exists()
