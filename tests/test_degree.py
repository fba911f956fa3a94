"""Degree analysis: in-degree buckets on a hand-built graph, per-bucket scores on hand-made logits,
``mskd degree --run`` on a tiny comparison, and ``mskd plot`` redrawing from saved JSON."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_error, make_graph

from mskd.cli import main
from mskd.data import MULTI, SINGLE
from mskd.evaluate import bucket_scores, degree_buckets, in_degree, quantile_buckets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _graph_with_in_degrees(degrees: list[int], extra_sources: int = 10) -> tuple[torch.Tensor, int]:
    """Node v gets exactly ``degrees[v]`` in-edges from distinct other nodes, plus a self-loop on
    node 0 (which must not count)."""
    n = len(degrees) + extra_sources
    src, dst = [0], [0]
    for v, d in enumerate(degrees):
        for j in range(d):
            src.append((v + 1 + j) % n)
            dst.append(v)
    return torch.tensor([src, dst]), n


def test_in_degree_ignores_self_loops() -> None:
    ei, n = _graph_with_in_degrees([0, 1, 1, 2, 3, 3, 5, 8])
    deg = in_degree(ei, n)
    assert deg[:8].tolist() == [0, 1, 1, 2, 3, 3, 5, 8]
    assert deg.shape == (n,)


def test_degree_buckets_on_a_hand_built_graph() -> None:
    ei, n = _graph_with_in_degrees([0, 1, 1, 2, 3, 3, 5, 8])
    # Sorted degrees 0 1 1 2 | 3 3 | 5 8 ...: cuts at sorted positions 2, 4, 6 -> degrees 1, 3, 5.
    bucket, bounds = degree_buckets(ei, n, torch.arange(8), 4)
    assert bucket.tolist() == [0, 1, 1, 1, 2, 2, 3, 3]
    assert bounds == [(0, 0), (1, 2), (3, 4), (5, 8)]
    # Node order does not matter, only the degrees.
    perm = torch.tensor([7, 3, 0, 5, 1, 6, 2, 4])
    b2, bounds2 = degree_buckets(ei, n, perm, 4)
    assert b2.tolist() == bucket[perm].tolist() and bounds2 == bounds
    # A boolean mask selects nodes too.
    mask = torch.zeros(n, dtype=torch.bool)
    mask[4:8] = True
    b3, bounds3 = degree_buckets(ei, n, mask, 2)
    assert b3.tolist() == [0, 0, 1, 1] and bounds3 == [(3, 4), (5, 8)]


def test_tied_degrees_merge_buckets_instead_of_leaving_one_empty() -> None:
    # All tied: one bucket, whatever was asked.
    bucket, bounds = quantile_buckets(torch.tensor([2, 2, 2, 2, 2]), 4)
    assert bounds == [(2, 2)] and bucket.tolist() == [0] * 5
    # Five tied nodes and one hub: the hub still gets its own bucket.
    bucket, bounds = quantile_buckets(torch.tensor([2, 2, 7, 2, 2, 2]), 4)
    assert bounds == [(2, 6), (7, 7)] and bucket.tolist() == [0, 0, 1, 0, 0, 0]
    bucket, bounds = quantile_buckets(torch.tensor([1, 1, 1, 4, 4, 4, 9, 9]), 3)
    assert bounds == [(1, 3), (4, 8), (9, 9)]
    assert bucket.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert torch.bincount(bucket).min() > 0
    with pytest.raises(ValueError):
        quantile_buckets(torch.tensor([], dtype=torch.long), 2)


def test_bucket_scores_on_hand_made_logits() -> None:
    y = torch.tensor([0, 1, 2, 0, 1])
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0],   # bucket 0: both right
                           [5.0, 0, 0], [5.0, 0, 0],   # bucket 1: one of two right
                           [5.0, 0, 0]])               # bucket 2: wrong
    bucket = torch.tensor([0, 0, 1, 1, 2])
    assert bucket_scores(y, logits, bucket, 4, SINGLE) == [1.0, 0.5, 0.0, None]
    # Multi-label: micro-F1 within each bucket.
    y_ml = torch.tensor([[1, 0], [1, 1], [0, 1]])
    z_ml = torch.tensor([[3.0, -3.0], [3.0, -3.0], [-3.0, -3.0]])
    # bucket 0 (rows 0, 1): tp 2, fn 1 -> F1 = 4 / 5; bucket 1 (row 2): tp 0, fn 1 -> 0.
    assert bucket_scores(y_ml, z_ml, torch.tensor([0, 0, 1]), 2, MULTI) == [
        pytest.approx(0.8), 0.0]


# --- command line --------------------------------------------------------------------------------


def _pooled(scores: list[float], buckets: list[dict]) -> float:
    """The accuracy of all nodes from the accuracies of the buckets."""
    return sum(v * b["nodes"] for v, b in zip(scores, buckets)) / sum(b["nodes"] for b in buckets)


@pytest.fixture(scope="module")
def degree_run(tmp_path_factory) -> Path:
    """``mskd degree`` training a one-seed comparison (teachers 1, 2; none and mskd)."""
    base = tmp_path_factory.mktemp("degree")
    npz = base / "tiny.npz"
    np.savez(npz, **make_graph())
    out = base / "cmp"
    code = main(["degree", "--dataset", str(npz), "--out", str(out), "--seeds", "0",
                 "--methods", "none,mskd", "--teacher-depths", "1,2", "--epochs", "3",
                 "--patience", "3", "--device", "cpu", "--quiet", "--buckets", "3",
                 "--attention", "node"])
    assert code == 0
    return out


def test_degree_reports_attention_only_for_a_student_that_trained_with_node_attention(
        degree_run, tmp_path, capsys) -> None:
    # The same teachers, mskd with its default (calibrated teachers, uniform weights): the
    # student's node attention is not what it trained with, so there is no attention table.
    out = tmp_path / "cal"
    shutil.copytree(degree_run / "seed0" / "teachers", out / "seed0" / "teachers")
    assert main(["degree", "--dataset", str(degree_run.parent / "tiny.npz"), "--out", str(out),
                 "--seeds", "0", "--methods", "mskd", "--teacher-depths", "1,2", "--epochs", "3",
                 "--patience", "3", "--device", "cpu", "--quiet", "--buckets", "3",
                 "--no-plot"]) == 0, capsys.readouterr().err
    cell = json.loads((out / "seed0" / "mskd" / "results.json").read_text())["student"]
    assert cell["attention"] == "calibrated"
    rec = json.loads((out / "degree.json").read_text())
    assert "attention" not in rec and rec["models"][-1]["name"] == "mskd"
    assert "Mean attention" not in (out / "degree.md").read_text()


def test_degree_writes_tables_plot_and_attention(degree_run) -> None:
    out = degree_run
    rec = json.loads((out / "degree.json").read_text())
    assert rec["metric"] == "accuracy" and rec["seeds"] == [0]
    assert 1 <= len(rec["buckets"]) <= 3
    assert sum(b["nodes"] for b in rec["buckets"]) == 30  # every test node in one bucket
    his = [b["hi"] for b in rec["buckets"]]
    los = [b["lo"] for b in rec["buckets"]]
    assert all(h + 1 == lo for h, lo in zip(his, los[1:]))
    assert [m["name"] for m in rec["models"]] == ["teacher-1", "teacher-2", "none", "mskd"]
    # Accuracy is a mean over nodes: the buckets' scores, weighed by their sizes, are each
    # model's test score in the comparison (one seed).
    tests = {r["name"]: r["test_mean"]
             for r in json.loads((out / "compare.json").read_text())["rows"]}
    for m in rec["models"]:
        assert len(m["mean"]) == len(rec["buckets"])
        assert _pooled(m["mean"], rec["buckets"]) == pytest.approx(tests[m["name"]])
    att = rec["attention"]
    assert att["teachers"] == ["teacher-1", "teacher-2"] and "post-training" in att["note"]
    assert all(sum(row) == pytest.approx(1.0) for row in att["mean"])
    md = (out / "degree.md").read_text()
    assert "| model" in md and "| bucket" in md and "deg " in md
    png = (out / "degree.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_degree_from_a_finished_run_trains_nothing(degree_run, tmp_path, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in degree_run.rglob("*.pt")}
    analysis = {n: (degree_run / n).read_bytes() for n in ("degree.json", "degree.md", "degree.png")}
    # The analysis written by the fixture is kept unless --force says to replace it.
    line = cli_error(capsys, ["degree", "--run", str(degree_run), "--buckets", "2", "--no-plot",
                              "--quiet"])
    assert line == (f"mskd: error: {degree_run} already holds a degree analysis (degree.json, "
                    f"degree.md, degree.png); it is kept. Replace it with --force (mskd degree "
                    f"--run {degree_run} --force retrains nothing)")
    assert {n: (degree_run / n).read_bytes() for n in analysis} == analysis
    assert main(["degree", "--run", str(degree_run), "--buckets", "2", "--no-plot",
                 "--quiet", "--force"]) == 0
    assert {p: p.stat().st_mtime_ns for p in degree_run.rglob("*.pt")} == before
    stdout = capsys.readouterr().out
    assert "teacher-2" in stdout and "deg " in stdout
    rec = json.loads((degree_run / "degree.json").read_text())
    assert rec["n_buckets_asked"] == 2


def test_degree_on_a_run_with_other_settings_points_to_run(degree_run, tmp_path,
                                                           capsys) -> None:
    # The comparison without its analysis (an existing one is refused before anything else).
    cmp = tmp_path / "cmp"
    shutil.copytree(degree_run, cmp, ignore=shutil.ignore_patterns("degree.*"))
    before = {p: p.stat().st_mtime_ns for p in cmp.rglob("*") if p.is_file()}
    # The run used --epochs 3; asking again with the defaults is refused, naming --run DIR.
    line = cli_error(capsys, ["degree", "--dataset", str(degree_run.parent / "tiny.npz"),
                              "--out", str(cmp), "--seeds", "0", "--quiet"])
    assert "other settings" in line and f"mskd degree --run {cmp}" in line
    assert {p: p.stat().st_mtime_ns for p in cmp.rglob("*") if p.is_file()} == before


def test_plot_redraws_from_saved_json(degree_run, tmp_path, capsys) -> None:
    for src in ("degree.json", "compare.json"):
        png = tmp_path / f"{src}.png"
        assert main(["plot", "--from", str(degree_run / src), "--out", str(png)]) == 0
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    bad = tmp_path / "other.json"
    bad.write_text('{"hello": 1}')
    assert main(["plot", "--from", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither" in err[0]
    assert main(["plot", "--from", str(tmp_path / "missing.json")]) == 2


@pytest.mark.parametrize(("content", "says"), [
    (b'{"buckets": "x", "models": 1}', "not a well-formed degree.json record"),
    (b'{"rows": [{"a": 1}], "seeds": "z"}', "not a well-formed compare.json record"),
    (b"\xff\xfe\x00", "not readable JSON"),
], ids=["degree-keys-wrong-types", "compare-keys-wrong-rows", "not-utf8"])
def test_plot_of_a_malformed_record_is_a_one_line_error(tmp_path, capsys, content, says) -> None:
    # Sweep of 2026-12-01: each was an internal error (TypeError, KeyError, UnicodeDecodeError).
    src = tmp_path / "edited.json"
    src.write_bytes(content)
    assert says in cli_error(capsys, ["plot", "--from", str(src)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.json"]  # no PNG


def test_degree_needs_a_dataset_or_a_run(capsys, tmp_path) -> None:
    assert main(["degree"]) == 2
    assert "--run" in capsys.readouterr().err
    assert main(["degree", "--run", str(tmp_path / "nope")]) == 2
    assert main(["degree", "--run", str(tmp_path), "--quiet"]) == 2  # not a comparison


@pytest.fixture
def no_matplotlib(monkeypatch) -> None:
    """``import matplotlib`` fails, as on a machine without the plot extra."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_matplotlib_is_a_one_line_error(degree_run, tmp_path, no_matplotlib,
                                                capsys) -> None:
    # `mskd plot` does nothing but draw: without matplotlib it is refused.
    assert main(["plot", "--from", str(degree_run / "degree.json"),
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "matplotlib" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_degree_and_compare_without_matplotlib_write_everything_but_the_png(
        degree_run, tmp_path, no_matplotlib, capsys) -> None:
    cmp = tmp_path / "cmp"
    shutil.copytree(degree_run, cmp, ignore=shutil.ignore_patterns("degree.*", "compare.png"))
    # As many buckets as the analysis beside the fixture's comparison (another test redoes it).
    buckets = json.loads((degree_run / "degree.json").read_text())["n_buckets_asked"]
    assert main(["degree", "--run", str(cmp), "--buckets", str(buckets), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        ("mskd: degree.png skipped: matplotlib is not installed: pip install 'mskd[plot]' (or pip "
         f"install matplotlib); then draw it with mskd plot --from {cmp / 'degree.json'}")]
    assert out.endswith(f"results in {cmp / 'degree.json'} (also degree.md)\n")
    assert sorted(p.name for p in cmp.glob("degree.*")) == ["degree.json", "degree.md"]
    # The numbers do not depend on the figure: the same as with matplotlib.
    assert (cmp / "degree.json").read_text() == (degree_run / "degree.json").read_text()
    assert (cmp / "degree.md").read_text() == (degree_run / "degree.md").read_text()
    # compare --plot (the finished comparison, resumed): the tables, and the same one line.
    assert main(["compare", "--dataset", str(degree_run.parent / "tiny.npz"), "--out", str(cmp),
                 "--seeds", "0", "--methods", "none,mskd", "--teacher-depths", "1,2",
                 "--epochs", "3", "--patience", "3", "--device", "cpu", "--quiet",
                 "--attention", "node", "--plot"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        ("mskd: compare.png skipped: matplotlib is not installed: pip install 'mskd[plot]' (or "
         f"pip install matplotlib); then draw it with mskd plot --from {cmp / 'compare.json'}")]
    assert out.endswith("(also compare.csv, compare.md)\n")
    assert (cmp / "compare.json").is_file() and not (cmp / "compare.png").exists()


def test_degree_scores_the_teachers_ensembles(degree_run) -> None:
    rec = json.loads((degree_run / "degree.json").read_text())
    ens = {e["name"]: e for e in rec["ensembles"]}
    assert list(ens) == ["teacher-1", "teacher-2", "uniform", "confidence", "degree", "gate",
                         "uniform, calibrated teachers", "oracle (any teacher right)"]
    models = {m["name"]: m for m in rec["models"]}
    rows = {r["name"]: r for r in json.loads((degree_run / "compare.json").read_text())["rows"]}
    for e in ens.values():
        assert len(e["buckets"]) == len(rec["buckets"])
        assert _pooled(e["buckets"], rec["buckets"]) == pytest.approx(e["test"])
    for t in ("teacher-1", "teacher-2"):  # a teacher alone scores as in its comparison cell
        assert (ens[t]["val"], ens[t]["test"]) == pytest.approx(
            (rows[t]["val_mean"], rows[t]["test_mean"]))
    # A teacher's row is that teacher: the same per-bucket scores as in the models table.
    assert ens["teacher-2"]["buckets"] == models["teacher-2"]["mean"]
    oracle = ens["oracle (any teacher right)"]
    for split in ("val", "test"):
        assert oracle[split] >= max(ens["teacher-1"][split], ens["teacher-2"][split])
    sel = rec["selection_weights"]
    assert sel["teachers"] == ["teacher-1", "teacher-2"]
    assert list(sel["modes"]) == ["confidence", "degree", "gate"]
    for table in sel["modes"].values():
        assert len(table) == len(rec["buckets"])
        assert all(sum(row) == pytest.approx(1.0) for row in table)
    md = (degree_run / "degree.md").read_text()
    assert "Headroom" in md and "| oracle (any teacher right)" in md
    assert "Teacher-side selection weights per bucket" in md


def _without(src: Path, dest: Path, *patterns: str) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*patterns))
    return dest


def test_degree_of_a_comparison_kept_as_json_only_needs_no_checkpoint(degree_run, tmp_path,
                                                                      capsys) -> None:
    # With its checkpoints, the analysis writes each seed's share beside the seed's cells.
    full = _without(degree_run, tmp_path / "full", "degree.*", "degree-seed.json")
    args = ["--buckets", "3", "--no-plot", "--quiet"]
    assert main(["degree", "--run", str(full), *args]) == 0
    ref = json.loads((full / "degree.json").read_text())
    seed_rec = json.loads((full / "seed0" / "degree-seed.json").read_text())
    assert sorted(seed_rec["checkpoints"]) == [
        "mskd/student-mskd.pt", "none/student-none.pt", "teachers/teacher-1.pt",
        "teachers/teacher-2.pt"]
    # Kept as its JSON files only (what a comparison shrinks to when its checkpoints are not
    # carried to another machine): compare and degree rebuild the same tables, training nothing.
    bare = _without(full, tmp_path / "bare", "*.pt", "degree.json", "degree.md", "compare.*")
    assert not list(bare.rglob("*.pt"))
    capsys.readouterr()
    assert main(["degree", "--run", str(full), "--buckets", "3", "--no-plot", "--force"]) == 0
    assert "recomputing" in capsys.readouterr().err  # --force, checkpoints all present
    assert main(["compare", "--dataset", str(degree_run.parent / "tiny.npz"), "--out", str(bare),
                 "--seeds", "0", "--methods", "none,mskd", "--teacher-depths", "1,2",
                 "--epochs", "3", "--patience", "3", "--device", "cpu", "--quiet",
                 "--attention", "node"]) == 0
    assert not list(bare.rglob("*.pt"))
    assert main(["degree", "--run", str(bare), "--buckets", "3", "--no-plot"]) == 0
    assert "checkpoints missing; using its stored degree record" in capsys.readouterr().err
    assert json.loads((bare / "degree.json").read_text()) == ref
    # A stored record cannot stand in for checkpoints it was not computed from: other buckets.
    line = cli_error(capsys, ["degree", "--run", str(bare), "--buckets", "2", "--no-plot",
                              "--quiet", "--force"])
    assert line == (f"mskd: error: {bare / 'seed0' / 'teachers' / 'teacher-1.pt'} is missing and "
                    f"{bare / 'seed0' / 'degree-seed.json'} cannot stand in for it: it was "
                    "computed with other buckets, teachers or tau")


def test_a_seed_record_of_other_checkpoints_is_recomputed(degree_run, tmp_path, capsys) -> None:
    full = _without(degree_run, tmp_path / "full", "degree.*")
    assert main(["degree", "--run", str(full), "--buckets", "3", "--no-plot", "--quiet",
                 "--force"]) == 0
    ref = json.loads((full / "degree.json").read_text())
    path = full / "seed0" / "degree-seed.json"
    rec = json.loads(path.read_text())
    rec["checkpoints"]["none/student-none.pt"] = "0" * 64  # as if `none` had been retrained
    rec["models"]["none"] = [0.0] * len(rec["models"]["none"])
    path.write_text(json.dumps(rec))
    for n in ("degree.json", "degree.md"):
        (full / n).unlink()
    capsys.readouterr()
    assert main(["degree", "--run", str(full), "--buckets", "3", "--no-plot"]) == 0
    assert ("seed0: recomputing its degree record (none/student-none.pt changed since)"
            in capsys.readouterr().err)
    assert json.loads((full / "degree.json").read_text()) == ref
    path.write_text("[1, 2]")  # valid JSON, not a record: recomputed as well
    assert main(["degree", "--run", str(full), "--buckets", "3", "--no-plot", "--force"]) == 0
    assert "it is not a degree record mskd wrote" in capsys.readouterr().err
    assert json.loads((full / "degree.json").read_text()) == ref
