"""Issue 19, teachers at published strength: the 1-layer GAT teacher of a preset, and variants of
it, over seeds 0-4 on the preset's split (mean ± sample std of validation and test accuracy).

Usage: python benchmarks/teacher_variants.py DATASET [OUT_DIR]   (default OUT_DIR runs/teacher-variants)
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

import torch

from mskd.config import preset
from mskd.context import RunContext
from mskd.data import load_dataset
from mskd.teachers import train_or_load_teachers

VARIANTS = {"preset": {}, "no-residual": {"residual": False}}


def main() -> None:
    ds = sys.argv[1]
    root = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/teacher-variants") / ds
    data = load_dataset(ds)
    base = preset(ds)
    ctx = RunContext(torch.device("cpu"), quiet=True)
    for name, over in VARIANTS.items():
        vals, tests = [], []
        for seed in range(5):
            run = dataclasses.replace(base, seed=seed,
                                      teachers=(dataclasses.replace(base.teachers[0], **over),))
            out = root / name / f"seed{seed}"
            out.mkdir(parents=True, exist_ok=True)
            [t] = train_or_load_teachers(run, data, out, ctx)
            vals.append(t.val)
            tests.append(t.test)
        print(f"{ds} {name}: val {100 * statistics.mean(vals):.2f} ± "
              f"{100 * statistics.stdev(vals):.2f}, test {100 * statistics.mean(tests):.2f} ± "
              f"{100 * statistics.stdev(tests):.2f}", flush=True)


if __name__ == "__main__":
    main()
