"""Bad input through the command line: every case is one line ``mskd: error: ...`` on stderr,
exit code 2, no traceback, and nothing written that the error should have prevented.

The table cases build their input in a temporary directory and return the argv to run; the
loader's own unit tests (messages in detail) are in test_data.py, the fuzzing in
test_fuzz_npz.py.
"""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_error, make_graph

from mskd.cli import main
from mskd.distill import METHODS
from mskd.runs import save_checkpoint, write_json

N = 180  # nodes of make_graph(): 3 classes x 60


def _npz(tmp: Path, name: str = "g.npz", **change: object) -> str:
    """The tiny graph with some arrays replaced (``None`` drops a key), saved as ``.npz``."""
    arrays = {**make_graph(), **change}
    path = tmp / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def _masks(train: int = 60, val: int = 60) -> dict[str, np.ndarray]:
    idx = np.arange(N)
    return {"train_mask": idx < train, "val_mask": (idx >= train) & (idx < train + val),
            "test_mask": idx >= train + val}


def _with(arr: np.ndarray, index: tuple, value: object) -> np.ndarray:
    arr = arr.copy()
    arr[index] = value
    return arr


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _run(tmp: Path, dataset: str, *extra: str) -> list[str]:
    return ["run", "--dataset", dataset, "--quiet", "--device", "cpu", "--epochs", "1",
            "--out", str(tmp / "out"), *extra]


G = make_graph()
X, EI, Y = G["x"], G["edge_index"], G["y"]

# case name -> (argv built in tmp, expected part of the message). Each fails before anything is
# trained or written: the run directory must not exist afterwards.
DATA_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "unknown-method": (
        lambda t: _run(t, _npz(t), "--method", "mkd"),
        f"unknown method 'mkd'; valid: {', '.join(METHODS)}"),
    "unknown-method-in-compare": (
        lambda t: ["compare", "--dataset", _npz(t), "--methods", "kd,mkd", "--out",
                   str(t / "out")],
        f"unknown method 'mkd'; valid: {', '.join(METHODS)}"),
    "extra-key": (
        lambda t: _run(t, _npz(t, trian_mask=np.ones(N, dtype=bool))),
        "unexpected key(s) trian_mask; allowed: x, edge_index, y, train_mask, val_mask, test_mask"),
    "missing-y": (lambda t: _run(t, _npz(t, y=None)), "missing key(s) y"),
    "x-strings": (lambda t: _run(t, _npz(t, x=X.astype(str))), "x must be numeric"),
    "x-complex": (lambda t: _run(t, _npz(t, x=X.astype(np.complex64))), "x must be numeric"),
    "edges-float": (lambda t: _run(t, _npz(t, edge_index=EI.astype(np.float64))),
                    "edge_index must be an integer array, got dtype float64"),
    "y-float": (lambda t: _run(t, _npz(t, y=Y.astype(np.float32))),
                "single-label y must be integer class ids"),
    "mask-float": (lambda t: _run(t, _npz(t, **{**_masks(), "val_mask": np.full(N, 0.5)})),
                   "val_mask must be boolean"),
    "edge-too-large": (lambda t: _run(t, _npz(t, edge_index=_with(EI, (0, 3), N))),
                       f"edge_index refers to node {N}, outside 0..{N - 1}"),
    "edge-negative": (lambda t: _run(t, _npz(t, edge_index=_with(EI, (1, 0), -4))),
                      f"edge_index refers to node -4, outside 0..{N - 1}"),
    "label-gap": (lambda t: _run(t, _npz(t, y=_with(Y, 0, 7))),
                  "labels out of range: classes must be numbered 0..C-1 without gaps"),
    "mask-too-short": (lambda t: _run(t, _npz(t, **{**_masks(), "train_mask": np.ones(N - 1, bool)})),
                       f"train_mask must have shape [{N}], got [{N - 1}]"),
    "masks-overlap": (lambda t: _run(t, _npz(t, **{**_masks(), "test_mask": np.ones(N, bool)})),
                      "train/val/test masks overlap"),
    "empty-train-mask": (lambda t: _run(t, _npz(t, **_masks(train=0))),
                         "train_mask selects no nodes"),
    "class-too-small-to-split": (
        lambda t: _run(t, _npz(t, y=np.where(np.arange(N) < 10, 2, np.arange(N) % 2))),
        "class 2 has 10 nodes; a stratified split needs at least 51"),
    "tiny-multilabel-split": (
        lambda t: _run(t, _npz(t, x=X[:3], edge_index=np.zeros((2, 0), np.int64),
                               y=np.ones((3, 2), np.int64))),
        "3 nodes are too few for a random 60/20/20 split"),
    "zero-nodes": (lambda t: _run(t, _npz(t, x=X[:0], y=Y[:0], edge_index=EI[:, :0])),
                   "x must have shape [N, F] with N, F > 0, got [0, 16]"),
    "x-nan": (lambda t: _run(t, _npz(t, x=_with(X, (5, 1), np.nan))),
              "x contains NaN or infinite values"),
    "x-inf": (lambda t: _run(t, _npz(t, x=_with(X, (0, 0), -np.inf))),
              "x contains NaN or infinite values"),
    "x-beyond-float32": (lambda t: _run(t, _npz(t, x=_with(X.astype(np.float64), (0, 0), 1e300))),
                         "x has values beyond float32's range"),
    "pickled-object-array": (
        lambda t: _run(t, _npz(t, x=np.array(list(X), dtype=object))),
        "is not a readable .npz file (ValueError: Object arrays cannot be loaded"),
    "truncated-npz": (
        lambda t: _run(t, _write(t / "cut.npz", Path(_npz(t)).read_bytes()[:300])),
        "cut.npz is not a readable .npz file"),
    "pickle-not-npz": (lambda t: _run(t, _write(t / "p.npz", pickle.dumps(make_graph()))),
                       "p.npz is not a readable .npz file"),
    # Not numpy's "allow_pickle=False" hint: that would be advice to load the file unsafely.
    "text-file-npz": (lambda t: _run(t, _write(t / "g.npz", b"x,y\n1,2\n")),
                      ("g.npz is not a readable .npz file (not a zip archive of arrays: it starts "
                       "with b'x,y\\n'); save the graph with np.savez")),
    "directory-npz": (lambda t: _run(t, _mkdir(t / "g.npz")),
                      "g.npz is a directory, not a .npz graph file"),
    "teachers-is-out": (lambda t: _run(t, _npz(t), "--teachers", str(t / "out")),
                        "is the run directory itself; give the teachers a directory of their own"),
    "seed-beyond-int64": (lambda t: _run(t, _npz(t), "--seed", str(2**64)),
                          ("argument --seed: expected an integer in [0, 4294967295], got "
                           f"'{2**64}'")),
    "beta-nan": (lambda t: _run(t, _npz(t), "--beta", "nan"),
                 "argument --beta: expected a finite number in [0, 1e+06], got 'nan'"),
    "gamma-beyond-float32": (lambda t: _run(t, _npz(t), "--gamma", "1e39"),
                             "argument --gamma: expected a finite number in [0, 1e+06], got '1e39'"),
    "lr-inf": (lambda t: _run(t, _npz(t), "--lr", "inf"),
               "argument --lr: expected a finite number in (0, 1], got 'inf'"),
}


def _mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_line_exit_2(capsys, tmp_path, case) -> None:
    make_argv, expected = DATA_CASES[case]
    msg = cli_error(capsys, make_argv(tmp_path))
    assert expected in msg
    assert not (tmp_path / "out").exists()


# --- teacher checkpoints -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> tuple[Path, Path]:
    """One 1-epoch depth-1 teacher of the tiny graph: (graph path, teacher directory)."""
    base = tmp_path_factory.mktemp("bad-input-teacher")
    npz = base / "tiny.npz"
    np.savez(npz, **make_graph())
    out = base / "t"
    assert main(["teachers", "--dataset", str(npz), "--teacher-depths", "1", "--epochs", "1",
                 "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    return npz, out / "teachers"


def _damaged_teachers(tmp: Path, source: Path, damage: Callable[[bytes], bytes]) -> Path:
    teachers = tmp / "teachers"
    teachers.mkdir()
    (teachers / "teacher-1.pt").write_bytes(damage((source / "teacher-1.pt").read_bytes()))
    return teachers


def _edited_checkpoint(tmp: Path, source: Path, **model_config: object) -> str:
    """teacher-1.pt with its stored architecture changed (the weights left as they are)."""
    payload = torch.load(source / "teacher-1.pt", weights_only=True)
    payload["model_config"] = {**payload["model_config"], **model_config}
    return str(_save(tmp / "edited.pt", payload))


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _depth1(npz: object, *extra: str) -> list[str]:
    return ["run", "--dataset", str(npz), "--teacher-depths", "1", "--epochs", "1", "--quiet",
            "--device", "cpu", *extra]


CHECKPOINT_CASES: dict[str, tuple[Callable[[Path, Path, Path], list[str]], str]] = {
    "other-dataset": (
        lambda t, npz, td: [*_depth1(_npz(t, "other.npz", x=X + 1)), "--teachers", str(td)],
        "teacher-1.pt was trained on 'tiny', not 'other'"),
    "other-architecture": (
        lambda t, npz, td: [*_depth1(npz, "--arch", "gcn"), "--teachers", str(td)],
        "teacher-1.pt was trained with a different model config"),
    "other-input-dropout": (
        lambda t, npz, td: [*_depth1(npz, "--input-dropout", "sparse"), "--teachers", str(td)],
        "teacher-1.pt was trained with a different model config"),
    "truncated-in-teacher-dir": (
        lambda t, npz, td: [*_depth1(npz), "--teachers",
                            str(_damaged_teachers(t, td, lambda b: b[: len(b) // 2]))],
        "corrupt or unreadable checkpoint"),
    # Starts like a pickle: torch warns about its protocol, which must not reach stderr.
    "garbage-in-teacher-dir": (
        lambda t, npz, td: [*_depth1(npz), "--teachers",
                            str(_damaged_teachers(t, td, lambda b: b"\x80\x04garbage" * 50))],
        "corrupt or unreadable checkpoint"),
    "truncated-to-evaluate": (
        lambda t, npz, td: ["evaluate", "--device", "cpu",
                            _write(t / "cut.pt", (td / "teacher-1.pt").read_bytes()[:1000])],
        "corrupt or unreadable checkpoint"),
    "weights-do-not-fit": (
        lambda t, npz, td: ["evaluate", "--device", "cpu", _edited_checkpoint(t, td, hidden=3)],
        "weights do not fit the stored architecture"),
    "same-name-other-graph": (
        lambda t, npz, td: ["evaluate", "--device", "cpu", "--dataset",
                            _npz(t, "tiny.npz", x=np.hstack([X, X[:, :1]])),
                            str(td / "teacher-1.pt")],
        "was trained on a different version of tiny"),
    "not-an-mskd-checkpoint": (
        lambda t, npz, td: ["evaluate", "--device", "cpu", str(_save(t / "w.pt", {"w": 1}))],
        "is not an mskd checkpoint (missing fields)"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint_is_one_line_exit_2(capsys, tmp_path, teacher_dir, case) -> None:
    npz, teachers = teacher_dir
    before = {p.name: p.read_bytes() for p in teachers.iterdir()}
    make_argv, expected = CHECKPOINT_CASES[case]
    argv = make_argv(tmp_path, npz, teachers)
    msg = cli_error(capsys, [*argv, "--out", str(tmp_path / "out")] if argv[0] == "run" else argv)
    assert expected in msg
    assert {p.name: p.read_bytes() for p in teachers.iterdir()} == before  # never overwritten
    assert not list((tmp_path / "out").rglob("*.pt"))  # no teacher trained in its place


# --- unwritable output ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flag"),
    [("run", "--out"), ("teachers", "--teachers"), ("compare", "--out")],
)
def test_output_under_a_regular_file(capsys, tmp_path, tiny_npz, command, flag) -> None:
    # A directory cannot be made below a regular file, even by root (who ignores permissions).
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    target = blocker / "sub"
    argv = [command, "--dataset", str(tiny_npz), "--epochs", "1", "--quiet", "--device", "cpu",
            flag, str(target)]
    if command == "compare":
        argv += ["--seeds", "0", "--methods", "none"]
    msg = cli_error(capsys, argv)
    assert f"cannot write to output directory {target}" in msg and "Not a directory" in msg
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_output_directory(capsys, tmp_path, tiny_npz) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        msg = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--epochs", "1", "--quiet",
                                 "--device", "cpu", "--out", str(ro / "run")])
    finally:
        ro.chmod(0o700)
    assert f"cannot write to output directory {ro / 'run'}" in msg
    assert "Permission denied" in msg
    assert list(ro.iterdir()) == []


# --- full disk -----------------------------------------------------------------------------------


def _disk_full(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("write", "read"),
    [
        (lambda p, v: write_json(p, {"version": v}), lambda p: p.read_text()),
        (lambda p, v: save_checkpoint(p, {"version": torch.tensor(v)}),
         lambda p: int(torch.load(p, weights_only=True)["version"])),
    ],
    ids=["json", "checkpoint"],
)
def test_disk_full_keeps_previous_file(tmp_path, monkeypatch, write, read) -> None:
    path = tmp_path / "file"
    write(path, 1)
    before, old = path.read_bytes(), read(path)
    monkeypatch.setattr(os, "fsync", _disk_full)  # the data is written; making it durable fails
    with pytest.raises(OSError) as info:
        write(path, 2)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and read(path) == old  # previous version, not truncated
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temporary file left behind


def test_disk_full_through_the_cli(capsys, tmp_path, tiny_npz, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"from": "an earlier attempt"}\n')
    monkeypatch.setattr(os, "fsync", _disk_full)
    # --force: the earlier attempt's config differs, so without it the run is refused before
    # anything is written.
    msg = cli_error(capsys, ["run", "--dataset", str(tiny_npz), "--epochs", "1", "--quiet",
                             "--device", "cpu", "--out", str(out), "--force"])
    assert msg == f"mskd: error: No space left on device: {out / 'config.json'}"
    # --force moved the earlier attempt aside, whole; the new run never got its config.json.
    (aside,) = tmp_path.glob("out.replaced-*")
    assert (aside / "config.json").read_text() == '{"from": "an earlier attempt"}\n'
    assert not (out / "config.json").exists()
    leftovers = [p.name for p in tmp_path.rglob("*")
                 if p.suffix == ".tmp" or ".write-test-" in p.name]
    assert leftovers == []
