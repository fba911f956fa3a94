"""Results: the ``results.json`` record of a run and the tables printed for people."""

from __future__ import annotations

import csv
import io
import math
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
from .models import default_conv
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
        # Which message-passing implementation models were built on (mskd.convs).
        "conv": default_conv(),
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


# --- multi-seed comparison: aggregation and tables ------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (n - 1 in the denominator; 0 for a single value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def aggregate_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model over seeds, from per-seed cell rows.

    Each cell row holds ``name``, ``kind`` ("teacher" | "student"), ``method``, ``layers``,
    ``params``, ``val``, ``test``, ``train_s``, ``infer_s`` (and its ``seed``). Rows come out
    teachers first (by layers), then students in the order their names first appear.
    Scores get mean and sample std; times and params are averaged.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault(c["name"], []).append(c)
    teachers = sorted((g for g in groups.values() if g[0]["kind"] == "teacher"),
                      key=lambda g: g[0]["layers"])
    students = [g for g in groups.values() if g[0]["kind"] != "teacher"]
    rows = []
    for g in [*teachers, *students]:
        first = g[0]
        val_mean, val_std = mean_std([c["val"] for c in g])
        test_mean, test_std = mean_std([c["test"] for c in g])
        rows.append({
            "name": first["name"], "kind": first["kind"], "method": first.get("method"),
            "layers": first["layers"], "params": round(mean_std([c["params"] for c in g])[0]),
            "val_mean": val_mean, "val_std": val_std, "test_mean": test_mean, "test_std": test_std,
            "train_s": mean_std([c["train_s"] for c in g])[0],
            "infer_s": mean_std([c["infer_s"] for c in g])[0],
        })
    return rows


def _pm(mean: float, std: float, sep: str) -> str:
    return f"{mean:.4f} {sep} {std:.4f}"


def _compare_cells(rows: Sequence[dict[str, Any]], sep: str) -> list[list[str]]:
    return [
        [r["name"], r["kind"], str(r["layers"]), f"{r['params']:,}",
         _pm(r["val_mean"], r["val_std"], sep), _pm(r["test_mean"], r["test_std"], sep),
         f"{r['train_s']:.1f}", f"{r['infer_s'] * 1000:.2f}"]
        for r in rows
    ]


def _compare_header(metric: str) -> list[str]:
    return ["model", "kind", "layers", "params", f"val {metric}", f"test {metric}",
            "train s", "infer ms"]


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]],
                   right: Sequence[bool] | None = None) -> str:
    """A GitHub Markdown table; ``right[i]`` right-aligns column i (numbers)."""
    right = right or [False] * len(header)
    esc = [[c.replace("|", "\\|") for c in row] for row in [list(header), *map(list, body)]]
    widths = [max(3, *(len(row[i]) for row in esc)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(row, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return "\n".join([line(esc[0]), rule, *(line(row) for row in esc[1:])])


def compare_markdown(rows: Sequence[dict[str, Any]], metric: str, seeds: Sequence[int]) -> str:
    """Markdown table of :func:`aggregate_rows` output: mean ± sample std over ``seeds``."""
    body = _compare_cells(rows, "±")
    table = markdown_table(_compare_header(metric), body,
                           right=[False, False, True, True, True, True, True, True])
    note = (f"mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
            "test scores at the validation-best epoch; infer ms = median full-graph eval-mode "
            "forward over the test graphs")
    return f"{table}\n\n{note}\n"


COMPARE_CSV_FIELDS = ("name", "kind", "method", "layers", "params", "val_mean", "val_std",
                      "test_mean", "test_std", "train_s", "infer_s")


def compare_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV of :func:`aggregate_rows` output, one column per field, full precision."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COMPARE_CSV_FIELDS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COMPARE_CSV_FIELDS})
    return buf.getvalue()
