"""Paired per-seed differences of one student method against every other row of a comparison.

Within a seed all methods share the same teachers, split and initialisation seed, so the
per-seed difference is a sharper test than comparing two means with their spreads.

Usage: python benchmarks/paired.py OUT/compare.json [--method mskd]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def paired_table(record: dict, method: str) -> str:
    scores: dict[str, dict[int, float]] = {}
    for row in record["per_seed"]:
        scores.setdefault(row["name"], {})[row["seed"]] = row["test"]
    if method not in scores:
        raise SystemExit(f"no {method!r} rows in this comparison; have: {', '.join(scores)}")
    ours = scores[method]
    lines = [f"| baseline | {method} − baseline, mean ± std (points) | per seed | seeds {method} ahead |",
             "|---|---:|---|---:|"]
    for name, theirs in scores.items():
        if name == method:
            continue
        d = [100 * (ours[s] - theirs[s]) for s in sorted(ours) if s in theirs]
        std = statistics.stdev(d) if len(d) > 1 else 0.0
        lines.append(f"| {name} | {statistics.mean(d):+.2f} ± {std:.2f} | "
                     f"{', '.join(f'{x:+.1f}' for x in d)} | {sum(x > 0 for x in d)}/{len(d)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("compare_json", type=Path)
    p.add_argument("--method", default="mskd")
    args = p.parse_args()
    print(paired_table(json.loads(args.compare_json.read_text()), args.method), end="")


if __name__ == "__main__":
    main()
