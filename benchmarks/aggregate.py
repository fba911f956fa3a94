"""Mean +- std over seeds of the results.json files under ROOT/seed*/<method>/ (Markdown), then
the per-seed test scores of every student method and their difference to ``none`` (paired: same
teachers within a seed)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(root: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(Path(root).glob("seed*/*/results.json"))]
    if not runs:
        sys.exit(f"no results under {root}")
    rows: dict[str, dict[str, list]] = {}
    for r in runs:
        for t in r["teachers"]:
            d = rows.setdefault(t["name"], {"params": t["params"], "val": {}, "test": {}})
            seed = r["config"]["seed"]
            d["val"][seed], d["test"][seed] = t["val"], t["test"]
        s = r["student"]
        d = rows.setdefault(f"student {s['method']}", {"params": s["params"], "val": {}, "test": {}})
        d["val"][r["config"]["seed"]], d["test"][r["config"]["seed"]] = s["val"], s["test"]

    def ms(xs: dict) -> str:
        v = [100 * x for x in xs.values()]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.2f} ± {sd:.2f}"

    from mskd.distill import METHODS

    order = [*sorted(k for k in rows if k.startswith("teacher")),
             *(f"student {m}" for m in METHODS if f"student {m}" in rows)]
    metric = runs[0]["metric"]
    print(f"| model | params | val {metric} (%) | test {metric} (%) | seeds |")
    print("|---|---:|---:|---:|---|")
    for name in order:
        d = rows[name]
        seeds = ",".join(str(s) for s in sorted(d["test"]))
        print(f"| {name} | {d['params']:,} | {ms(d['val'])} | {ms(d['test'])} | {seeds} |")

    students = [n for n in order if n.startswith("student ")]
    methods = [n.split(" ", 1)[1] for n in students]
    if "none" not in methods:
        return
    others = [m for m in methods if m != "none"]
    print()
    print("| seed | " + " | ".join(methods) + " | "
          + " | ".join(f"{m} − none" for m in others) + " |")
    print("|---|" + "---:|" * (len(methods) + len(others)))
    common = set.intersection(*(set(rows[n]["test"]) for n in students))
    for seed in sorted(common):
        t = {m: 100 * rows[f"student {m}"]["test"][seed] for m in methods}
        print(f"| {seed} | " + " | ".join(f"{t[m]:.1f}" for m in methods) + " | "
              + " | ".join(f"{t[m] - t['none']:+.1f}" for m in others) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
