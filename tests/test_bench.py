"""``mskd bench`` on a tiny graph: the report's keys and their sanity, not their timings."""

from __future__ import annotations

import json

import pytest

from mskd.cli import main

EPOCH_KEYS = ("distill_epoch_s_cached", "distill_epoch_s_uncached", "student_epoch_s",
              "cache_build_s", "peak_rss_mb")


def _bench(tiny_npz, tmp_path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    argv = ["bench", "--dataset", str(tiny_npz), "--epochs", "1", "--repeats", "2", "--warmup",
            "1", "--device", "cpu", "--quiet", "--json", str(out), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_bench_reports_every_measurement(tiny_npz, tmp_path, capsys) -> None:
    rec = _bench(tiny_npz, tmp_path, "--teacher-depths", "1,2")
    printed = capsys.readouterr().out
    assert "teachers: freshly initialised (untrained" in printed
    assert rec["dataset"] == "tiny" and rec["teachers_source"].startswith("freshly initialised")
    for key in EPOCH_KEYS:
        assert rec[key] > 0, key
    assert rec["cache_speedup"] == pytest.approx(
        rec["distill_epoch_s_uncached"] / rec["distill_epoch_s_cached"])
    assert set(rec["teacher_epoch_s"]) == {"1", "2"}
    assert all(s > 0 for s in rec["teacher_epoch_s"].values())
    models = {"student", "teacher-1", "teacher-2"}
    assert set(rec["infer_s"]) == set(rec["params"]) == set(rec["throughput_nodes_s"]) == models
    assert all(s > 0 for s in rec["infer_s"].values())
    assert rec["infer_nodes"] == 180
    for name, s in rec["infer_s"].items():
        assert rec["throughput_nodes_s"][name] == pytest.approx(180 / s)
    # The npz preset: the student is smaller than every teacher.
    assert rec["params"]["student"] < min(rec["params"]["teacher-1"], rec["params"]["teacher-2"])
    assert rec["deepest_teacher"] == "teacher-2"
    assert rec["student_speedup_vs_deepest_teacher"] == pytest.approx(
        rec["infer_s"]["teacher-2"] / rec["infer_s"]["student"])
    m = rec["machine"]
    assert m["cores"] >= 1 and m["threads"] >= 1 and m["torch"] and m["cpu"]


def test_bench_times_given_teachers(tiny_npz, tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["teachers", "--dataset", str(tiny_npz), "--teacher-depths", "1,3", "--epochs",
                 "1", "--quiet", "--device", "cpu", "--out", str(run)]) == 0
    rec = _bench(tiny_npz, tmp_path, "--teacher-depths", "1,3", "--teachers",
                 str(run / "teachers"))
    assert rec["teachers_source"] == f"loaded from {run / 'teachers'}"
    assert set(rec["teacher_epoch_s"]) == {"1", "3"}
    # Bench keeps its teacher cache in memory: nothing is written next to the teachers.
    assert not (run / "teachers" / "cache").exists()


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1"),
    (["--teachers", "no-such-dir"], "teacher directory not found"),
    (["--teacher-depths", "4"], "no teacher-4.pt"),
])
def test_bench_bad_input(tiny_npz, tmp_path, capsys, argv, message) -> None:
    if argv[0] == "--teacher-depths":
        (tmp_path / "empty").mkdir()
        argv = [*argv, "--teachers", str(tmp_path / "empty")]
    code = main(["bench", "--dataset", str(tiny_npz), "--quiet", "--device", "cpu", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mskd: error: ")
    assert message in err[0]


def test_bench_json_never_overwrites(tiny_npz, tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    out.write_text("{}")
    assert main(["bench", "--dataset", str(tiny_npz), "--json", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "{}"


def test_bench_compares_conv_implementations(tiny_npz, tmp_path, capsys) -> None:
    # Each figure in its own process, both implementations: the JSON has both sets of figures,
    # a per-figure peak RSS, and conv_speedup as the ratio of the two.
    rec = _bench(tiny_npz, tmp_path, "--teacher-depths", "1", "--conv", "pyg,fused")
    printed = capsys.readouterr().out
    assert "implementations pyg vs fused" in printed and "teacher-1 epoch s" in printed
    assert rec["convs"] == ["pyg", "fused"]
    figures = {"infer:student", "infer:teacher-1", "student_epoch", "distill_epoch_cached",
               "teacher_epoch:1"}
    for conv in ("pyg", "fused"):
        by = rec["by_conv"][conv]
        assert set(by["peak_rss_mb"]) == figures
        assert all(v > 0 for v in by["peak_rss_mb"].values())
        assert by["student_epoch_s"] > 0 and by["distill_epoch_s_cached"] > 0
        assert set(by["infer_s"]) == {"student", "teacher-1"}
    speed = rec["conv_speedup"]
    pyg, fused = rec["by_conv"]["pyg"], rec["by_conv"]["fused"]
    assert set(speed["teacher_epoch"]) == {"1"}
    assert speed["teacher_epoch"]["1"] == pytest.approx(
        pyg["teacher_epoch_s"]["1"] / fused["teacher_epoch_s"]["1"])
    assert speed["student_epoch"] == pytest.approx(pyg["student_epoch_s"] / fused["student_epoch_s"])
    assert speed["distill_epoch_cached"] == pytest.approx(
        pyg["distill_epoch_s_cached"] / fused["distill_epoch_s_cached"])
    assert set(speed["infer"]) == {"student", "teacher-1"}
    assert set(speed["peak_rss_mb"]) == figures
    # One round: the fastest round is the only one, so both sets of ratios agree.
    assert rec["conv_speedup_fastest_round"] == speed


def test_bench_conv_flag_is_checked(tiny_npz, capsys) -> None:
    code = main(["bench", "--dataset", str(tiny_npz), "--quiet", "--conv", "pyg,dgl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pyg,dgl" in err[0]


def test_bench_times_inference_with_sparse_features_when_asked(tiny_npz, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "s").mkdir()
    auto = _bench(tiny_npz, tmp_path / "a", "--teacher-depths", "1")
    # The tiny graph's features are dense Gaussians: "auto" keeps them dense.
    assert auto["feature_density"] == pytest.approx(1.0) and auto["sparse_features"] is False
    sparse = _bench(tiny_npz, tmp_path / "s", "--teacher-depths", "1", "--features", "sparse")
    assert sparse["sparse_features"] is True
    assert set(sparse["infer_s"]) == {"student", "teacher-1"}
    assert all(s > 0 for s in sparse["infer_s"].values())
