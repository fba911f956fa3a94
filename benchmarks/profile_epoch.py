"""Where one student distillation epoch spends its time (the analysis in docs/performance.md).

    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --dataset coauthor-physics \
        --data-root ../shared/data [--no-teacher-cache] [--ops 12]

Teachers are freshly initialised (timing does not depend on their weights). The epoch runs
through the normal training loop; the phases are timed by wrapping the student's forward, each
loss term, the teacher-output lookup and the validation pass, and everything else in the epoch
(backward pass, optimiser, batching) is the remainder. ``--ops`` also prints the top operators by
self CPU time from ``torch.profiler`` for a second epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable

# No top-level ``import torch``: importing mskd first lets it switch on huge pages for torch's
# allocator (mskd/__init__.py), as the mskd command does.
import mskd.train
from mskd.bench import bench_teachers
from mskd.config import preset
from mskd.data import canonical_name, load_dataset
from mskd.distill import Objective
from mskd.models import GNN
from mskd.train import fit, resolve_device, seed_everything


def timed(fn: Callable, name: str, acc: dict[str, float]) -> Callable:
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        acc[name] += time.perf_counter() - t0
        return out
    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-teacher-cache", action="store_true")
    p.add_argument("--ops", type=int, default=0, help="top operators to print (0: no profiler)")
    args = p.parse_args()

    run = preset(canonical_name(args.dataset))
    data = load_dataset(args.dataset, args.data_root)
    print(data.summary())
    teachers = bench_teachers(run, data, resolve_device("cpu"))
    seed_everything(0)
    student = GNN(data.num_features, data.num_classes, run.student)
    acc: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    obj = Objective(run.distill, data, teachers, student,
                    teacher_cache=not args.no_teacher_cache, persist=False)
    print(f"objective + teacher cache: {time.perf_counter() - t0:.2f} s")
    obj.outputs = _TimedOutputs(obj.outputs, acc)
    student.forward = timed(student.forward, "student forward", acc)
    terms = [dataclasses.replace(t, fn=timed(t.fn, f"term {t.name}", acc)) for t in obj.terms()]
    evaluate = mskd.train.evaluate_split

    def validation(*a, **kw):
        # Validation runs the student's forward too: count that time once, under validation.
        before, t0 = acc["student forward"], time.perf_counter()
        out = evaluate(*a, **kw)
        acc["validation"] += time.perf_counter() - t0
        acc["student forward"] = before
        return out

    mskd.train.evaluate_split = validation
    cfg = dataclasses.replace(run.student_train, epochs=1, patience=2)
    res = fit(student, data, cfg, terms=terms, quiet=True)
    total = res.train_s
    print(f"one epoch ({'uncached' if args.no_teacher_cache else 'cached'}): {total:.2f} s")
    named = sum(v for k, v in acc.items() if k != "teacher outputs")
    for k, v in sorted(acc.items(), key=lambda kv: -kv[1]):
        note = " (inside the terms)" if k == "teacher outputs" else ""
        print(f"  {k:<22} {v:8.2f} s  {100 * v / total:5.1f} %{note}")
    rest = total - named
    print(f"  {'backward + optimiser':<22} {rest:8.2f} s  {100 * rest / total:5.1f} %")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(student, data, cfg, terms=terms, quiet=True)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


class _TimedOutputs:
    """Teacher-output lookup (cached) or teacher forwards (uncached), timed."""

    def __init__(self, inner, acc: dict[str, float]) -> None:
        self.inner, self.acc = inner, acc

    def __call__(self, g):
        t0 = time.perf_counter()
        out = self.inner(g)
        self.acc["teacher outputs"] += time.perf_counter() - t0
        return out


if __name__ == "__main__":
    main()
