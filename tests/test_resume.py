"""Interrupted training resumes exactly; run directories are locked; --force starts over.

The kill tests run the real CLI in a subprocess, ``kill -9`` it while a model is training, run
the same command again and require the numbers (and weights) of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import cli_error

from mskd import scale
from mskd.cli import main
from mskd.config import ModelConfig, ScaleConfig, TrainConfig
from mskd.data import load_npz
from mskd.models import GNN
from mskd.runs import LOCK_NAME, CheckpointError, RunDirError, RunLock, move_aside, resume_path
from mskd.train import LossTerm, Resume, TrainingError, fit, seed_everything

MODEL = ModelConfig(arch="gat", hidden_layers=2, hidden=8, heads=2)


def _train(data, resume: Resume | None, terms=(), epochs: int = 30, select: str = "score"):
    seed_everything(3)
    model = GNN(data.num_features, data.num_classes, MODEL)
    cfg = TrainConfig(lr=0.01, weight_decay=5e-4, epochs=epochs, patience=epochs, select=select)
    result = fit(model, data, cfg, terms=terms, seed=3, quiet=True, resume=resume)
    return model, result


class _Interrupt(Exception):
    pass


def _interrupt_at(epoch: int) -> LossTerm:
    def fn(step):
        if step.epoch == epoch:
            raise _Interrupt
        return step.logits.new_zeros(())
    return LossTerm("probe", fn)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("select", ["score", "score+loss"])
def test_fit_interrupted_and_resumed_equals_uninterrupted(tiny_npz, tmp_path, select):
    data = load_npz(tiny_npz)
    ref_model, ref = _train(data, None, terms=[_interrupt_at(-1)], select=select)
    resume = Resume(tmp_path / "m.resume", {"k": 1}, every_s=0.0)
    with pytest.raises(_Interrupt):
        _train(data, resume, terms=[_interrupt_at(17)], select=select)
    assert torch.load(resume.path, weights_only=True)["epoch"] == 16
    model, res = _train(data, resume, terms=[_interrupt_at(-1)], select=select)
    assert _same_weights(model, ref_model)
    assert (res.best_epoch, res.val, res.val_loss) == (ref.best_epoch, ref.val, ref.val_loss)
    assert [h["task"] for h in res.history] == [h["task"] for h in ref.history]


def test_sampled_training_resumes_bit_identically(tiny_npz, tmp_path):
    # Neighbour sampling draws from generators of its own: they are part of the saved state.
    data = load_npz(tiny_npz)
    sampled = ScaleConfig("neighbor", fanout=(3, 2), batch_size=16)

    def train(resume, stop_at):
        seed_everything(3)
        model = GNN(data.num_features, data.num_classes, MODEL)
        cfg = TrainConfig(lr=0.01, weight_decay=5e-4, epochs=12, patience=12)
        res = fit(model, data, cfg, terms=[_interrupt_at(stop_at)], seed=3, quiet=True,
                  resume=resume, **scale.fit_kwargs_teacher(model, data, sampled, 3))
        return model, res

    ref_model, ref = train(None, -1)
    resume = Resume(tmp_path / "m.resume", {"k": 1}, every_s=0.0)
    with pytest.raises(_Interrupt):
        train(resume, 7)
    model, res = train(resume, -1)
    assert _same_weights(model, ref_model)
    assert [h["task"] for h in res.history] == [h["task"] for h in ref.history]


def test_a_finished_state_is_not_trained_further(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)
    resume = Resume(tmp_path / "m.resume", {"k": 1}, every_s=1e9)  # saved once: at the end
    model, res = _train(data, resume, epochs=8)
    state = torch.load(resume.path, weights_only=True)
    assert state["finished"] and state["epoch"] == 8
    again, res2 = _train(data, resume, epochs=8)
    assert _same_weights(model, again) and res2.history == res.history


def test_a_state_from_other_settings_is_refused(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)
    resume = Resume(tmp_path / "m.resume", {"lr": 0.01}, every_s=0.0)
    _train(data, resume, epochs=3)
    with pytest.raises(RunDirError, match="interrupted training with different settings"):
        _train(data, Resume(resume.path, {"lr": 0.1}), epochs=3)


def test_a_corrupt_state_is_a_clear_error(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)
    path = tmp_path / "m.resume"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="unreadable resume state"):
        _train(data, Resume(path, {}), epochs=3)


def test_non_finite_loss_names_term_and_epoch_and_keeps_last_good_state(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)

    def explode(step):
        return step.logits.new_tensor(float("nan") if step.epoch == 6 else 0.0)

    resume = Resume(tmp_path / "m.resume", {}, every_s=0.0)
    with pytest.raises(TrainingError,
                       match=r"loss term 'boom' is nan at epoch 6.*state after epoch 5 is kept in"):
        _train(data, resume, terms=[LossTerm("boom", explode)])
    state = torch.load(resume.path, weights_only=True)
    assert state["epoch"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_weighted_total_stops_with_the_last_finite_state(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)
    # The term is finite (1e30) and so is its weight; their product is beyond float32.
    big = LossTerm("big", lambda step: step.logits.new_tensor(1e30),
                   weight=lambda epoch: 1e10 if epoch == 6 else 0.0)
    resume = Resume(tmp_path / "m.resume", {}, every_s=0.0)
    with pytest.raises(TrainingError, match=r"the weighted total loss is inf at epoch 6; "
                                            r"stopped.*state after epoch 5 is kept in"):
        _train(data, resume, terms=[big])
    assert torch.load(resume.path, weights_only=True)["epoch"] == 5


def test_non_finite_weights_are_never_kept_as_best_nor_saved(tiny_npz, tmp_path):
    data = load_npz(tiny_npz)

    def nan_gradient(step):
        # Value 0, gradient NaN (sqrt'(0) = inf times 0): every loss is finite, the step is not.
        return torch.sqrt((step.logits * 0).sum())

    resume = Resume(tmp_path / "m.resume", {}, every_s=0.0)
    seed_everything(3)
    model = GNN(data.num_features, data.num_classes, MODEL)
    cfg = TrainConfig(lr=0.01, weight_decay=5e-4, epochs=30, patience=30)
    term = LossTerm("nan-grad", nan_gradient, weight=lambda epoch: 1.0 if epoch == 6 else 0.0)
    with pytest.raises(TrainingError, match=r"parameter '[^']+' became non-finite at epoch 6; "
                                            r"stopped.*state after epoch 5 is kept in"):
        fit(model, data, cfg, terms=[term], seed=3, quiet=True, resume=resume)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the last finite weights
    state = torch.load(resume.path, weights_only=True)
    assert state["epoch"] == 5
    for weights in (state["model"], state["best_state"]):
        assert all(torch.isfinite(v).all() for v in weights.values())


def test_a_resume_state_with_non_finite_weights_is_refused(tiny_npz, tmp_path):
    # An older mskd could save one; resuming it would only repeat the failure.
    data = load_npz(tiny_npz)
    resume = Resume(tmp_path / "m.resume", {}, every_s=0.0)
    _train(data, resume, epochs=3)
    state = torch.load(resume.path, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, resume.path)
    with pytest.raises(CheckpointError, match=f"resume state {re.escape(str(resume.path))} holds "
                                              rf"non-finite weights \(NaN or inf in {name}\)"):
        _train(data, Resume(resume.path, {}), epochs=3)


def test_exploding_inputs_stop_the_cli_with_exit_1_and_keep_the_state(tiny_graph, write_npz,
                                                                          tmp_path, capsys):
    g = dict(tiny_graph)
    g["x"] = g["x"] * 1e36  # finite in float32 (so accepted), overflows inside the network
    path = write_npz(g, "huge.npz")
    out = tmp_path / "run"
    code = main(["distill", "--dataset", str(path), "--method", "none", "--teacher-depths", "1",
                 "--epochs", "3", "--out", str(out), "--quiet", "--checkpoint-every", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert re.match(r"mskd: error: teacher-1: loss term 'task' is (nan|inf) at epoch \d+; "
                    r"stopped, .* kept in .*teacher-1\.resume$", err), err
    assert (out / "teachers" / "teacher-1.resume").exists()
    assert not (out / "results.json").exists()


# --- kill -9 through the CLI ----------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mskd.cli", *args]


def _kill_when(cmd: list[str], marker: Path, timeout: float = 120.0) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``marker`` exists (it must, before the run ends)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"run ended before {marker.name} appeared: nothing to kill"
        assert time.monotonic() < end, f"{marker} never appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _student_record(out: Path) -> dict:
    s = json.loads((out / "results.json").read_text())["student"]
    return {k: s[k] for k in ("val", "test", "best_epoch", "history", "mean_attention")}


def _teacher_metrics(out: Path) -> list:
    return [{k: t[k] for k in ("val", "test", "best_epoch")}
            for t in json.loads((out / "results.json").read_text())["teachers"]]


@pytest.mark.slow
def test_distill_killed_mid_training_resumes_to_the_same_numbers(tiny_npz, tmp_path):
    args = ["distill", "--dataset", str(tiny_npz), "--method", "mskd", "--teacher-depths", "1,2",
            "--epochs", "40", "--patience", "40", "--quiet"]
    ref = tmp_path / "ref"
    subprocess.run(_cli(*args, "--out", str(ref)), check=True, stdout=subprocess.DEVNULL)
    for kill_in in ("teachers/teacher-2", "student-mskd"):
        out = tmp_path / kill_in.replace("/", "-")
        cmd = _cli(*args, "--out", str(out), "--checkpoint-every", "0")
        _kill_when(cmd, out / f"{kill_in}.resume")
        assert not (out / "results.json").exists()
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        # The dead process's lock did not block the rerun, and nothing half-done is left.
        assert not list(out.rglob("*.resume")) and not (out / LOCK_NAME).exists()
        assert _student_record(out) == _student_record(ref)
        assert _teacher_metrics(out) == _teacher_metrics(ref)
        a = torch.load(out / "student-mskd.pt", weights_only=True)["state_dict"]
        b = torch.load(ref / "student-mskd.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_compare_killed_mid_cell_resumes_to_the_same_table(tiny_npz, tmp_path):
    args = ["compare", "--dataset", str(tiny_npz), "--seeds", "0-1", "--methods", "none,kd",
            "--teacher-depths", "1", "--epochs", "30", "--patience", "30", "--quiet"]
    ref = tmp_path / "ref"
    subprocess.run(_cli(*args, "--out", str(ref)), check=True, stdout=subprocess.DEVNULL)
    out = tmp_path / "killed"
    cmd = _cli(*args, "--out", str(out), "--checkpoint-every", "0")
    _kill_when(cmd, out / "seed1" / "kd" / "student-kd.resume")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def table(path: Path) -> list:
        rows = json.loads((path / "compare.json").read_text())["rows"]
        return [{k: r[k] for k in ("name", "val_mean", "val_std", "test_mean", "test_std")}
                for r in rows]

    assert table(out) == table(ref)


# --- locks and --force ------------------------------------------------------------------------------


def test_second_process_on_a_run_directory_is_refused(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    hold = ("import sys, time; from mskd.runs import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["distill", "--dataset", str(tiny_npz), "--method", "none", "--epochs", "2",
                     "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert f"in use by another mskd process (pid {holder.pid}" in err and "\n" not in err
    finally:
        holder.kill()
        holder.wait()
    # Its owner is dead now: the lock is stale and the next run takes it over.
    code = main(["distill", "--dataset", str(tiny_npz), "--method", "none",
                 "--teacher-depths", "1", "--epochs", "2", "--out", str(out)])
    assert code == 0
    assert f"taking over the stale lock of pid {holder.pid}" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["run", "teachers", "dangling"])
def test_a_symlinked_lock_is_refused_and_never_written_through(tiny_npz, tmp_path, capsys, where):
    victim = tmp_path / ("missing.txt" if where == "dangling" else "victim.txt")
    if where != "dangling":
        victim.write_text("precious\n")
    out = tmp_path / "out"
    locked = out / "teachers" if where == "teachers" else out
    locked.mkdir(parents=True)
    (locked / LOCK_NAME).symlink_to(victim)
    msg = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--teacher-depths", "1",
                             "--epochs", "1", "--quiet", "--device", "cpu", "--out", str(out)])
    assert msg == (f"mskd: error: {locked / LOCK_NAME} is a symbolic link (to {victim}); mskd "
                   "never writes through links in a run directory: remove it")
    if where == "dangling":
        assert not victim.exists()  # not created through the link either
    else:
        assert victim.read_text() == "precious\n"
    assert (locked / LOCK_NAME).is_symlink()
    assert not list(out.rglob("*.pt")) and not (out / "results.json").exists()


def test_lock_is_exclusive_within_a_process_and_released(tmp_path):
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(RunDirError, match="in use by another mskd process"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):  # free again
        pass


def _distill(npz: Path, out: Path, *extra: str) -> int:
    return main(["distill", "--dataset", str(npz), "--method", "none", "--teacher-depths", "1",
                 "--epochs", "3", "--out", str(out), "--quiet", *extra])


def test_finished_run_is_refused_then_started_over_with_force(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill(tiny_npz, out) == 0
    first = (out / "results.json").read_bytes()
    assert _distill(tiny_npz, out) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == first
    mtime = (out / "teachers" / "teacher-1.pt").stat().st_mtime_ns
    assert _distill(tiny_npz, out, "--force") == 0
    assert (out / "teachers" / "teacher-1.pt").stat().st_mtime_ns != mtime  # retrained


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_forced_run_that_fails_later_leaves_the_old_run_whole(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill(tiny_npz, out) == 0
    before = _tree(out)
    other = tmp_path / "other"
    assert main(["teachers", "--dataset", str(tiny_npz), "--teacher-depths", "1", "--epochs", "1",
                 "--quiet", "--device", "cpu", "--out", str(other)]) == 0
    # Accepted up front; fails only when the teachers of --teachers turn out to be GAT ones.
    argv = ["distill", "--dataset", str(tiny_npz), "--teacher-depths", "1", "--epochs", "1",
            "--device", "cpu", "--out", str(out), "--force", "--arch", "gcn",
            "--teachers", str(other / "teachers")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (aside,) = tmp_path.glob("run.replaced-*")
    assert f"--force: the previous run in {out} is now in {aside}" in err
    assert "trained with a different model config" in err
    assert _tree(aside) == before  # the old run, whole and finished
    assert not (out / "results.json").exists()  # the new one is clearly unfinished
    assert not list(out.rglob("*.pt"))


def _forced_on_a_finished_run(npz: Path, tmp_path: Path, capsys, command: str,
                              *extra: str) -> tuple[Path, str]:
    """A finished run, then ``command --force`` on it, refused: (run directory, error line); the
    run is checked byte-identical and not moved aside."""
    out = tmp_path / "run"
    assert _distill(npz, out) == 0
    before = _tree(out)
    msg = cli_error(capsys, [command, "--dataset", str(npz), "--teacher-depths", "1", "--epochs",
                             "1", "--quiet", "--device", "cpu", "--out", str(out), "--force",
                             *extra])
    assert _tree(out) == before and not list(tmp_path.glob("run.replaced-*"))
    return out, msg


def test_teachers_force_never_replaces_a_finished_runs_teachers(tiny_npz, tmp_path, capsys):
    out, msg = _forced_on_a_finished_run(tiny_npz, tmp_path, capsys, "teachers")
    assert msg == (f"mskd: error: {out / 'teachers'} holds the teachers of the finished run "
                   f"{out}; --force would replace them under its results.json. Train new "
                   "teachers into another --out or --teachers DIR, or start the whole run over "
                   "with mskd run --force")


def test_force_never_moves_a_finished_runs_teachers_aside(tiny_npz, tmp_path, capsys):
    # Sweep of 2026-12-01: `mskd distill --out RUN/teachers` (accepted: nothing there is a run)
    # then the same with --force renamed RUN/teachers to RUN/teachers.replaced-*, taking the
    # finished run's teacher checkpoints from under its results.json.
    run = tmp_path / "run"
    assert _distill(tiny_npz, run) == 0
    assert _distill(tiny_npz, run / "teachers") == 0
    before = _tree(run)
    msg = cli_error(capsys, ["distill", "--dataset", str(tiny_npz), "--teacher-depths", "1",
                             "--epochs", "1", "--quiet", "--device", "cpu",
                             "--out", str(run / "teachers"), "--force"])
    assert "holds the teachers of the finished run" in msg
    assert _tree(run) == before and not list(run.glob("teachers.replaced-*"))


def test_a_run_in_use_is_not_moved_aside(tmp_path):
    run = tmp_path / "run"
    (run / "teachers").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for busy in (run, run / "teachers"):
        with RunLock(busy), pytest.raises(RunDirError, match="in use by another mskd process"):
            move_aside(run)
        assert (run / "config.json").exists() and not list(tmp_path.glob("run.replaced-*"))
    (run / "teachers" / "sub").mkdir()
    for cwd, target in ((run, Path(".")), (run / "teachers" / "sub", run)):
        os.chdir(cwd)  # the test's own temporary directory is restored by its fixture
        with pytest.raises(RunDirError, match="while it holds the current directory"):
            move_aside(target)
    os.chdir(tmp_path)
    aside = move_aside(run)
    assert aside is not None and aside.name.startswith("run.replaced-") and not run.exists()
    assert (aside / "config.json").exists() and not list(aside.rglob(LOCK_NAME))


def test_force_with_teachers_inside_the_run_is_refused(tiny_npz, tmp_path, capsys):
    out, msg = _forced_on_a_finished_run(tiny_npz, tmp_path, capsys, "distill", "--teachers",
                                         str(tmp_path / "run" / "teachers"))
    assert f"lies inside {out}, which --force moves aside" in msg


def test_interrupted_run_with_other_settings_is_refused(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill(tiny_npz, out) == 0
    (out / "results.json").unlink()  # as if killed before the end
    assert _distill(tiny_npz, out, "--lr", "0.1") == 2
    err = capsys.readouterr().err
    assert "holds an interrupted run with other settings" in err and "lr" in err
    assert _distill(tiny_npz, out, "--lr", "0.1", "--force") == 0


def test_resume_state_is_never_mistaken_for_a_checkpoint(tmp_path):
    assert resume_path(tmp_path / "teacher-2.pt") == tmp_path / "teacher-2.resume"


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_bad_checkpoint_interval_is_a_usage_error(tiny_npz, capsys, value):
    msg = cli_error(capsys, ["distill", "--dataset", str(tiny_npz), "--checkpoint-every", value])
    assert f"argument --checkpoint-every: expected a finite number >= 0, got '{value}'" in msg
