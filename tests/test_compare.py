"""``mskd compare``: aggregation over seeds (exact mean / sample std), Markdown and CSV rendering,
argument parsing, a tiny end-to-end comparison, and resuming an interrupted one."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_error, make_graph

import mskd.comparison
from mskd.cli import main
from mskd.comparison import parse_methods, parse_seeds
from mskd.config import ConfigError
from mskd.plots import attention_axis_limits, score_axis_limits
from mskd.report import aggregate_rows, compare_csv, compare_markdown, mean_std
from mskd.train import TrainingError

ROW_KEYS = {"name", "kind", "method", "layers", "params", "val_mean", "val_std", "test_mean",
            "test_std", "train_s", "infer_s"}


# --- aggregation and rendering -------------------------------------------------------------------


def test_mean_std_is_the_sample_std() -> None:
    mean, std = mean_std([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9)
    assert std == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert mean_std([0.75]) == (0.75, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def _cell(name, kind, layers, seed, val, test, params=100, train_s=1.0, infer_s=0.01):
    return {"name": name, "kind": kind, "method": None if kind == "teacher" else name,
            "layers": layers, "params": params, "val": val, "test": test, "train_s": train_s,
            "infer_s": infer_s, "seed": seed}


HAND_CELLS = [
    _cell("teacher-2", "teacher", 2, 0, 0.70, 0.60, params=500, train_s=2.0),
    _cell("teacher-1", "teacher", 1, 0, 0.50, 0.40, params=300),
    _cell("mskd", "student", 2, 0, 0.80, 0.70, infer_s=0.002),
    _cell("none", "student", 2, 0, 0.60, 0.55),
    _cell("teacher-2", "teacher", 2, 1, 0.90, 0.80, params=500, train_s=4.0),
    _cell("teacher-1", "teacher", 1, 1, 0.50, 0.40, params=300),
    _cell("mskd", "student", 2, 1, 0.60, 0.90, infer_s=0.004),
    _cell("none", "student", 2, 1, 0.60, 0.65),
]


def test_aggregate_rows_exact_mean_and_std_and_order() -> None:
    rows = aggregate_rows(HAND_CELLS)
    assert [r["name"] for r in rows] == ["teacher-1", "teacher-2", "mskd", "none"]
    assert all(set(r) == ROW_KEYS for r in rows)
    t1, t2, mskd, none = rows
    assert (t1["val_mean"], t1["val_std"], t1["test_std"]) == (0.5, 0.0, 0.0)
    assert t2["val_mean"] == pytest.approx(0.8)
    assert t2["val_std"] == pytest.approx(math.sqrt(0.02))  # |0.7 - 0.9| / sqrt(2)
    assert t2["test_mean"] == pytest.approx(0.7)
    assert t2["train_s"] == pytest.approx(3.0) and t2["params"] == 500
    assert t2["kind"] == "teacher" and t2["method"] is None and t2["layers"] == 2
    assert mskd["kind"] == "student" and mskd["method"] == "mskd"
    assert mskd["test_mean"] == pytest.approx(0.8)
    assert mskd["test_std"] == pytest.approx(math.sqrt(0.02))
    assert mskd["infer_s"] == pytest.approx(0.003)
    assert none["test_mean"] == pytest.approx(0.6)
    assert none["test_std"] == pytest.approx(math.sqrt(0.005))


def test_markdown_and_csv_rendering() -> None:
    rows = aggregate_rows(HAND_CELLS)
    md = compare_markdown(rows, "accuracy", [0, 1])
    lines = md.strip().splitlines()
    assert lines[0].startswith("| model") and "val accuracy" in lines[0]
    assert set(lines[1]) <= {"|", "-", ":"} and lines[1].count("|") == lines[0].count("|")
    t2 = next(line for line in lines if line.startswith("| teacher-2"))
    assert "0.8000 ± 0.1414" in t2 and "0.7000 ± 0.1414" in t2 and "500" in t2
    assert "3.0" in t2  # train s
    mskd = next(line for line in lines if line.startswith("| mskd"))
    assert "3.00" in mskd  # infer ms
    assert "2 seed(s) (0, 1)" in md
    # Every table line has the same width: the columns line up in a terminal too.
    assert len({len(line) for line in lines[:6]}) == 1

    parsed = list(csv.DictReader(io.StringIO(compare_csv(rows))))
    assert [r["name"] for r in parsed] == ["teacher-1", "teacher-2", "mskd", "none"]
    assert set(parsed[0]) == ROW_KEYS
    assert float(parsed[1]["val_std"]) == pytest.approx(math.sqrt(0.02))
    assert parsed[0]["method"] == "" and parsed[2]["method"] == "mskd"


def test_plot_axis_shows_every_bar_whole() -> None:
    # Validation can sit far above test (Amazon Computers: 0.91 against 0.79): the axis must
    # reach the top of the validation bars too, not only the test ones.
    rows = [{"val_mean": 0.91, "val_std": 0.02, "test_mean": 0.79, "test_std": 0.01},
            {"val_mean": 0.80, "val_std": 0.10, "test_mean": 0.76, "test_std": 0.06}]
    lo, hi = score_axis_limits(rows)
    assert hi >= 0.93 and lo <= 0.70
    assert score_axis_limits([{"val_mean": 0.99, "val_std": 0.03, "test_mean": 0.02,
                               "test_std": 0.03}]) == (0.0, 1.0)


def test_the_attention_axis_leaves_room_above_every_error_bar() -> None:
    # Seeds that disagree give error bars of about 0.1 (Amazon Computers): the one-row legend
    # on top of the panel hid their caps before the axis had a band for it.
    att = {"teachers": ["teacher-1", "teacher-2", "teacher-3"],
           "mean": [[0.31, 0.33, 0.35], [0.37, 0.31, 0.31]],
           "std": [[0.10, 0.04, 0.11], [0.10, 0.08, 0.10]]}
    lo, hi = attention_axis_limits(att)
    assert lo == 0.0 and hi >= 1.15 * 0.47
    uniform = {"teachers": ["a", "b"], "mean": [[0.5, 0.5]], "std": [[0.0, 0.0]]}
    assert attention_axis_limits(uniform)[1] > 0.5  # the 1/K line stays inside the axis


def test_parse_seeds_and_methods() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("3, 0-1,3") == [3, 0, 1]
    for bad in ("", "a", "-1", "4-2", "1-x"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert parse_methods("none,kd,none") == ["none", "kd"]
    with pytest.raises(ConfigError, match="unknown method 'foo'"):
        parse_methods("none,foo")


def test_unknown_method_and_bad_seeds_are_one_line_errors(capsys, tmp_path) -> None:
    npz = tmp_path / "g.npz"
    np.savez(npz, **make_graph())
    line = cli_error(capsys, ["compare", "--dataset", str(npz), "--methods", "kd,nope"])
    assert "unknown method 'nope'" in line
    assert "--seeds" in cli_error(capsys, ["compare", "--dataset", str(npz), "--seeds", "x"])
    assert not (tmp_path / "runs").exists()  # nothing created before the arguments are valid


# --- end to end --------------------------------------------------------------------------------------

ARGS = ["--seeds", "0-1", "--methods", "none,kd", "--teacher-depths", "1,2", "--epochs", "3",
        "--patience", "3", "--device", "cpu", "--quiet"]


def _compare(npz: Path, out: Path, *extra: str) -> int:
    return main(["compare", "--dataset", str(npz), "--out", str(out), *ARGS, *extra])


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.parent != root}  # cell files, not the aggregates in OUT


@pytest.fixture(scope="module")
def finished_compare(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    npz = base / "tiny.npz"
    np.savez(npz, **make_graph())
    out = base / "cmp"
    assert _compare(npz, out) == 0
    return npz, out


def test_compare_writes_the_schema(finished_compare, capsys) -> None:
    _, out = finished_compare
    rec = json.loads((out / "compare.json").read_text())
    assert {"dataset", "metric", "seeds", "rows"} <= set(rec)
    assert rec["dataset"] == "tiny" and rec["metric"] == "accuracy" and rec["seeds"] == [0, 1]
    assert [r["name"] for r in rec["rows"]] == ["teacher-1", "teacher-2", "none", "kd"]
    for r in rec["rows"]:
        assert ROW_KEYS <= set(r)
        cells = [c for c in rec["per_seed"] if c["name"] == r["name"]]
        assert sorted(c["seed"] for c in cells) == [0, 1]
        for split in ("val", "test"):
            assert (r[f"{split}_mean"], r[f"{split}_std"]) == pytest.approx(
                mean_std([c[split] for c in cells]))
        assert r["infer_s"] > 0.0 and r["train_s"] > 0.0 and r["params"] > 0
    kinds = {r["name"]: (r["kind"], r["method"], r["layers"]) for r in rec["rows"]}
    assert kinds["teacher-2"] == ("teacher", None, 2) and kinds["kd"] == ("student", "kd", 2)
    # The aggregate is exactly the mean / sample std of the per-seed cells.
    kd = [json.loads((out / f"seed{s}" / "kd" / "results.json").read_text())["student"]["test"]
          for s in (0, 1)]
    row = next(r for r in rec["rows"] if r["name"] == "kd")
    assert (row["test_mean"], row["test_std"]) == pytest.approx(mean_std(kd))
    assert sorted(p.name for p in (out / "seed0" / "teachers").glob("*.pt")) == [
        "teacher-1.pt", "teacher-2.pt"]
    assert (out / "seed1" / "none" / "student-none.pt").is_file()
    csv_rows = list(csv.DictReader(io.StringIO((out / "compare.csv").read_text())))
    assert len(csv_rows) == 4
    assert (out / "compare.md").read_text().startswith("| model")


def test_rerun_after_deleting_a_cell_recomputes_only_that_cell(finished_compare, tmp_path,
                                                               capsys) -> None:
    npz, src = finished_compare
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    before = _mtimes(out)
    (out / "seed1" / "kd" / "results.json").unlink()
    assert _compare(npz, out) == 0
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"seed1/kd/results.json", "seed1/kd/student-kd.pt"}
    rec = json.loads((out / "compare.json").read_text())
    assert len(rec["rows"]) == 4 and len(rec["per_seed"]) == 2 * (2 + 2)
    # Different settings in the same directory would mix incomparable cells: refused.
    argv = ["compare", "--dataset", str(npz), "--out", str(out), *ARGS]
    argv[argv.index("--epochs") + 1] = "4"
    line = cli_error(capsys, argv)
    assert "other settings" in line and "epochs" in line


@pytest.mark.parametrize(("name", "content", "says"), [
    ("seed0/kd/results.json", b"{}", "not a finished cell's record"),
    ("seed0/teachers.json", b"[1]", "not a finished cell's record"),
    ("seed0/none/results.json", b"\xff\xfe", "unreadable"),
    ("compare-config.json", b"\xff\xfe", "unreadable"),
], ids=["cell-empty-object", "teachers-a-list", "cell-not-utf8", "config-not-utf8"])
def test_a_damaged_cell_file_is_a_one_line_error(finished_compare, tmp_path, capsys, name,
                                                 content, says) -> None:
    # Sweep of 2026-12-01: each of these was an internal error (KeyError, TypeError,
    # UnicodeDecodeError) with exit 1 instead of a usage error naming the file.
    npz, src = finished_compare
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    (out / name).write_bytes(content)
    before = _mtimes(out)
    line = cli_error(capsys, ["compare", "--dataset", str(npz), "--out", str(out), *ARGS])
    assert says in line and name in line
    assert _mtimes(out) == before  # nothing recomputed or replaced


def test_interrupted_compare_resumes_where_it_stopped(tmp_path, monkeypatch, capsys) -> None:
    npz = tmp_path / "tiny.npz"
    np.savez(npz, **make_graph())
    out = tmp_path / "cmp"
    real = mskd.comparison.train_student

    def failing(cfg, *args, **kwargs):
        if cfg.seed == 1 and cfg.distill.method == "kd":
            raise TrainingError("simulated crash")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(mskd.comparison, "train_student", failing)
    assert _compare(npz, out) == 1
    assert not (out / "compare.json").exists()
    assert not (out / "seed1" / "kd" / "results.json").exists()
    before = _mtimes(out)
    assert "seed1/none/results.json" in before and "seed1/teachers.json" in before

    monkeypatch.setattr(mskd.comparison, "train_student", real)
    assert _compare(npz, out) == 0
    after = _mtimes(out)
    assert all(after[k] == v for k, v in before.items())  # finished cells untouched
    assert "seed1/kd/results.json" in after
    rec = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in rec["rows"]] == ["teacher-1", "teacher-2", "none", "kd"]


def test_a_resumed_cell_does_not_set_the_eta(finished_compare, tmp_path, monkeypatch,
                                             capsys) -> None:
    # A cell that continues a saved training takes a fraction of a cell's time; the ETA printed
    # before the next cell must not be extrapolated from it.
    npz, src = finished_compare
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    for method in ("none", "kd"):
        (out / "seed1" / method / "results.json").unlink()
    saved = out / "seed1" / "none" / "student-none.resume"
    saved.write_bytes(b"stands for a saved training state")
    real = mskd.comparison.train_student

    def continuing(cfg, *args, **kwargs):
        saved.unlink(missing_ok=True)  # the real state is not needed to time the cell
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(mskd.comparison, "train_student", continuing)
    capsys.readouterr()
    argv = [a for a in ARGS if a != "--quiet"]
    assert main(["compare", "--dataset", str(npz), "--out", str(out), *argv]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "] seed 1 · " in ln]
    assert len(lines) == 2 and "seed 1 · kd" in lines[1], lines
    assert "ETA after the first cell" in lines[1]


def test_a_comparison_saved_before_a_new_setting_existed_still_resumes(finished_compare,
                                                                        tmp_path) -> None:
    # Settings added later (here the sampler) default to the old behaviour: an older
    # compare-config.json without them must not read as "other settings".
    npz, src = finished_compare
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    cfg_path = out / mskd.comparison.CONFIG_FILE
    stored = json.loads(cfg_path.read_text())
    del stored["config"]["scale"]
    cfg_path.write_text(json.dumps(stored))
    before = _mtimes(out)
    assert _compare(npz, out) == 0
    changed = {k for k, v in _mtimes(out).items() if v != before.get(k)}
    assert not any(k.startswith("seed") for k in changed)  # no cell recomputed


def test_processes_with_disjoint_seeds_fill_one_comparison(finished_compare, tmp_path,
                                                             monkeypatch, capsys) -> None:
    # While a seed's cells run, only that seed's directory is locked: another process can work
    # on other seeds of the same comparison, and a last call with every seed combines them.
    from mskd.runs import RunDirError, RunLock

    npz, ref = finished_compare
    out = tmp_path / "cmp"
    real = mskd.comparison.train_student
    seen = []

    def probing(cfg, *args, **kwargs):
        with RunLock(out):  # the comparison's own directory is free during training
            pass
        with pytest.raises(RunDirError, match="in use by another mskd process"):
            RunLock(out / f"seed{cfg.seed}").acquire()
        seen.append(cfg.seed)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(mskd.comparison, "train_student", probing)
    one_seed = ["--seeds", "1", *ARGS[2:]]
    assert main(["compare", "--dataset", str(npz), "--out", str(out), *one_seed]) == 0
    assert seen == [1, 1]
    assert json.loads((out / "compare.json").read_text())["seeds"] == [1]
    # Seed 1 busy in "another process": asking for it fails with a one-line error naming it.
    with RunLock(out / "seed1"):
        line = cli_error(capsys, ["compare", "--dataset", str(npz), "--out", str(out), *ARGS])
    assert "seed1 is in use by another mskd process" in line
    assert (out / "seed0" / "kd" / "results.json").is_file()  # seed 0 was computed before that
    # Every cell is finished now: this call only reads them, and matches a one-process run.
    monkeypatch.setattr(mskd.comparison, "train_student", real)
    assert _compare(npz, out) == 0
    rec = json.loads((out / "compare.json").read_text())
    want = json.loads((ref / "compare.json").read_text())
    assert rec["seeds"] == [0, 1]
    assert [(r["name"], r["test_mean"], r["test_std"]) for r in rec["rows"]] == [
        (r["name"], r["test_mean"], r["test_std"]) for r in want["rows"]]
