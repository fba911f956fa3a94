"""Paired per-seed differences of one student method against every other row of a comparison.

Within a seed all methods share the same teachers, split and initialisation seed, so the
per-seed difference is a sharper test than comparing two means with their spreads.

``--against OTHER/compare.json`` instead pairs every row with the row of the same name in another
comparison over their common seeds (e.g. neighbour-sampled against full-batch training).

Usage: python benchmarks/paired.py OUT/compare.json [--method mskd] [--against OTHER/compare.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _scores(record: dict) -> dict[str, dict[int, float]]:
    scores: dict[str, dict[int, float]] = {}
    for row in record["per_seed"]:
        scores.setdefault(row["name"], {})[row["seed"]] = row["test"]
    return scores


def _diff_row(name: str, ours: dict[int, float], theirs: dict[int, float]) -> str:
    d = [100 * (ours[s] - theirs[s]) for s in sorted(ours) if s in theirs]
    std = statistics.stdev(d) if len(d) > 1 else 0.0
    return (f"| {name} | {statistics.mean(d):+.2f} ± {std:.2f} | "
            f"{', '.join(f'{x:+.1f}' for x in d)} | {sum(x > 0 for x in d)}/{len(d)} |")


def paired_table(record: dict, method: str) -> str:
    scores = _scores(record)
    if method not in scores:
        raise SystemExit(f"no {method!r} rows in this comparison; have: {', '.join(scores)}")
    ours = scores[method]
    lines = [f"| baseline | {method} − baseline, mean ± std (points) | per seed | seeds {method} ahead |",
             "|---|---:|---|---:|"]
    for name, theirs in scores.items():
        if name == method:
            continue
        lines.append(_diff_row(name, ours, theirs))
    return "\n".join(lines) + "\n"


def against_table(record: dict, other: dict) -> str:
    """Row by row: this comparison minus ``other``, over the seeds both have."""
    ours, theirs = _scores(record), _scores(other)
    common = [n for n in ours if n in theirs and set(ours[n]) & set(theirs[n])]
    if not common:
        raise SystemExit("the two comparisons share no row with a common seed")
    lines = ["| model | this − other, mean ± std (points) | per seed | seeds this ahead |",
             "|---|---:|---|---:|"]
    lines += [_diff_row(n, ours[n], theirs[n]) for n in common]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("compare_json", type=Path)
    p.add_argument("--method", default="mskd")
    p.add_argument("--against", type=Path, default=None)
    args = p.parse_args()
    record = json.loads(args.compare_json.read_text())
    if args.against is not None:
        print(against_table(record, json.loads(args.against.read_text())), end="")
    else:
        print(paired_table(record, args.method), end="")


if __name__ == "__main__":
    main()
