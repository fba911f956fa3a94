"""Plots drawn from saved JSON (``compare.json``, ``degree.json``), never from training state,
so ``mskd plot`` can redraw them without retraining.

matplotlib is optional (``pip install mskd[plot]``); it is imported only when a plot is drawn,
with the non-interactive Agg backend so plotting works on machines without a display. A figure
that ``mskd compare``/``mskd degree`` draw beside their tables is skipped without it
(:func:`draw_if_possible`): the numbers it shows are in the JSON and Markdown files already.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import MskdError

INSTALL = "pip install 'mskd[plot]' (or pip install matplotlib)"


class PlotError(MskdError):
    """A plot cannot be drawn (matplotlib missing, unknown JSON); one line for the CLI."""


def matplotlib_missing() -> str | None:
    """Why no figure can be drawn here, or None when matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib is not installed: {INSTALL}"
    return None


def draw_if_possible(draw: Callable[[dict[str, Any], Path], Path], rec: dict[str, Any],
                     path: Path) -> str | None:
    """``draw(rec, path)`` (:func:`plot_compare`, :func:`plot_degree`) when matplotlib is
    installed and None; without it nothing is drawn and the one line saying so is returned."""
    why = matplotlib_missing()
    if why is not None:
        return (f"{path.name} skipped: {why}; then draw it with "
                f"mskd plot --from {path.with_suffix('.json')}")
    draw(rec, path)
    return None


def require_matplotlib():
    """The pyplot module with the Agg backend, or a PlotError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"plots need matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bucket_tick(b: dict[str, Any]) -> str:
    rng = str(b["lo"]) if b["lo"] == b["hi"] else f"{b['lo']}–{b['hi']}"
    return f"{rng}\n(n={b['nodes']})"


def plot_degree(rec: dict[str, Any], path: Path) -> Path:
    """Metric per degree bucket for every model (error bars = std over seeds); below it, the
    mskd student's mean attention per teacher and bucket when the record has it."""
    plt = require_matplotlib()
    att = rec.get("attention")
    nrows = 2 if att else 1
    fig, axes = plt.subplots(nrows, 1, figsize=(8, 4.2 * nrows), squeeze=False)
    ax = axes[0][0]
    xs = list(range(len(rec["buckets"])))
    for m in rec["models"]:
        pts = [(x, v, s or 0.0) for x, v, s in zip(xs, m["mean"], m["std"]) if v is not None]
        if not pts:
            continue
        teacher = m["kind"] == "teacher"
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    label=m["name"], marker="o" if teacher else "s",
                    linestyle="-" if teacher else "--", capsize=3, linewidth=1.5)
    ax.set_xticks(xs, [_bucket_tick(b) for b in rec["buckets"]])
    ax.set_xlabel("in-degree bucket of test nodes (quantiles; self-loops not counted)")
    ax.set_ylabel(f"test {rec['metric']}")
    ax.set_title(f"{rec['dataset']}: test {rec['metric']} by node degree, "
                 f"mean ± std over {len(rec['seeds'])} seed(s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    if att:
        ax2 = axes[1][0]
        k = len(att["teachers"])
        width = 0.8 / k
        for j, name in enumerate(att["teachers"]):
            ax2.bar([x - 0.4 + width * (j + 0.5) for x in xs], [row[j] for row in att["mean"]],
                    width, yerr=[row[j] for row in att["std"]], capsize=2, label=name)
        ax2.axhline(1.0 / k, color="grey", linestyle=":", linewidth=1, label="uniform (1/K)")
        ax2.set_xticks(xs, [_bucket_tick(b) for b in rec["buckets"]])
        ax2.set_xlabel("in-degree bucket of test nodes")
        ax2.set_ylabel("attention weight, mean ± std over seeds")
        ax2.set_title(f"mskd student: post-training node attention per teacher "
                      f"(tau = {att['tau']})")
        ax2.set_ylim(*attention_axis_limits(att))
        ax2.grid(True, axis="y", alpha=0.3)
        ax2.legend(fontsize=8, ncol=k + 1, loc="upper center")
    return _save(fig, plt, path)


def attention_axis_limits(att: dict[str, Any]) -> tuple[float, float]:
    """y-axis range of the attention panel: every bar with its error bar and the uniform line,
    plus a band on top for the one-row legend, so the legend never hides an error bar."""
    k = len(att["teachers"])
    top = max([1.0 / k] + [m + s for ms, ss in zip(att["mean"], att["std"])
                           for m, s in zip(ms, ss)])
    return 0.0, top * 1.2


def score_axis_limits(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """y-axis range of the compare plot: every validation and test bar with its error bar, plus a
    margin, within [0, 1]."""
    ends = [(r[f"{split}_mean"] - r[f"{split}_std"], r[f"{split}_mean"] + r[f"{split}_std"])
            for r in rows for split in ("val", "test")]
    # Scores of compared models are close: start the axis near the lowest bar so differences show.
    return max(0.0, min(lo for lo, _ in ends) - 0.05), min(1.0, max(hi for _, hi in ends) + 0.05)


def plot_compare(rec: dict[str, Any], path: Path) -> Path:
    """Validation and test metric per model, bars = mean, error bars = std over seeds."""
    plt = require_matplotlib()
    rows = rec["rows"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(rows) + 2), 4.5))
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [r["val_mean"] for r in rows], 0.4,
           yerr=[r["val_std"] for r in rows], capsize=3, label="validation")
    ax.bar([x + 0.2 for x in xs], [r["test_mean"] for r in rows], 0.4,
           yerr=[r["test_std"] for r in rows], capsize=3, label="test")
    ax.set_xticks(xs, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(*score_axis_limits(rows))
    ax.set_ylabel(rec["metric"])
    ax.set_title(f"{rec['dataset']}: mean ± std over {len(rec['seeds'])} seed(s)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    import io

    from .runs import write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_from(json_path: Path, out: Path | None = None) -> Path:
    """Redraw the plot of a saved ``degree.json`` or ``compare.json`` (kind read from its keys);
    the PNG goes next to it with the same stem unless ``out`` is given."""
    json_path = Path(json_path)
    try:
        rec = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise PlotError(f"file not found: {json_path}") from None
    except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise PlotError(f"{json_path} is not readable JSON ({e})") from None
    out = Path(out) if out else json_path.with_suffix(".png")
    if isinstance(rec, dict) and "buckets" in rec and "models" in rec:
        kind, draw = "degree.json", plot_degree
    elif isinstance(rec, dict) and "rows" in rec and "seeds" in rec:
        kind, draw = "compare.json", plot_compare
    else:
        raise PlotError(f"{json_path} is neither a degree.json nor a compare.json record")
    try:
        return draw(rec, out)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        # The right keys, but not the record mskd wrote (edited by hand, or another program's).
        raise PlotError(f"{json_path} is not a well-formed {kind} record "
                        f"({type(e).__name__}: {e})") from None
