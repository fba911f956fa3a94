"""Distillation from the command line: every method end to end, and Cora with a short schedule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mskd.cli import main
from mskd.distill import METHODS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture()
def tiny_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n, c = 180, 3
    y = np.arange(n) % c
    x = rng.normal(size=(n, 8)) + np.eye(8)[y] * 2.0
    src = rng.integers(0, n, 4 * n)
    # Mostly same-class edges, so message passing helps.
    same = np.array([rng.choice(np.flatnonzero(y == y[s])) for s in src])
    dst = np.where(rng.random(4 * n) < 0.8, same, rng.integers(0, n, 4 * n))
    ei = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x.astype(np.float32), edge_index=ei.astype(np.int64), y=y.astype(np.int64))
    return path


def test_every_method_runs_from_the_cli_and_records_its_settings(tiny_npz, tmp_path, capsys):
    teachers = tmp_path / "teachers"
    for method in METHODS:
        out = tmp_path / method
        code = main(["distill", "--dataset", str(tiny_npz), "--method", method, "--epochs", "4",
                     "--patience", "4", "--teachers", str(teachers), "--out", str(out), "--quiet",
                     "--teacher-depths", "1,2"])
        assert code == 0, capsys.readouterr().err
        rec = json.loads((out / "results.json").read_text())
        s = rec["student"]
        assert s["method"] == method
        assert s["settings"]["method"] == method
        assert len(s["history"]) == s["best_epoch"] or len(s["history"]) >= s["best_epoch"]
        used = {"none": 0, "kd": 1, "fitnet": 1, "at": 1, "lsp": 1}.get(method, 2)
        assert len(s["teachers_used"]) == used
        assert 0.0 <= s["test"] <= 1.0
    # Teachers were trained once and reused by every later method.
    assert sorted(p.name for p in teachers.glob("*.pt")) == ["teacher-1.pt", "teacher-2.pt"]


def test_unknown_method_is_a_clean_error(tiny_npz, tmp_path, capsys):
    code = main(["distill", "--dataset", str(tiny_npz), "--method", "magic", "--out",
                 str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mskd: error: unknown method 'magic'; valid: none, kd")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cora_mskd_short_schedule_learns(tmp_path, capsys):
    if not (SHARED_DATA / "Planetoid" / "Cora" / "raw").is_dir():
        pytest.skip(f"Cora raw files not found under {SHARED_DATA}")
    out = tmp_path / "cora"
    code = main(["run", "--dataset", "cora", "--data-root", str(SHARED_DATA), "--epochs", "40",
                 "--patience", "40", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out / "results.json").read_text())
    s = rec["student"]
    assert s["method"] == "mskd" and rec["metric"] == "accuracy"
    hist = s["history"]
    assert {"task", "lsp", "kd"} <= set(hist[0])
    # The distillation objective goes down, and the student is far above chance (1/7).
    first = hist[0]["task"] + hist[0]["kd"]
    last = min(h["task"] + h["kd"] for h in hist[-5:])
    assert last < 0.9 * first
    assert s["test"] > 0.6
    assert len(s["mean_attention"]) == 3 and sum(s["mean_attention"]) == pytest.approx(1.0)
