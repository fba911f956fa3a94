"""Issue 19, teachers at published strength: a preset's teachers and variants of them over seeds,
on the preset's split, selected on validation like every teacher (best validation epoch).

Each (variant, depth, seed) cell is a teacher checkpoint under OUT/DATASET/VARIANT/seed<k>/, so a
rerun reuses finished cells and an interrupted one resumes. Prints per variant and depth the mean
± sample std of validation and test accuracy and the paired validation difference against the
first variant given (the one to beat), and appends the rows to OUT/DATASET/variants.jsonl.

Usage:
    python benchmarks/teacher_variants.py DATASET [--out DIR] [--depths 1,2,3] [--seeds 0-4]
        [--patience N] VARIANT...
A VARIANT is a name below, or NAME=FIELD:VALUE,... over ModelConfig and TrainConfig fields
(e.g. nores-wd1e-3=residual:false,weight_decay:0.001). Default: preset no-residual.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from mskd.config import ModelConfig, TrainConfig, at_depths, preset
from mskd.context import RunContext
from mskd.data import load_dataset
from mskd.teachers import train_or_load_teachers

VARIANTS = {
    "preset": {},
    "no-residual": {"residual": False},
    # The Cora/CiteSeer 1-layer teacher before 2026-12-04 (commit 8d86bb2 dropped its residual).
    "with-residual": {"residual": True},
}
_MODEL = {f.name for f in dataclasses.fields(ModelConfig)}
_TRAIN = {f.name for f in dataclasses.fields(TrainConfig)}


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _variant(spec: str) -> tuple[str, dict]:
    if "=" not in spec:
        if spec not in VARIANTS:
            raise SystemExit(f"unknown variant {spec!r}; named ones: {', '.join(VARIANTS)}")
        return spec, VARIANTS[spec]
    name, body = spec.split("=", 1)
    over = {}
    for item in body.split(","):
        key, _, val = item.partition(":")
        if key not in _MODEL | _TRAIN:
            raise SystemExit(f"{spec}: {key!r} is no ModelConfig or TrainConfig field")
        over[key] = _value(val)
    return name, over


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def _stat(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.2f} ± {100 * sd:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("variants", nargs="*", default=["preset", "no-residual"])
    p.add_argument("--out", default="runs/teacher-variants")
    p.add_argument("--depths", default="1")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--patience", type=int, default=None,
                   help="override the preset's patience (benchmarks/selection.sh uses 50 on "
                        "Amazon and Coauthor)")
    args = p.parse_intermixed_args()
    ds = args.dataset
    root = Path(args.out) / ds
    data = load_dataset(ds)
    base = preset(ds)
    train = base.teacher_train
    if args.patience is not None:
        train = dataclasses.replace(train, patience=args.patience)
    depths = [int(d) for d in args.depths.split(",")]
    seeds = _seeds(args.seeds)
    ctx = RunContext(torch.device("cpu"), quiet=True)
    rows = {}
    first = _variant(args.variants[0])[0]
    for spec in args.variants:
        name, over = _variant(spec)
        model_over = {k: v for k, v in over.items() if k in _MODEL}
        train_over = {k: v for k, v in over.items() if k in _TRAIN}
        cell_train = dataclasses.replace(train, **train_over)
        for depth in depths:
            # The preset's teacher of (nearest) this depth, as --teacher-depths picks it.
            teacher = dataclasses.replace(at_depths(base.teachers, (depth,))[0], **model_over)
            cells = []
            for seed in seeds:
                run = dataclasses.replace(base, seed=seed, teachers=(teacher,),
                                          teacher_train=cell_train)
                out = root / name / f"seed{seed}"
                out.mkdir(parents=True, exist_ok=True)
                [t] = train_or_load_teachers(run, data, out, ctx)
                cells.append((t.val, t.test, t.best_epoch))
            vals, tests = [c[0] for c in cells], [c[1] for c in cells]
            rows[name, depth] = vals
            ref = rows.get((first, depth))
            diff = [a - b for a, b in zip(vals, ref)]
            line = (f"{ds} {name} depth {depth}: val {_stat(vals)}, test {_stat(tests)}, "
                    f"val − {first} {_stat(diff)} "
                    f"(best epochs {[c[2] for c in cells]})")
            print(line, flush=True)
            with open(root / "variants.jsonl", "a") as f:
                f.write(json.dumps({"dataset": ds, "variant": name, "override": over,
                                    "patience": train.patience, "depth": depth,
                                    "seeds": seeds, "val": vals, "test": tests,
                                    "best_epochs": [c[2] for c in cells]}) + "\n")


if __name__ == "__main__":
    main()
