"""The persisted teacher cache: reused when its manifest matches, rebuilt (never used) when the
teachers, the graph or the file itself changed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mskd.config import DistillConfig, ModelConfig, RunConfig, TrainConfig, with_depths
from mskd.context import RunContext
from mskd.data import load_npz
from mskd.distill import Objective, TeacherOutputs, teacher_cache_file
from mskd.models import GNN
from mskd.runs import load_checkpoint, save_checkpoint
from mskd.teachers import train_or_load_teachers
from mskd.train import Step, seed_everything

CPU = torch.device("cpu")
CFG = DistillConfig(method="mskd", beta=1.0, gamma=1.0)


@pytest.fixture
def run_cfg() -> RunConfig:
    teacher = ModelConfig(arch="gat", hidden=4, heads=2, residual=True, dropout=0.0,
                          attn_dropout=0.0)
    train = TrainConfig(lr=0.01, epochs=2, patience=2)
    return RunConfig(dataset="tiny", teachers=with_depths(teacher, (1, 2)), student=teacher,
                     teacher_train=train, student_train=train, seed=1)


@pytest.fixture
def setup(run_cfg, tiny_npz, tmp_path):
    data = load_npz(tiny_npz)
    teacher_dir = tmp_path / "teachers"
    teachers = train_or_load_teachers(run_cfg, data, teacher_dir,
                                      RunContext(CPU, quiet=True))
    return data, teacher_dir, teachers


def _objective(data, teachers, run_cfg, **kw) -> tuple[Objective, list[str]]:
    logs: list[str] = []
    seed_everything(0)
    student = GNN(data.num_features, data.num_classes, run_cfg.student)
    return Objective(CFG, data, teachers, student, log=logs.append, **kw), logs


def _losses(obj: Objective, data, run_cfg) -> dict[str, float]:
    seed_everything(0)
    student = GNN(data.num_features, data.num_classes, run_cfg.student)
    g = data.splits["train"][0]
    logits, hidden = student(g.x, g.edge_index)
    step = Step(logits, hidden, g, 1)
    return {t.name: t.fn(step).item() for t in obj.terms()}


def test_loaded_cache_equals_fresh_one(setup, run_cfg, monkeypatch) -> None:
    data, teacher_dir, teachers = setup
    first, logs = _objective(data, teachers, run_cfg)
    path = teacher_dir / "cache" / "outputs-t1-2-l1.pt"
    assert first.outputs.source == "computed" and path.is_file()
    assert teacher_cache_file(teachers, "l1") == path
    assert logs == [f"teacher cache: wrote {path}"]

    def no_forward(*args, **kwargs):
        raise AssertionError("teachers were run although the cache file matches")

    with monkeypatch.context() as mp:
        mp.setattr(TeacherOutputs, "_run", no_forward)
        loaded, logs = _objective(data, teachers, run_cfg)
    assert loaded.outputs.source == "file" and logs == [f"teacher cache: loaded {path}"]
    uncached, _ = _objective(data, teachers, run_cfg, teacher_cache=False)
    a, b, c = (_losses(o, data, run_cfg) for o in (first, loaded, uncached))
    assert a == b  # bit for bit: the same tensors, saved and loaded
    assert set(a) == {"lsp", "kd"} and all(v > 0 for v in a.values())
    for k in a:
        assert a[k] == pytest.approx(c[k], rel=1e-5)


def test_no_teacher_cache_writes_nothing(setup, run_cfg) -> None:
    data, teacher_dir, teachers = setup
    _objective(data, teachers, run_cfg, teacher_cache=False)
    assert not (teacher_dir / "cache").exists()


def test_edited_teacher_checkpoint_rebuilds(setup, run_cfg) -> None:
    data, teacher_dir, teachers = setup
    _objective(data, teachers, run_cfg)
    path = teacher_dir / "teacher-2.pt"
    payload = load_checkpoint(path)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = payload["state_dict"][key] + 0.5
    save_checkpoint(path, payload)
    reloaded = train_or_load_teachers(run_cfg, data, teacher_dir,
                                      RunContext(CPU, quiet=True))
    obj, logs = _objective(data, reloaded, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0] == ("teacher cache stale: teachers[teacher-2].checkpoint_sha256; "
                       "rebuilding")
    # The rebuilt file matches the edited teacher: the next run loads it.
    again, logs = _objective(data, reloaded, run_cfg)
    assert again.outputs.source == "file"
    uncached, _ = _objective(data, reloaded, run_cfg, teacher_cache=False)
    a, b = _losses(again, data, run_cfg), _losses(uncached, data, run_cfg)
    assert a["lsp"] == pytest.approx(b["lsp"], rel=1e-5)


def test_weights_changed_in_memory_rebuild(setup, run_cfg) -> None:
    data, _, teachers = setup
    _objective(data, teachers, run_cfg)
    with torch.no_grad():
        next(teachers[0].model.parameters()).add_(1.0)
    obj, logs = _objective(data, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0] == "teacher cache stale: teachers[teacher-1].weights_sha256; rebuilding"


def test_other_dataset_rebuilds(setup, run_cfg, tiny_npz) -> None:
    data, _, teachers = setup
    _objective(data, teachers, run_cfg)
    other = load_npz(tiny_npz, split_seed=5)  # same graph, another split
    obj, logs = _objective(other, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0] == "teacher cache stale: fingerprint; rebuilding"


def test_other_node_order_rebuilds(setup, run_cfg) -> None:
    data, _, teachers = setup
    _objective(data, teachers, run_cfg)
    perm = torch.randperm(data.splits["train"][0].num_nodes, generator=torch.Generator().manual_seed(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    splits = {}
    for s, graphs in data.splits.items():
        g = graphs[0]
        splits[s] = [g.__class__(x=g.x[perm], edge_index=inv[g.edge_index], y=g.y[perm],
                                 mask=g.mask[perm], gid=0)]
    permuted = dataclasses.replace(data, splits=splits, _fingerprint=None)
    obj, logs = _objective(permuted, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0] == "teacher cache stale: fingerprint; rebuilding"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not-a-dict"])
def test_corrupt_cache_file_is_rebuilt(setup, run_cfg, damage) -> None:
    data, teacher_dir, teachers = setup
    first, _ = _objective(data, teachers, run_cfg)
    path = teacher_dir / "cache" / "outputs-t1-2-l1.pt"
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        torch.save([1, 2, 3], path)
    obj, logs = _objective(data, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0].startswith(f"teacher cache stale: unreadable {path}")
    assert logs[0].endswith("; rebuilding")
    assert _losses(obj, data, run_cfg) == _losses(first, data, run_cfg)
    again, _ = _objective(data, teachers, run_cfg)
    assert again.outputs.source == "file"


def test_malformed_content_is_rebuilt(setup, run_cfg) -> None:
    data, teacher_dir, teachers = setup
    _objective(data, teachers, run_cfg)
    path = teacher_dir / "cache" / "outputs-t1-2-l1.pt"
    payload = torch.load(path, weights_only=True)
    payload["graphs"][0] = payload["graphs"][0][:1]  # one teacher's outputs lost
    torch.save(payload, path)
    obj, logs = _objective(data, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0].startswith("teacher cache stale: malformed content")


def test_non_finite_cached_outputs_are_rebuilt(setup, run_cfg) -> None:
    # Sweep of 2026-12-01: a cache file edited to hold NaN was trusted; the student then stopped
    # with "loss term 'lsp' is nan" (exit 1), blaming training for a damaged file.
    data, teacher_dir, teachers = setup
    first, _ = _objective(data, teachers, run_cfg)
    path = teacher_dir / "cache" / "outputs-t1-2-l1.pt"
    payload = torch.load(path, weights_only=True)
    payload["graphs"][0][1]["logits"][3, 0] = float("nan")
    torch.save(payload, path)
    obj, logs = _objective(data, teachers, run_cfg)
    assert obj.outputs.source == "computed"
    assert logs[0].startswith("teacher cache stale: malformed content (graph 0 holds non-finite")
    assert _losses(obj, data, run_cfg) == _losses(first, data, run_cfg)


def test_single_teacher_method_has_its_own_file(setup, run_cfg) -> None:
    data, teacher_dir, teachers = setup
    _objective(data, teachers, run_cfg)
    logs: list[str] = []
    seed_everything(0)
    student = GNN(data.num_features, data.num_classes, run_cfg.student)
    Objective(dataclasses.replace(CFG, method="lsp"), data, teachers, student, log=logs.append)
    assert sorted(p.name for p in (teacher_dir / "cache").iterdir()) == [
        "outputs-t1-2-l1.pt", "outputs-t2-l1.pt"]


def test_in_memory_teachers_are_not_persisted(setup, run_cfg, tmp_path) -> None:
    data, _, teachers = setup
    loose = [dataclasses.replace(t, path=None) for t in teachers]
    obj, logs = _objective(data, loose, run_cfg)
    assert obj.outputs.source == "computed" and logs == []
