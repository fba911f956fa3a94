"""Tests for checkpoints (mskd.runs) and teacher training/reuse (mskd.teachers)."""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import datetime

import pytest
import torch

import mskd.runs
import mskd.teachers
from mskd.config import ModelConfig, RunConfig, TrainConfig, with_depths
from mskd.context import RunContext
from mskd.data import load_npz
from mskd.evaluate import evaluate_split
from mskd.runs import (
    CheckpointError,
    load_checkpoint,
    new_run_dir,
    save_checkpoint,
    write_json,
    write_text,
)
from mskd.teachers import model_from_checkpoint, train_or_load_teachers

CPU = torch.device("cpu")
QUIET = RunContext(CPU, quiet=True)


@pytest.fixture
def run_cfg() -> RunConfig:
    teacher = ModelConfig(arch="gat", hidden=4, heads=2, residual=True, dropout=0.2,
                          attn_dropout=0.2)
    train = TrainConfig(lr=0.01, weight_decay=5e-4, epochs=2, patience=2)
    return RunConfig(dataset="tiny", teachers=with_depths(teacher, (1, 2)), student=teacher,
                     teacher_train=train, student_train=train, seed=3)


@pytest.fixture
def data(tiny_npz):
    return load_npz(tiny_npz)


@pytest.fixture
def trained(run_cfg, data, tmp_path):
    teacher_dir = tmp_path / "teachers"
    return teacher_dir, train_or_load_teachers(run_cfg, data, teacher_dir, QUIET)


def test_teachers_trained_and_saved(trained, data) -> None:
    teacher_dir, teachers = trained
    assert [t.name for t in teachers] == ["teacher-1", "teacher-2"]
    assert sorted(p.name for p in teacher_dir.iterdir()) == ["teacher-1.pt", "teacher-2.pt"]
    for t in teachers:
        assert not t.reused and t.path == teacher_dir / f"{t.name}.pt"
        assert 1 <= t.best_epoch <= 2
        assert all(not p.requires_grad for p in t.model.parameters())  # frozen
        # The reported scores are those of the returned (val-best) weights.
        assert evaluate_split(t.model, data, "val")[0] == pytest.approx(t.val)
        assert evaluate_split(t.model, data, "test")[0] == pytest.approx(t.test)


def test_checkpoint_round_trip(trained, data, run_cfg) -> None:
    _, teachers = trained
    x, ei = data.splits["train"][0].x, data.splits["train"][0].edge_index
    for t in teachers:
        payload = load_checkpoint(t.path)
        assert payload["kind"] == "teacher" and payload["dataset"] == "tiny"
        assert payload["model_config"] == t.cfg.to_dict()
        assert ModelConfig(**payload["model_config"]) == t.cfg
        assert payload["train_config"] == run_cfg.teacher_train.to_dict()
        assert TrainConfig(**payload["train_config"]) == run_cfg.teacher_train
        assert payload["fingerprint"] == data.fingerprint()
        assert payload["metrics"]["val"] == t.val and payload["metrics"]["test"] == t.test
        model = model_from_checkpoint(payload, t.path)
        assert not model.training
        with torch.no_grad():
            expected, hidden_expected = t.model.eval()(x, ei)
            got, hidden_got = model(x, ei)
        assert torch.equal(got, expected)
        assert all(torch.equal(a, b) for a, b in zip(hidden_got, hidden_expected))


def test_teachers_reused_without_retraining(trained, run_cfg, data, monkeypatch) -> None:
    teacher_dir, first = trained
    mtimes = {p.name: p.stat().st_mtime_ns for p in teacher_dir.iterdir()}

    def no_training(*args, **kwargs):
        raise AssertionError("a matching teacher checkpoint must be reused, not retrained")

    monkeypatch.setattr(mskd.teachers, "fit", no_training)
    messages: list[str] = []
    second = train_or_load_teachers(run_cfg, data, teacher_dir,
                                    RunContext(CPU, sink=messages.append))
    assert all(t.reused for t in second)
    assert [(t.name, t.val, t.test, t.best_epoch, t.params) for t in second] == [
        (t.name, t.val, t.test, t.best_epoch, t.params) for t in first
    ]
    assert len(messages) == 2 and all(m.startswith("reusing teacher-") for m in messages)
    assert {p.name: p.stat().st_mtime_ns for p in teacher_dir.iterdir()} == mtimes
    g = data.splits["val"][0]
    for a, b in zip(first, second):
        assert torch.equal(a.model(g.x, g.edge_index)[0], b.model(g.x, g.edge_index)[0])


def test_only_missing_teacher_is_trained(trained, run_cfg, data) -> None:
    teacher_dir, _ = trained
    (teacher_dir / "teacher-2.pt").unlink()
    again = train_or_load_teachers(run_cfg, data, teacher_dir, QUIET)
    assert [t.reused for t in again] == [True, False]
    assert (teacher_dir / "teacher-2.pt").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: dataclasses.replace(c, teacher_train=dataclasses.replace(c.teacher_train,
                                                                             epochs=3)),
         "different train config"),
        (lambda c: dataclasses.replace(c, teachers=with_depths(
            dataclasses.replace(c.teachers[0], hidden=6), (1, 2))), "different model config"),
        (lambda c: dataclasses.replace(c, seed=4), "different seed"),
    ],
)
def test_mismatched_config_is_an_error(trained, run_cfg, data, change, message) -> None:
    teacher_dir, _ = trained
    before = {p.name: p.read_bytes() for p in teacher_dir.iterdir()}
    with pytest.raises(CheckpointError, match=message):
        train_or_load_teachers(change(run_cfg), data, teacher_dir, QUIET)
    assert {p.name: p.read_bytes() for p in teacher_dir.iterdir()} == before


def test_other_split_is_an_error(trained, run_cfg, tiny_npz) -> None:
    teacher_dir, _ = trained
    other = load_npz(tiny_npz, split_seed=1)
    with pytest.raises(CheckpointError, match="different version of tiny"):
        train_or_load_teachers(run_cfg, other, teacher_dir, QUIET)


# --- atomic writes and corrupt files -------------------------------------------------------------


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"weights": torch.arange(4)})
    old = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"weights": torch.arange(8)})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.arange(4))


def test_atomic_write_failure_on_new_file_leaves_nothing(tmp_path, monkeypatch) -> None:
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "sub" / "new.pt", {"a": 1})
    assert list((tmp_path / "sub").iterdir()) == []


def test_successful_writes_leave_no_temp_files(tmp_path) -> None:
    save_checkpoint(tmp_path / "a.pt", {"a": torch.ones(2)})
    save_checkpoint(tmp_path / "a.pt", {"a": torch.zeros(2)})
    write_json(tmp_path / "r.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "r.json"]
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["a"], torch.zeros(2))


def test_written_files_get_the_mode_of_any_new_file(tmp_path) -> None:
    # Sweep of 2026-12-01: files went through mkstemp and stayed 0600, unreadable to others
    # sharing a run directory, whatever the umask.
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "a.pt", {"a": torch.ones(2)})
        write_json(tmp_path / "r.json", {"x": 1})
        os.umask(0o077)
        write_text(tmp_path / "private.csv", "a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.csv").stat().st_mode) == 0o600


def test_a_directory_at_the_target_is_named_not_the_temporary_file(tmp_path) -> None:
    # Sweep of 2026-12-01: the error named ".student-mskd.pt.XXXX.tmp", a file already removed.
    (tmp_path / "student.pt").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        save_checkpoint(tmp_path / "student.pt", {"a": torch.ones(2)})
    assert info.value.filename == str(tmp_path / "student.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt"]


@pytest.mark.parametrize(
    "write",
    [lambda p: write_json(p, {"x": 1}), lambda p: write_text(p, "a,b\n"),
     lambda p: save_checkpoint(p, {"a": torch.ones(2)})],
    ids=["json", "csv", "checkpoint"],
)
def test_a_planted_symlink_is_replaced_never_written_through(tmp_path, write) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "file").symlink_to(victim)
    write(run / "file")
    assert victim.read_text() == "precious\n"
    assert (run / "file").is_file() and not (run / "file").is_symlink()


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 1, 8, 0, 0)

    monkeypatch.setattr(mskd.runs, "datetime", Frozen)
    made = [new_run_dir("cora", tmp_path) for _ in range(3)]
    assert [p.name for p in made] == ["20261201-080000", "20261201-080000-2", "20261201-080000-3"]
    assert all(p.is_dir() and p.parent == tmp_path / "cora" for p in made)


@pytest.fixture
def checkpoint_bytes(trained) -> bytes:
    _, teachers = trained
    return teachers[0].path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:100],
        lambda b: b"",
        lambda b: b"not a checkpoint at all\n" * 10,
        lambda b: bytes(len(b)),  # zeros
    ],
    ids=["half", "100-bytes", "empty", "text", "zeros"],
)
def test_corrupt_checkpoint(tmp_path, checkpoint_bytes, damage) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(damage(checkpoint_bytes))
    with pytest.raises(CheckpointError, match="corrupt or unreadable checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_not_an_mskd_checkpoint(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not an mskd checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not an mskd checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_that_is_a_directory_or_json_says_so(tmp_path) -> None:
    # Sweep of 2026-12-01: a directory was "not found"; a JSON file got torch's advice to load
    # it with weights_only=False, i.e. to run whatever code it holds.
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)
    path = tmp_path / "results.json"
    path.write_text('{"student": {"test": 0.5}}\n')
    with pytest.raises(CheckpointError, match="not a file of tensors") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_not_found(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_architecture(trained) -> None:
    _, teachers = trained
    payload = load_checkpoint(teachers[0].path)
    payload["model_config"] = {**payload["model_config"], "hidden": 6}
    with pytest.raises(CheckpointError, match="weights do not fit the stored architecture"):
        model_from_checkpoint(payload, teachers[0].path)
