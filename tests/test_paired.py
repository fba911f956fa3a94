"""benchmarks/paired.py: the per-seed differences published in docs/results.md and docs/scale.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "paired", Path(__file__).resolve().parents[1] / "benchmarks" / "paired.py")
paired = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired)


def _record(scores: dict[str, dict[int, float]]) -> dict:
    return {"per_seed": [{"name": n, "seed": s, "test": v}
                         for n, by_seed in scores.items() for s, v in by_seed.items()]}


def test_paired_table_against_other_methods():
    rec = _record({"none": {0: 0.80, 1: 0.70, 2: 0.75},
                   "mskd": {0: 0.83, 1: 0.72, 2: 0.74}})
    lines = paired.paired_table(rec, "mskd").splitlines()
    assert lines[2] == "| none | +1.33 ± 2.08 | +3.0, +2.0, -1.0 | 2/3 |"
    assert len(lines) == 3  # the method itself is not a baseline


def test_against_table_pairs_rows_by_name_over_common_seeds():
    ours = _record({"kd": {0: 0.81, 1: 0.79, 2: 0.90}, "only-here": {0: 0.5}})
    theirs = _record({"kd": {0: 0.80, 1: 0.80}, "only-there": {0: 0.5}})
    lines = paired.against_table(ours, theirs).splitlines()
    assert lines[2:] == ["| kd | +0.00 ± 1.41 | +1.0, -1.0 | 1/2 |"]
    with pytest.raises(SystemExit):
        paired.against_table(_record({"a": {0: 1.0}}), _record({"a": {1: 1.0}}))
