"""Distillation from the command line: every method end to end, and Cora with a short schedule."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli_error

from mskd.cli import build_parser, main, resolve_config
from mskd.comparison import cell_config
from mskd.data import load_dataset, load_npz
from mskd.distill import METHODS
from mskd.evaluate import evaluate_split
from mskd.runs import load_checkpoint
from mskd.targets import model_from_checkpoint


def test_every_method_runs_from_the_cli_and_records_its_settings(tiny_npz, tmp_path, capsys):
    teachers = tmp_path / "teachers"
    data = load_npz(tiny_npz)
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
        # --patience 4 cannot stop a 4-epoch run early; the kept epoch is the best on validation
        # (ties: the earlier one, as fit keeps it). The history holds 6 significant digits.
        hist = s["history"]
        assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
        best = max(hist, key=lambda h: (h["val"], -h["val_loss"]))
        assert s["best_epoch"] == best["epoch"]
        assert s["val"] == pytest.approx(best["val"], rel=1e-5)
        used = {"none": 0, "kd": 1, "fitnet": 1, "at": 1, "lsp": 1}.get(method, 2)
        assert len(s["teachers_used"]) == used
        # The reported test score is that of the saved student.
        student = model_from_checkpoint(load_checkpoint(out / f"student-{method}.pt"))
        assert s["test"] == pytest.approx(evaluate_split(student, data, "test")[0])
    # Teachers were trained once and reused by every later method.
    assert sorted(p.name for p in teachers.glob("*.pt")) == ["teacher-1.pt", "teacher-2.pt"]


def test_unknown_method_is_a_clean_error(tiny_npz, tmp_path, capsys):
    code = main(["distill", "--dataset", str(tiny_npz), "--method", "magic", "--out",
                 str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mskd: error: unknown method 'magic'; valid: none, kd")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_sequential_schedule_fits_its_phases_into_epochs_and_records_them(tiny_npz, tmp_path,
                                                                          capsys):
    out = tmp_path / "faithful"
    code = main(["run", "--dataset", str(tiny_npz), "--faithful", "--teacher-depths", "1,2",
                 "--epochs", "7", "--patience", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    rec = json.loads((out / "results.json").read_text())
    # Two phases of 7 // 2 = 3 epochs, each run to its end (--patience is the teachers' only);
    # the LSP warm-up keeps the authors' proportion (80 of 500), at least one epoch.
    assert (cfg["distill"]["phase_epochs"], cfg["distill"]["lsp_warmup"]) == (3, 1)
    assert (cfg["student_train"]["epochs"], cfg["student_train"]["patience"]) == (6, 6)
    assert (cfg["teacher_train"]["epochs"], cfg["teacher_train"]["patience"]) == (7, 1)
    assert rec["config"] == cfg
    hist = rec["student"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert [h["epoch"] for h in hist if "lsp" in h] == [1, 4]


def test_sequential_schedule_with_fewer_epochs_than_phases_is_refused(tiny_npz, tmp_path, capsys):
    msg = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--faithful", "--epochs", "2",
                             "--out", str(tmp_path / "o"), "--quiet"])
    assert msg == ("mskd: error: --epochs 2 with the sequential schedule: it needs at least one "
                   "epoch per teacher phase, 3 in all")
    assert not (tmp_path / "o").exists()


def test_a_comparison_records_each_cells_schedule():
    base = resolve_config(build_parser().parse_args(["compare", "--faithful", "--epochs", "12"]))
    assert base.student_train.epochs == 12 and base.distill.phase_epochs == 4
    mskd = cell_config(base, 0, "mskd")
    assert (mskd.student_train.epochs, mskd.student_train.patience) == (12, 12)
    # A single-teacher method has no phases: its --epochs and --patience are its own.
    assert cell_config(base, 0, "kd").student_train == base.student_train


@pytest.mark.slow
def test_cora_mskd_short_schedule_learns(shared_data, tmp_path, capsys):
    out = tmp_path / "cora"
    code = main(["run", "--dataset", "cora", "--data-root", str(shared_data), "--epochs", "40",
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


def test_student_arch_changes_the_student_only(tiny_npz, tmp_path):
    out = tmp_path / "mlp"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "mskd", "--student-arch",
                 "mlp", "--teacher-depths", "1,2", "--epochs", "3", "--patience", "3", "--out",
                 str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["student"]["arch"] == "mlp"
    assert {t["arch"] for t in config["teachers"]} == {"gat"}
    res = json.loads((out / "results.json").read_text())
    assert res["student"]["method"] == "mskd"
    assert res["student"]["params"] < min(t["params"] for t in res["teachers"])


def test_student_width_and_dropout_flags_change_the_student_only(tiny_npz):
    base = resolve_config(build_parser().parse_args(["run", "--dataset", str(tiny_npz)]))
    cfg = resolve_config(build_parser().parse_args(
        ["run", "--dataset", str(tiny_npz), "--student-arch", "mlp", "--student-heads", "8",
         "--student-dropout", "0.3"]))
    assert (cfg.student.arch, cfg.student.heads, cfg.student.dropout) == ("mlp", 8, 0.3)
    assert cfg.student.width == 8 * base.student.hidden
    assert cfg.teachers == base.teachers


def test_student_hops_give_an_mlp_student_propagated_hops(tiny_npz, tmp_path):
    out = tmp_path / "hops"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "kd", "--student-arch", "mlp",
                 "--student-hops", "2", "--teacher-depths", "1", "--epochs", "3", "--patience",
                 "3", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["student"]["arch"], config["student"]["hops"]) == ("mlp", 2)
    assert all(t.get("hops", 0) == 0 for t in config["teachers"])
    assert main(["predict", "--checkpoint", str(out / "student-kd.pt"), "--dataset", str(tiny_npz),
                 "--out", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("flag, value", [("--student-heads", "0"), ("--student-dropout", "1"),
                                         ("--student-hops", "11")])
def test_bad_student_flags_are_one_line_errors(tiny_npz, tmp_path, capsys, flag, value):
    line = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--out", str(tmp_path / "o"),
                              flag, value])
    assert flag in line


def test_student_hops_on_a_gat_student_is_a_one_line_error(tiny_npz, tmp_path, capsys):
    line = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--out", str(tmp_path / "o"),
                              "--student-hops", "2"])
    assert "option of the MLP student" in line


def test_an_mlp_student_with_hops_distils_on_inductive_graphs(ppi_root, tmp_path):
    # PPI trains on batches of graphs: the hops must stay inside each graph of a batch.
    root, _ = ppi_root
    out = tmp_path / "ppi-hops"
    assert main(["distill", "--dataset", "ppi", "--data-root", str(root), "--method", "mskd",
                 "--student-arch", "mlp", "--student-hops", "2", "--teacher-depths", "1,2",
                 "--epochs", "2", "--patience", "2", "--out", str(out), "--quiet"]) == 0
    student = model_from_checkpoint(load_checkpoint(out / "student-mskd.pt"))
    assert student.cfg.hops == 2
    data = load_dataset("ppi", root)
    g1, g2 = data.splits["test"][:2]
    both = torch.cat([g1.edge_index, g2.edge_index + g1.num_nodes], dim=1)
    z = student.predict(torch.cat([g1.x, g2.x]), both)
    torch.testing.assert_close(z[:g1.num_nodes], student.predict(g1.x, g1.edge_index))
    torch.testing.assert_close(z[g1.num_nodes:], student.predict(g2.x, g2.edge_index))
