"""Run directories and checkpoints: atomic writes, clear errors on corrupt files."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import socket
import stat
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, final

import torch

from .errors import CheckpointError, RunDirError


def new_run_dir(dataset: str, root: str | os.PathLike = "runs") -> Path:
    """Create and return ``ROOT/DATASET/<timestamp>``, a directory no other run has.

    Two runs started in the same second would share one timestamp: the second one gets
    ``<timestamp>-2`` (then ``-3``, ...). ``mkdir`` without ``exist_ok`` is the atomic claim.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = Path(root) / dataset
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot write to output directory {parent}: {e.strerror or e}") from None
    for n in itertools.count(1):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot write to output directory {path}: {e.strerror or e}") from None
        return path
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise RunDirError(f"cannot write to output directory {path}: {e.strerror or e}") from None
    return path


def _atomic(path: Path, write) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    A crash or a full disk leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); the file it becomes gets the mode any new file
        # gets (0666 less the umask), so others sharing a run directory can read the results.
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            # A full disk fails in write/fsync, whose errors name no file, and a rename onto a
            # directory names the temporary file, which is gone: name the file we meant to write.
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask (mkstemp's files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    _atomic(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    _atomic(path, lambda f: torch.save(payload, f))


_REQUIRED = ("kind", "model_config", "state_dict", "in_channels", "out_channels", "dataset")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; any problem is a CheckpointError."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        # weights_only: a checkpoint is data, never code to execute. Its unpickler warns about
        # the pickle protocol of some damaged files; the error below says all there is to say,
        # on one line.
        payload = _quiet_load(p)
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle errors, wrong format
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if msg.startswith("Weights only load failed"):
            # torch's text goes on to advise loading with weights_only=False, i.e. running
            # whatever code the file holds: never advice to give about an unknown file.
            msg = "not a file of tensors and plain data (mskd never unpickles anything else)"
        raise CheckpointError(f"corrupt or unreadable checkpoint {p}: {msg}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{p} is not an mskd checkpoint (missing fields)")
    bad = non_finite(payload["state_dict"])
    if bad:
        # Scores and predictions of such weights are meaningless (every logit NaN scores as
        # class 0); a teacher with them would poison every student distilled from it.
        raise CheckpointError(f"{p} holds non-finite weights (NaN or inf in {bad}); it cannot "
                              "be used: retrain the model")
    return payload


def non_finite(state: Any) -> str | None:
    """Name of the first floating-point tensor of a state dict holding NaN or inf, or ``None``."""
    if not isinstance(state, dict):
        return None
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(t.isfinite().all()):
            return str(name)
    return None


def _quiet_load(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Path and values of the first place where two JSON-like trees differ, or ``None``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path} ({a!r} there, {b!r} now)"


# --- resume states ---------------------------------------------------------------------------------

RESUME_SUFFIX = ".resume"


def resume_path(checkpoint: Path) -> Path:
    """Where the training state behind ``checkpoint`` is kept until it is written.

    Not ``*.pt``: globbing a run directory for checkpoints must not pick up half-trained states.
    """
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + RESUME_SUFFIX)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (identifies a checkpoint whatever its name or mtime)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_resume_state(path: Path) -> dict[str, Any]:
    try:
        state = _quiet_load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable state means the same to the user
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(
            f"unreadable resume state {path} ({msg}); delete it (or use --force) to start that "
            "model over"
        ) from None
    if not isinstance(state, dict) or "epoch" not in state or "key" not in state:
        raise CheckpointError(f"{path} is not an mskd resume state; delete it to start over")
    bad = non_finite(state.get("model")) or non_finite(state.get("best_state"))
    if bad:
        # fit never saves such a state; one from an older mskd would resume into the failure.
        raise CheckpointError(f"resume state {path} holds non-finite weights (NaN or inf in "
                              f"{bad}); delete it (or use --force) to start that model over")
    return state


# --- run directory locks ---------------------------------------------------------------------------

LOCK_NAME = ".mskd.lock"


@final
class RunLock:
    """Exclusive use of a directory by one mskd process.

    ``DIR/.mskd.lock`` names the owner (host, pid, start time) for the error message; exclusion
    itself is an OS advisory lock (``flock``) on that file, which the kernel drops when the owner
    dies, ``kill -9`` included. A lock file left by a dead process is therefore stale by
    construction: the next process takes it over and says so. Used as a context manager.
    On systems without ``fcntl`` (Windows) no lock is taken.

    By default a busy directory is refused (:class:`RunDirError`). With ``waiting`` set, the lock
    is waited for instead, after logging that message with the owner's pid.
    """

    def __init__(self, directory: Path, log=None, waiting: str | None = None) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.log = log
        self.waiting = waiting
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _read_owner(fd)
                if self.waiting is not None:
                    if self.log is not None:
                        self.log(f"{self.waiting} (pid {owner.get('pid', '?')} on "
                                 f"{owner.get('host', '?')})")
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    os.close(fd)
                    raise RunDirError(
                        f"{self.path.parent} is in use by another mskd process (pid "
                        f"{owner.get('pid', '?')} on {owner.get('host', '?')}, since "
                        f"{owner.get('since', '?')}); wait for it to finish or use another --out"
                    ) from None
            # The previous owner may have removed the file between our open and our lock: then
            # we locked an orphan inode and must start again on the new file.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_owner(fd)
        if previous and self.log is not None:
            self.log(f"taking over the stale lock of pid {previous.get('pid', '?')} (process ended "
                     f"without releasing it) in {self.path.parent}")
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file, never through a symbolic link: the lock is truncated and rewritten,
        so a link planted at its name would overwrite whatever it points to."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP or self.path.is_symlink():
                raise RunDirError(
                    f"{self.path} is a symbolic link (to {os.readlink(self.path)}); mskd never "
                    "writes through links in a run directory: remove it"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirError(f"{self.path} is not a regular file; remove it")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            # Unlink while still holding the lock, so nobody can lock the old inode after us.
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


RUN_MARKERS = ("config.json", "results.json")


def move_aside(directory: Path) -> Path | None:
    """Rename a run directory that ``--force`` starts over to ``NAME.replaced-<timestamp>`` beside
    it, in one ``rename``, and return the new path; ``None`` when it holds no run (no
    ``config.json`` or ``results.json``), so a directory that merely contains other files is
    never moved.

    The old run is then intact under its new name whatever happens to the new one, which is
    unfinished until its ``results.json`` is written. Its lock and its teachers' are held across
    the rename, so a directory in use by another process is refused, not moved from under it.
    """
    directory = Path(directory).resolve()
    if not any((directory / m).is_file() for m in RUN_MARKERS):
        return None
    if directory.name == "teachers" and (directory.parent / "results.json").is_file():
        # A run was made in the teachers folder of a finished run: moving it aside would take
        # the finished run's teacher checkpoints from under its results.json.
        raise RunDirError(f"--force cannot move {directory} aside: it holds the teachers of the "
                          f"finished run {directory.parent}; use another --out")
    cwd = Path.cwd().resolve()
    if cwd == directory or directory in cwd.parents:
        # The process would go on working in the moved directory: "." now names the old run.
        raise RunDirError(f"--force cannot move {directory} aside while it holds the current "
                          "directory; run from outside it")
    locks = [RunLock(d) for d in (directory, directory / "teachers") if d.is_dir()]
    held: list[RunLock] = []
    try:
        for lock in locks:
            held.append(lock.acquire())
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in itertools.count(1):
            aside = directory.with_name(
                f"{directory.name}.replaced-{stamp}{'' if n == 1 else f'-{n}'}")
            if not aside.exists() and not aside.is_symlink():
                break
        try:
            os.rename(directory, aside)
        except OSError as e:
            raise RunDirError(f"cannot move {directory} aside to {aside}: {e.strerror or e}") from None
        for lock in held:  # released (and unlinked) where they now are
            lock.path = aside / lock.path.relative_to(directory)
        return aside
    finally:
        for lock in held:
            lock.release()


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}
