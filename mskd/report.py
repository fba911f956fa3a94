"""Results: the ``results.json`` record of a run and the tables printed for people."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import torch
import torch_geometric

from . import __version__
from .config import RunConfig
from .data import GraphDataset
from .evaluate import metric_name
from .teachers import TrainedModel


def model_row(m: TrainedModel) -> dict[str, Any]:
    return {
        "name": m.name, "layers": m.layers, "params": m.params, "val": m.val, "test": m.test,
        "best_epoch": m.best_epoch, "train_s": round(m.train_s, 3),
        "checkpoint": str(m.path) if m.path else None, "reused": m.reused,
    }


def environment() -> dict[str, Any]:
    return {
        "mskd": __version__, "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or None,
        "threads": torch.get_num_threads(),
    }


def results_record(
    run: RunConfig, data: GraphDataset, teachers: Sequence[TrainedModel],
    student: TrainedModel | None, details: dict | None, device: str, wall_s: float,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "dataset": data.name,
        "metric": metric_name(data.task),
        "teachers": [model_row(t) for t in teachers],
    }
    if student is not None:
        rec["student"] = {**model_row(student), **(details or {})}
    rec.update({
        "data": {"summary": data.summary(), **data.info, "fingerprint": data.fingerprint()},
        "config": run.to_dict(),
        "device": device,
        "wall_s": round(wall_s, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    })
    return rec


def format_table(rows: Sequence[dict[str, Any]], metric: str) -> str:
    """Aligned plain-text table of model rows (``model_row`` dicts)."""
    header = ["model", "layers", "params", f"val {metric}", f"test {metric}", "best ep", "train s"]
    body = [
        [r["name"], str(r["layers"]), f"{r['params']:,}", f"{r['val']:.4f}", f"{r['test']:.4f}",
         str(r["best_epoch"]), f"{r['train_s']:.1f}" + (" (cached)" if r.get("reused") else "")]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)
