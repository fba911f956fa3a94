"""Teacher-side selection, --kernel-scale and the gradient shares, end to end on tiny graphs."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import cli_error

from mskd.cli import main
from mskd.data import load_dataset
from mskd.distill import static_weights
from mskd.selection import CALIBRATED, confidence_weights, fit_temperature
from mskd.targets import model_from_checkpoint


def test_gate_with_auto_kernel_scale_records_scales_and_gradient_shares(tiny_npz, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["distill", "--dataset", str(tiny_npz), "--method", "gate", "--kernel-scale", "auto",
                 "--teacher-depths", "1,2", "--epochs", "12", "--patience", "12",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "results.json").read_text())["student"]
    assert s["attention"] == "gate" and s["settings"]["kernel_scale"] == "auto"
    scales = s["teacher_kernel_scales"]
    assert len(scales) == 2 and all(0 < v != 100.0 for v in scales)
    by_epoch = {h["epoch"]: h for h in s["history"]}
    for e in (1, 11):
        shares = [by_epoch[e][f"grad_share_{t}"] for t in ("task", "lsp", "kd")]
        assert all(0.0 <= v <= 1.0 for v in shares)
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)  # each rounded to 6 places
    assert not any(k.startswith("grad_share") for k in by_epoch[2])
    # Gate weights are fitted per node: they are not all equal.
    assert len(s["mean_attention"]) == 2 and s["mean_attention"][0] != pytest.approx(0.5)


def test_auto_and_fixed_scales_give_different_structure_losses(tiny_npz, tmp_path, capsys):
    lsp = {}
    for scale in ("100", "auto"):
        out = tmp_path / scale
        assert main(["distill", "--dataset", str(tiny_npz), "--method", "lsp", "--kernel-scale", scale,
                     "--teachers", str(tmp_path / "t"), "--teacher-depths", "1",
                     "--epochs", "2", "--patience", "2", "--out", str(out), "--quiet",
                     "--device", "cpu"]) == 0, capsys.readouterr().err
        lsp[scale] = json.loads((out / "results.json").read_text())["student"]["history"][0]["lsp"]
    # The hidden distances here are far below 100: the divisor of 100 flattens both sides'
    # neighbour distributions, the median does not (tests/test_losses.py checks that directly).
    assert lsp["auto"] > lsp["100"]


@pytest.mark.parametrize("argv, says", [
    (["--kernel-scale", "auto", "--kernel", "rbf"], "--kernel rbf has none"),
    (["--kernel-scale", "0"], "expected 'auto' or a finite number"),
    (["--kernel-scale", "nan"], "expected 'auto' or a finite number"),
    (["--attention", "magic"], "unknown attention 'magic'"),
])
def test_bad_selection_flags_are_one_line_errors(tiny_npz, tmp_path, capsys, argv, says):
    line = cli_error(capsys, ["distill", "--dataset", str(tiny_npz), "--out", str(tmp_path / "o"),
                              "--quiet", *argv])
    assert says in line


def test_fitted_selection_on_an_inductive_dataset_is_refused_before_training(ppi_root, tmp_path,
                                                                              capsys):
    root, _ = ppi_root
    line = cli_error(capsys, ["run", "--dataset", "ppi", "--data-root", str(root), "--attention",
                              "degree", "--out", str(tmp_path / "o"), "--quiet"])
    assert "inductive" in line and "--attention confidence" in line
    assert not (tmp_path / "o" / "teachers").exists()


@pytest.mark.parametrize("method", ["calibrated", "degree"])
def test_validation_fitted_modes_need_two_validation_nodes(tiny_graph, write_npz, tmp_path,
                                                           capsys, method):
    n = tiny_graph["y"].shape[0]
    masks = {k: np.zeros(n, dtype=bool) for k in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][:30] = True
    masks["val_mask"][30] = True
    masks["test_mask"][31:] = True
    path = write_npz({**tiny_graph, **masks}, "one-val.npz")
    line = cli_error(capsys, ["run", "--dataset", str(path), "--method", method,
                              "--out", str(tmp_path / "o"), "--quiet"])
    assert "1 validation node(s); it needs at least 2" in line
    assert not (tmp_path / "o" / "teachers").exists()


def test_replicas_and_mixed_architectures_are_named_seeded_and_cached_apart(tiny_npz, tmp_path,
                                                                              capsys):
    from mskd.config import teacher_names
    from mskd.options import build_parser, resolve_config

    out = tmp_path / "rep"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "uniform",
                 "--teacher-depths", "1,1", "--epochs", "2", "--patience", "2",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0, capsys.readouterr().err
    s = json.loads((out / "results.json").read_text())["student"]
    assert s["teachers_used"] == ["teacher-1", "teacher-1-r1"]
    a = torch.load(out / "teachers" / "teacher-1.pt", weights_only=False)
    b = torch.load(out / "teachers" / "teacher-1-r1.pt", weights_only=False)
    assert a["seed"] != b["seed"]  # a replica is another draw, not a copy
    assert (out / "teachers" / "cache" / "outputs-t1-1-r1-l1.pt").exists()
    args = build_parser().parse_args(["run", "--dataset", str(tiny_npz), "--teacher-archs",
                                      "gat,gcn,sage"])
    cfg = resolve_config(args)
    assert [t.arch for t in cfg.teachers] == ["gat", "gcn", "sage"]
    assert teacher_names(cfg.teachers) == ["teacher-gat-1", "teacher-gcn-2", "teacher-sage-3"]


def test_a_default_comparison_trains_no_cell_twice(tiny_npz):
    from mskd.comparison import default_methods
    from mskd.distill import METHODS
    from mskd.options import build_parser, resolve_config

    def methods(*flags):
        args = build_parser().parse_args(["compare", "--dataset", str(tiny_npz), *flags])
        assert args.methods is None
        return default_methods(resolve_config(args))

    # mskd's default attention is calibrated: the method of that name would repeat its cells.
    assert methods() == [m for m in METHODS if m != "calibrated"]
    assert methods("--attention", "node") == list(METHODS)
    # With --attention uniform, mskd trains as the method uniform does.
    assert "uniform" in methods("--attention", "uniform")
    assert "mskd" not in methods("--attention", "uniform")


@pytest.mark.parametrize("argv, says", [
    (["--teacher-archs", "gat,gcn"], "--teacher-archs needs 1 or 3 values"),
    (["--teacher-archs", "gat,mlp,gcn"], "expected comma-separated architectures"),
])
def test_bad_teacher_archs_are_one_line_errors(tiny_npz, tmp_path, capsys, argv, says):
    line = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--out", str(tmp_path / "o"),
                              "--quiet", *argv])
    assert says in line


def test_selection_weights_follow_the_seed_nodes_of_sampled_batches(tiny_npz, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "confidence",
                 "--sampler", "neighbor", "--batch-size", "64", "--fanout", "5",
                 "--teacher-depths", "1,2", "--epochs", "2", "--patience", "2", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0, capsys.readouterr().err
    s = json.loads((out / "results.json").read_text())["student"]
    assert s["attention"] == "confidence"
    # Every node is a seed once per epoch, so the mean over batches is close to the mean of the
    # full-graph weights (the last, smaller batch counts as much as the others).
    g = load_dataset(str(tiny_npz)).splits["train"][0]
    z = torch.stack([model_from_checkpoint(torch.load(out / "teachers" / f"teacher-{d}.pt",
                                                      weights_only=False)).eval()(
        g.x, g.edge_index)[0].detach() for d in (1, 2)])
    want = confidence_weights(z, tau=0.1, multilabel=False).mean(0).tolist()
    assert s["mean_attention"] == pytest.approx(want, abs=0.03)


def test_calibrated_method_runs_end_to_end_transductive_and_inductive(tiny_npz, ppi_root,
                                                                        tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["distill", "--dataset", str(tiny_npz), "--method", "calibrated",
                 "--teacher-depths", "1,2", "--epochs", "3", "--patience", "3", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0, capsys.readouterr().err
    s = json.loads((out / "results.json").read_text())["student"]
    assert s["method"] == "calibrated" and s["attention"] == "calibrated"
    assert s["mean_attention"] == pytest.approx([0.5, 0.5])
    # PPI keeps its validation nodes in other graphs: each teacher's temperature is fitted once
    # on all of them, and every training node gets it.
    root, _ = ppi_root
    out = tmp_path / "p"
    assert main(["distill", "--dataset", "ppi", "--data-root", str(root), "--method", "calibrated",
                 "--teacher-depths", "1,2", "--epochs", "2", "--patience", "2", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0, capsys.readouterr().err
    s = json.loads((out / "results.json").read_text())["student"]
    assert s["attention"] == "calibrated" and math.isfinite(s["test"])
    data = load_dataset("ppi", data_root=str(root))
    teachers = [SimpleNamespace(model=model_from_checkpoint(
        torch.load(out / "teachers" / f"teacher-{d}.pt", weights_only=False))) for d in (1, 2)]
    temps = static_weights(CALIBRATED, data, teachers, tau=0.1, seed=0)
    z = torch.cat([torch.stack([t.model.eval()(g.x, g.edge_index)[0] for t in teachers])
                   for g in data.splits["val"]], dim=1).detach()
    y = torch.cat([g.y for g in data.splits["val"]])
    want = torch.stack([fit_temperature(zk, y, multilabel=True) for zk in z])
    assert sorted(temps) == [int(g.gid) for g in data.splits["train"]]
    for g in data.splits["train"]:
        assert temps[int(g.gid)].shape == (g.num_nodes, 2)
        torch.testing.assert_close(temps[int(g.gid)], want.expand(g.num_nodes, 2))
