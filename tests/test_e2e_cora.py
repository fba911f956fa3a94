"""End to end on real data: ``mskd run`` on Cora with a short schedule, then ``mskd teachers``
on the same run directory reuses the teachers."""

from __future__ import annotations

import json

import pytest
from conftest import tree_snapshot

from mskd.cli import main
from mskd.config import RunConfig

# Short schedule: about 40 s on 2 busy CPU cores. At 40 epochs the GAT teachers reach about
# 0.80 test accuracy on Cora (chance: 0.14, the full schedule: about 0.82-0.83).
EPOCHS = 40


@pytest.mark.slow
def test_cora_run_and_teacher_reuse(shared_data, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    shared_before = tree_snapshot(shared_data / "Planetoid")
    code = main(["run", "--dataset", "cora", "--data-root", str(shared_data), "--epochs",
                 str(EPOCHS), "--patience", str(EPOCHS), "--quiet", "--method", "none",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    assert tree_snapshot(shared_data / "Planetoid") == shared_before  # read-only data root

    rec = json.loads((out / "results.json").read_text())
    assert rec["dataset"] == "cora" and rec["metric"] == "accuracy"
    assert rec["data"]["split_seed"] is None  # the public split
    assert "nodes train/val/test 140/500/1000" in rec["data"]["summary"]
    cfg = RunConfig.from_dict(rec["config"])
    assert cfg.teacher_train.epochs == EPOCHS and cfg.distill.method == "none"

    teachers = rec["teachers"]
    assert [t["layers"] for t in teachers] == [1, 2, 3]
    params = [t["params"] for t in teachers]
    assert params == sorted(params) and len(set(params)) == 3  # deeper = more parameters
    for t in teachers:
        assert not t["reused"] and 1 <= t["best_epoch"] <= EPOCHS
        assert t["test"] > 0.7, t  # well above chance (1/7) even with this short schedule
        assert t["val"] > 0.7, t
    student = rec["student"]
    assert student["method"] == "none" and student["teachers_used"] == []
    assert student["params"] < min(params)
    assert student["test"] > 0.5, student  # a thinner model trained alone, same short schedule

    # Teachers of a finished run are reused as they are, not retrained.
    teacher_files = sorted((out / "teachers").glob("*.pt"))
    assert [p.name for p in teacher_files] == ["teacher-1.pt", "teacher-2.pt", "teacher-3.pt"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in teacher_files}
    results_bytes = (out / "results.json").read_bytes()
    capsys.readouterr()
    code = main(["teachers", "--dataset", "cora", "--data-root", str(shared_data), "--epochs",
                 str(EPOCHS), "--patience", str(EPOCHS), "--device", "cpu", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.count("reusing teacher-") == 3
    assert captured.out.count("(cached)") == 3
    for t in teachers:  # the table shows the stored scores
        assert f"{t['test']:.4f}" in captured.out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "teachers").glob("*.pt")} == mtimes
    assert (out / "results.json").read_bytes() == results_bytes
    assert tree_snapshot(shared_data / "Planetoid") == shared_before
