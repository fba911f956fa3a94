"""Knobs behind teachers at published strength: which validation epoch training keeps
(``select="score"`` or the GAT paper's ``score+loss``), ``--teacher-residual`` and per-depth
teacher settings under ``--teacher-depths``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import cli_error

from mskd.cli import build_parser, main, resolve_config
from mskd.config import ConfigError, ModelConfig, RunConfig, TrainConfig, at_depths
from mskd.data import load_npz
from mskd.models import GNN
from mskd.train import LossTerm, Resume, fit, seed_everything

# (validation score, validation loss) per epoch. "score": epoch 2 has the best score and the
# three epochs after it none better, so patience 2 stops at epoch 4. "score+loss": epoch 2 sets
# a score mark, epochs 3-4 loss marks (each restarts patience), epoch 5 meets both marks at once
# and is kept; epochs 6-7 meet neither and patience stops at 7.
SCRIPT = [(0.5, 1.0), (0.7, 1.1), (0.6, 0.9), (0.6, 0.8), (0.7, 0.7), (0.1, 5.0), (0.1, 5.0),
          (0.1, 5.0)]


class _Interrupt(Exception):
    pass


def _scripted_fit(tiny_npz, select: str, resume: Resume | None = None, start: int = 1,
                  stop_at: int = -1, script: list[tuple[float, float]] = SCRIPT):
    data = load_npz(tiny_npz)
    seed_everything(0)
    model = GNN(data.num_features, data.num_classes, ModelConfig(arch="gcn", hidden=8))
    weights: list[dict[str, torch.Tensor]] = []
    it = iter(script[start - 1:])

    def interrupt(step):
        if step.epoch == stop_at:
            raise _Interrupt
        return step.logits.new_zeros(())

    def validate() -> tuple[float, float]:
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(it)

    cfg = TrainConfig(lr=0.01, weight_decay=0.0, epochs=len(script), patience=2, select=select)
    res = fit(model, data, cfg, seed=0, quiet=True, validate=validate, resume=resume,
              terms=[LossTerm("probe", interrupt)])
    return model, res, weights


@pytest.mark.parametrize(("select", "kept", "last"), [("score", 2, 4), ("score+loss", 5, 7)])
def test_select_keeps_and_stops_where_its_rule_says(tiny_npz, select, kept, last):
    model, res, weights = _scripted_fit(tiny_npz, select)
    assert (res.best_epoch, res.epochs_run) == (kept, last)
    assert (res.val, res.val_loss) == SCRIPT[kept - 1]
    restored = model.state_dict()
    assert all(torch.equal(restored[k], weights[kept - 1][k]) for k in restored)


def test_score_and_loss_marks_survive_a_resume(tiny_npz, tmp_path):
    # Interrupted after epoch 3, the marks are (0.7, 0.9) while the kept epoch is 1 at
    # (0.5, 1.0): epoch 4 must be judged against the marks (a new low loss only), not against
    # the kept epoch (which it would beat on both).
    script = SCRIPT[:4] + [(0.1, 5.0)] * 3
    _, ref, _ = _scripted_fit(tiny_npz, "score+loss", script=script)
    assert (ref.best_epoch, ref.epochs_run) == (1, 6)
    resume = Resume(tmp_path / "m.resume", {"k": 1}, every_s=0.0)
    with pytest.raises(_Interrupt):
        _scripted_fit(tiny_npz, "score+loss", resume, stop_at=4, script=script)
    _, res, _ = _scripted_fit(tiny_npz, "score+loss", resume, start=4, script=script)
    assert (res.best_epoch, res.epochs_run) == (1, 6)


def test_unknown_select_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown select 'loss'"):
        TrainConfig(select="loss").validate()


def test_default_select_leaves_saved_train_configs_as_they_were():
    # Checkpoints and resume keys compare these dicts: a field added at its old behaviour must
    # not make every existing checkpoint look like it came from other settings.
    assert "select" not in TrainConfig().to_dict()
    assert TrainConfig(select="score+loss").to_dict()["select"] == "score+loss"
    saved = RunConfig(dataset="cora").to_json_dict()
    for key in ("teacher_train", "student_train"):
        del saved[key]["select"]  # a config.json written before the field existed
    assert RunConfig.from_dict(saved) == RunConfig(dataset="cora")


def test_select_flag_sets_teachers_and_student_and_reaches_the_checkpoint(tiny_npz, tmp_path,
                                                                          capsys):
    cfg = resolve_config(build_parser().parse_args(
        ["run", "--dataset", str(tiny_npz), "--select", "score+loss"]))
    assert cfg.teacher_train.select == cfg.student_train.select == "score+loss"
    out = tmp_path / "t"
    assert main(["teachers", "--dataset", str(tiny_npz), "--teacher-depths", "1", "--epochs", "3",
                 "--select", "score+loss", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    payload = torch.load(out / "teachers" / "teacher-1.pt", weights_only=True)
    assert payload["train_config"]["select"] == "score+loss"
    msg = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--select", "loss"])
    assert "--select" in msg and "score+loss" in msg


@pytest.mark.parametrize("flag", ["on", "off"])
def test_teacher_residual_flag_sets_the_teachers_only(tiny_npz, flag):
    base = resolve_config(build_parser().parse_args(["run", "--dataset", str(tiny_npz)]))
    cfg = resolve_config(build_parser().parse_args(
        ["run", "--dataset", str(tiny_npz), "--teacher-residual", flag, "--teacher-depths", "1,2"]))
    assert [t.residual for t in cfg.teachers] == [flag == "on"] * 2
    assert cfg.student == base.student


def test_teacher_depths_keep_a_presets_shallow_and_deep_teachers_apart():
    shallow = ModelConfig(hidden_layers=1, residual=False)
    deep = (dataclasses.replace(shallow, hidden_layers=2, residual=True),
            dataclasses.replace(shallow, hidden_layers=3, residual=True))
    got = at_depths((shallow, *deep), (1, 2, 2, 4))
    assert [(t.hidden_layers, t.residual) for t in got] == [(1, False), (2, True), (2, True),
                                                            (4, True)]
    # Equidistant from 1 and 3: the deeper teacher's settings.
    assert at_depths((shallow, deep[1]), (2,))[0] == deep[0]
