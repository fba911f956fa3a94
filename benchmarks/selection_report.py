"""The per-dataset tables of docs/results.md's "Teacher selection and graph-free students" section
(issues 19 and 20), from what ``benchmarks/selection.sh ROOT DATASET`` wrote:

- ``ROOT/D``: GAT student, methods none, kd, uniform, mskd, confidence, degree, gate (and
  calibrated where it was run); its
  ``degree.json`` (headroom and selection weights per bucket);
- ``ROOT/D-mlp``: the MLP student on the same teachers (``ROOT/D-mlpw``: four times wider;
  ``ROOT/D-mlphK``: with K propagated hops, ``--student-hops K``);
- ``ROOT/D-auto`` (optional): lsp and mskd with ``--kernel-scale auto`` on the same teachers;
- ``ROOT/D-same2`` (optional): the same-depth control, three 2-layer teachers;
- ``ROOT/D-mixed`` (optional): teachers of three architectures (GAT, GCN, SAGE at depths 1, 2, 3).

Paired differences are per seed (same teachers, split and seed), in points, mean ± sample std.

Usage: python benchmarks/selection_report.py ROOT DATASET
       python benchmarks/selection_report.py --summary ROOT/D1 ROOT/D2 ...  (one row per dataset)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _scores(rec: dict, metric: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for row in rec["per_seed"]:
        out.setdefault(row["name"], {})[row["seed"]] = row[metric]
    return out


def _pair(a: dict[int, float], b: dict[int, float]) -> str:
    d = [100 * (a[s] - b[s]) for s in sorted(a) if s in b]
    if not d:
        return "–"
    std = statistics.stdev(d) if len(d) > 1 else 0.0
    return f"{statistics.mean(d):+.2f} ± {std:.2f} ({sum(x > 0 for x in d)}/{len(d)})"


def paired(rows: list[tuple[str, dict, str, dict, str]]) -> str:
    """Rows of (label, record A, row name in A, record B, row name in B): A − B on val and test."""
    lines = ["| comparison | val: A − B | test: A − B |", "|---|---:|---:|"]
    for label, ra, na, rb, nb in rows:
        cells = []
        for metric in ("val", "test"):
            sa, sb = _scores(ra, metric), _scores(rb, metric)
            cells.append(_pair(sa[na], sb[nb]) if na in sa and nb in sb else "–")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _pm(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _attention(d: Path) -> str | None:
    """The --attention that ``mskd`` trained with in comparison directory ``d``."""
    cfg = _load(d / "compare-config.json")
    return cfg["config"]["distill"]["attention"] if cfg else None


def _mskd_pairs(a_dir: Path, a: dict, b_dir: Path, b: dict) -> list[tuple[str, str, str]]:
    """(label suffix, row in A, row in B) for every method both A and B trained the same way.

    ``mskd`` trains with each comparison's ``--attention``: the GAT comparisons here ran with
    ``--attention node``, the MLP ones with the default (calibrated), so A's mskd is paired with
    whichever of B's rows used the same teacher weighting, and never across weightings.
    """
    att_a, att_b = _attention(a_dir), _attention(b_dir)
    have_a, have_b = set(_scores(a, "val")), set(_scores(b, "val"))
    out = [(m, m, m) for m in ("none", "kd", "uniform") if m in have_a and m in have_b]
    if "mskd" in have_a:
        if att_a == att_b and "mskd" in have_b:
            out.append(("mskd", "mskd", "mskd"))
        elif att_a in have_b:
            out.append((f"mskd ({att_a})", "mskd", att_a))
    if "calibrated" in have_a and "calibrated" in have_b:
        out.append(("calibrated", "calibrated", "calibrated"))
    return out


def headroom(deg: dict) -> str:
    labels = [f"deg {b['lo']}" + (f"-{b['hi']}" if b["hi"] != b["lo"] else "") for b in deg["buckets"]]
    lines = ["| ensemble | val | test | " + " | ".join(labels) + " |",
             "|---|---:|---:|" + "---:|" * len(labels)]
    for e in deg["ensembles"]:
        buckets = " | ".join("–" if v is None else f"{100 * v:.1f}" for v in e["buckets"])
        lines.append(f"| {e['name']} | {_pm(e['val'], e['val_std'])} | "
                     f"{_pm(e['test'], e['test_std'])} | {buckets} |")
    return "\n".join(lines)


def weights(deg: dict) -> str:
    sel = deg.get("selection_weights") or {}
    att = deg.get("attention")
    tables = dict(sel.get("modes", {}))
    if att:
        tables = {"node (mskd, after training)": att["mean"], **tables}
    if not tables:
        return ""
    teachers = sel.get("teachers") or att["teachers"]
    labels = [f"deg {b['lo']}" + (f"-{b['hi']}" if b["hi"] != b["lo"] else "") for b in deg["buckets"]]
    lines = ["| mode | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for mode, table in tables.items():
        cells = [" / ".join(f"{v:.2f}" for v in row) for row in table]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return (f"Weights per bucket, {' / '.join(teachers)}:\n\n" + "\n".join(lines))


def lsp_signal(root: Path, seeds: list[int]) -> str:
    """First-epoch LSP loss and its gradient share, fixed divisor (ROOT/D, mskd) against auto
    (ROOT/D-auto, mskd), mean over seeds."""
    out = []
    for label, base in (("divisor 100", root), ("auto", root.with_name(root.name + "-auto"))):
        loss, share, late = [], [], []
        for s in seeds:
            rec = _load(base / f"seed{s}" / "mskd" / "results.json")
            if rec is None:
                continue
            h = rec["student"]["history"]
            loss.append(h[0]["lsp"])
            if "grad_share_lsp" in h[0]:
                share.append(h[0]["grad_share_lsp"])
                late.append(statistics.mean(x["grad_share_lsp"] for x in h
                                            if "grad_share_lsp" in x))
        if loss:
            sh = (f"{100 * statistics.mean(share):.1f} % / {100 * statistics.mean(late):.1f} %"
                  if share else "not recorded (run before gradient shares existed)")
            out.append(f"| {label} | {statistics.mean(loss):.3g} | {sh} | {len(loss)} |")
    if not out:
        return ""
    return ("| LSP kernel | LSP loss, epoch 1 | LSP gradient share, epoch 1 / mean of recorded "
            "epochs | seeds |\n|---|---:|---:|---:|\n" + "\n".join(out))


def summary(roots: list[Path]) -> str:
    """One row per comparison directory: the paired differences that decide the default teacher
    weighting (calibrated, node attention as mskd, uniform), and the MLP students against the GAT
    student with kd, when ``D-mlp`` / ``D-mlph2`` exist beside ``D``."""
    head = ("| dataset | seeds | calibrated − mskd (node), val | test | calibrated − uniform, val "
            "| test | mskd (node) − uniform, val | test | MLP kd − GAT kd, test | "
            "MLP 2 hops kd − GAT kd, test |")
    lines = [head, "|---|---|" + "---:|" * 8]
    for d in roots:
        gat = _load(d / "compare.json")
        if gat is None:
            continue
        sv, st = _scores(gat, "val"), _scores(gat, "test")
        cells = []
        for a, b in (("calibrated", "mskd"), ("calibrated", "uniform"), ("mskd", "uniform")):
            cells += [_pair(sv[a], sv[b]), _pair(st[a], st[b])] if a in sv and b in sv else ["–"] * 2
        for suffix in ("-mlp", "-mlph2"):
            mlp = _load(d.with_name(d.name + suffix) / "compare.json")
            mt = _scores(mlp, "test") if mlp else {}
            cells.append(_pair(mt["kd"], st["kd"]) if "kd" in mt and "kd" in st else "–")
        lines.append(f"| {d.name} | {len(gat['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1] == "--summary":
        print(summary([Path(p) for p in sys.argv[2:]]))
        return
    root, ds = Path(sys.argv[1]), sys.argv[2]
    d = root / ds
    gat = _load(d / "compare.json")
    if gat is None:
        raise SystemExit(f"{d}/compare.json missing: run benchmarks/selection.sh first")
    print(f"#### {ds}: GAT student\n")
    print((d / "compare.md").read_text())
    rows = [(f"{m} − uniform", gat, m, gat, "uniform")
            for m in ("mskd", "confidence", "degree", "gate", "calibrated", "kd")
            if m in _scores(gat, "val")]
    if {"calibrated", "mskd"} <= set(_scores(gat, "val")):
        rows.append(("calibrated − mskd (node attention)", gat, "calibrated", gat, "mskd"))
    best = max((r for r in gat["rows"] if r["kind"] == "teacher"), key=lambda r: r["val_mean"])
    rows += [(f"{m} − {best['name']} (best teacher on val)", gat, m, gat, best["name"])
             for m in ("uniform", "mskd", "gate", "calibrated") if m in _scores(gat, "val")]
    print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
    deg = _load(d / "degree.json")
    if deg is not None and deg.get("ensembles"):
        print(f"Headroom (teachers only; {deg['metric']}, %):\n\n{headroom(deg)}\n")
        w = weights(deg)
        if w:
            print(w + "\n")
    mlp = _load(root / f"{ds}-mlp" / "compare.json")
    if mlp is not None:
        print(f"#### {ds}: MLP student (same teachers)\n")
        print((root / f"{ds}-mlp" / "compare.md").read_text())
        rows = [(f"MLP {lab} − GAT {nb}", mlp, na, gat, nb)
                for lab, na, nb in _mskd_pairs(root / f"{ds}-mlp", mlp, d, gat)]
        rows += [(f"MLP {m} − MLP none", mlp, m, mlp, "none") for m in ("kd", "uniform", "mskd")]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
    wide = _load(root / f"{ds}-mlpw" / "compare.json")
    if wide is not None:
        print(f"#### {ds}: MLP student 4x wider, dropout 0.3 (same teachers)\n")
        print((root / f"{ds}-mlpw" / "compare.md").read_text())
        rows = [(f"wide MLP {lab} − GAT {nb}", wide, na, gat, nb)
                for lab, na, nb in _mskd_pairs(root / f"{ds}-mlpw", wide, d, gat)]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
    for hop_dir in sorted(root.glob(f"{ds}-mlph*")):
        hop = _load(hop_dir / "compare.json")
        if hop is None:
            continue
        k = hop_dir.name[len(f"{ds}-mlph"):]
        print(f"#### {ds}: MLP student with {k} propagated hops (same teachers)\n")
        print((hop_dir / "compare.md").read_text())
        rows = [(f"MLP-hops {lab} − GAT {nb}", hop, na, gat, nb)
                for lab, na, nb in _mskd_pairs(hop_dir, hop, d, gat)]
        if mlp is not None:
            rows += [(f"MLP-hops {lab} − MLP {nb}", hop, na, mlp, nb)
                     for lab, na, nb in _mskd_pairs(hop_dir, hop, root / f"{ds}-mlp", mlp)
                     if na != "uniform"]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
    auto = _load(root / f"{ds}-auto" / "compare.json")
    if auto is not None:
        print(f"#### {ds}: LSP kernel scale auto (same teachers)\n")
        rows = [(f"{m}, auto − divisor 100", auto, m, gat, m) for m in ("mskd",)]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
        print((root / f"{ds}-auto" / "compare.md").read_text())
        sig = lsp_signal(d, gat["seeds"])
        if sig:
            print(sig + "\n")
    same = _load(root / f"{ds}-same2" / "compare.json")
    if same is not None:
        print(f"#### {ds}: same-depth control (three 2-layer teachers)\n")
        print((root / f"{ds}-same2" / "compare.md").read_text())
        rows = [(f"{m}: depths 1,2,3 − 2,2,2", gat, m, same, m) for m in ("uniform", "mskd")]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
        sdeg = _load(root / f"{ds}-same2" / "degree.json")
        if sdeg is not None and sdeg.get("ensembles"):
            print(f"Headroom of the 2,2,2 teachers ({sdeg['metric']}, %):\n\n{headroom(sdeg)}\n")
    mixed = _load(root / f"{ds}-mixed" / "compare.json")
    if mixed is not None:
        print(f"#### {ds}: mixed-architecture teachers (GAT 1, GCN 2, SAGE 3 layers)\n")
        print((root / f"{ds}-mixed" / "compare.md").read_text())
        have = set(_scores(mixed, "val"))
        rows = [(f"mixed {m} − mixed uniform", mixed, m, mixed, "uniform")
                for m in ("mskd", "calibrated", "kd") if m in have]
        rows += [(f"{lab}: mixed − GAT teachers", mixed, na, gat, nb)
                 for lab, na, nb in _mskd_pairs(root / f"{ds}-mixed", mixed, d, gat)]
        print(f"Paired, per seed (seeds ahead):\n\n{paired(rows)}\n")
        mdeg = _load(root / f"{ds}-mixed" / "degree.json")
        if mdeg is not None and mdeg.get("ensembles"):
            print(f"Headroom of the mixed teachers ({mdeg['metric']}, %):\n\n{headroom(mdeg)}\n")


if __name__ == "__main__":
    main()
