"""Run directories and checkpoints: atomic writes, clear errors on corrupt files."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the CLI prints it on one line and exits with code 2."""


class RunDirError(ValueError):
    """A run directory that cannot be used (finished run, not writable)."""


def default_run_dir(dataset: str, root: str | os.PathLike = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / dataset / stamp


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
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            # A full disk fails in write/fsync, whose errors name no file: name the one we lost.
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


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
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        # weights_only: a checkpoint is data, never code to execute. Its unpickler warns about
        # the pickle protocol of some damaged files; the error below says all there is to say,
        # on one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle errors, wrong format
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint {p}: {msg}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CheckpointError(f"{p} is not an mskd checkpoint (missing fields)")
    return payload
