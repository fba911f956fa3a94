"""``mskd bench``: what distillation and inference cost on this machine, measured in one run.

Everything is timed in the same process, one measurement after the other, so the ratios (cached
vs uncached distillation epoch, student vs teacher inference) are comparable even on a busy
machine where the absolute seconds are not. What is measured:

- ``distill_epoch_s_cached`` / ``_uncached``: seconds per student distillation epoch (every
  training step plus the validation pass that ends an epoch) with the teacher cache, and with the
  teachers re-run on every step (``--no-teacher-cache``); ``cache_build_s`` is the one-off cost of
  filling the cache, paid before the first cached epoch.
- ``student_epoch_s``: a plain student epoch (no teachers), the floor a distillation epoch can
  reach.
- ``teacher_epoch_s``: seconds per training epoch of each teacher depth.
- ``infer_s`` / ``throughput_nodes_s``: median seconds of one eval-mode, no-autograd forward over
  the test split's full graphs (after warm-up runs), and the nodes per second that makes.

Teachers are freshly initialised unless a directory of trained ones is given: timing does not
depend on the weights, only on the architecture and the graph.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .compare import inference_time
from .config import RunConfig, TrainConfig
from .data import GraphDataset
from .distill import Objective
from .models import GNN, count_parameters
from .report import environment
from .runs import CheckpointError, load_checkpoint
from .teachers import TrainedModel, check_compatible, model_from_checkpoint, teacher_seed
from .train import fit, seed_everything


def cpu_model() -> str:
    """The CPU's marketing name (``lscpu``'s "Model name"), or the platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        **environment(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": datetime.date.today().isoformat(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def bench_teachers(run: RunConfig, data: GraphDataset, device: torch.device,
                   teacher_dir: Path | None = None) -> list[TrainedModel]:
    """One frozen teacher per configured depth: loaded from ``teacher_dir/teacher-L.pt`` when
    given, else freshly initialised (same seed as a trained one would start from)."""
    teachers = []
    for cfg in run.teachers:
        name = f"teacher-{cfg.hidden_layers}"
        if teacher_dir is not None:
            path = teacher_dir / f"{name}.pt"
            if not path.is_file():
                raise CheckpointError(f"no {name}.pt in {teacher_dir} (depths from --teacher-depths)")
            payload = load_checkpoint(path)
            check_compatible(payload, data, path)
            model = model_from_checkpoint(payload, path)
        else:
            seed_everything(teacher_seed(run.seed, cfg.hidden_layers))
            model = GNN(data.num_features, data.num_classes, cfg)
        model = model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        teachers.append(TrainedModel(name, model, model.cfg, count_parameters(model), 0.0, 0.0, 0,
                                     0.0))
    return teachers


def _epochs(base: TrainConfig, epochs: int) -> TrainConfig:
    # patience above the epoch count: early stopping must not cut a timed run short.
    return dataclasses.replace(base, epochs=epochs, patience=epochs + 1)


def _epoch_seconds(model: GNN, data: GraphDataset, cfg: TrainConfig, epochs: int,
                   objective: Objective | None = None) -> float:
    terms = objective.terms() if objective else ()
    extra = objective.extra_modules if objective else ()
    result = fit(model, data, _epochs(cfg, epochs), terms=terms, extra_modules=extra,
                 quiet=True)
    return result.train_s / result.epochs_run


def run_bench(
    run: RunConfig, data: GraphDataset, device: torch.device, *, epochs: int = 3,
    teacher_epochs: int = 1, repeats: int = 20, warmup: int = 3,
    teacher_dir: Path | None = None, log: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Measure, in this order: inference of every model, the plain student epoch, the uncached
    and cached distillation epochs, each teacher's training epoch. Returns the bench record."""
    for name, value in (("epochs", epochs), ("teacher_epochs", teacher_epochs),
                        ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    data = data.to(device)
    teachers = bench_teachers(run, data, device, teacher_dir)
    deepest = max(teachers, key=lambda t: t.layers)

    def student() -> GNN:
        seed_everything(run.seed)  # every mode starts from the same weights
        return GNN(data.num_features, data.num_classes, run.student).to(device)

    nodes = sum(int(g.num_nodes) for g in data.splits["test"])
    infer: dict[str, float] = {}
    for name, model in [("student", student())] + [(t.name, t.model) for t in teachers]:
        log(f"inference: {name}")
        infer[name] = inference_time(model, data, repeats, warmup)

    log("plain student epochs")
    plain = _epoch_seconds(student(), data, run.student_train, epochs)
    times: dict[str, float] = {}
    cache_build = 0.0
    for mode in ("uncached", "cached"):
        log(f"distillation epochs, teacher cache {'on' if mode == 'cached' else 'off'}")
        model = student()
        t0 = time.perf_counter()
        objective = Objective(run.distill, data, teachers, model,
                              teacher_cache=mode == "cached", persist=False)
        if mode == "cached":
            cache_build = time.perf_counter() - t0
        times[mode] = _epoch_seconds(model, data, run.student_train, epochs, objective)

    teacher_epoch: dict[str, float] = {}
    for t in teachers:
        log(f"training epochs: {t.name}")
        seed_everything(teacher_seed(run.seed, t.layers))
        fresh = GNN(data.num_features, data.num_classes, t.cfg).to(device)
        teacher_epoch[str(t.layers)] = _epoch_seconds(fresh, data, run.teacher_train,
                                                      teacher_epochs)

    params = {"student": count_parameters(student())} | {t.name: t.params for t in teachers}
    return {
        "dataset": data.name,
        "method": run.distill.method,
        "teachers_source": (f"loaded from {teacher_dir}" if teacher_dir is not None
                            else "freshly initialised (untrained; timings do not depend on "
                                 "the weights)"),
        "device": str(device),
        "epochs": epochs, "teacher_epochs": teacher_epochs, "repeats": repeats, "warmup": warmup,
        "train_graphs": len(data.splits["train"]),
        "batch_size": run.student_train.batch_size,
        "infer_nodes": nodes,
        "distill_epoch_s_cached": times["cached"],
        "distill_epoch_s_uncached": times["uncached"],
        "cache_speedup": times["uncached"] / times["cached"],
        "cache_build_s": cache_build,
        "student_epoch_s": plain,
        "distill_vs_plain_epoch": times["cached"] / plain,
        "teacher_epoch_s": teacher_epoch,
        "peak_rss_mb": peak_rss_mb(),
        "infer_s": infer,
        "throughput_nodes_s": {k: nodes / v for k, v in infer.items()},
        "params": params,
        "student_speedup_vs_deepest_teacher": infer[deepest.name] / infer["student"],
        "deepest_teacher": deepest.name,
        "machine": machine_info(),
    }


def format_bench(rec: dict[str, Any]) -> str:
    """The bench record as a short human-readable report."""
    m = rec["machine"]
    lines = [
        f"mskd bench: {rec['dataset']}, method {rec['method']}, device {rec['device']}",
        (f"machine: {m['cpu']}, {m['cores']} cores, torch threads {m['threads']}, "
        f"torch {m['torch']}, torch_geometric {m['torch_geometric']}, {m['date']}"),
        f"teachers: {rec['teachers_source']}",
        "",
        (f"distillation epoch, cached    {rec['distill_epoch_s_cached']:10.3f} s "
        f"(cache built once in {rec['cache_build_s']:.3f} s)"),
        f"distillation epoch, uncached  {rec['distill_epoch_s_uncached']:10.3f} s",
        f"cache speedup                 {rec['cache_speedup']:10.2f} x",
        (f"plain student epoch           {rec['student_epoch_s']:10.3f} s "
        f"(cached distillation = {rec['distill_vs_plain_epoch']:.2f} x)"),
    ]
    for depth, s in rec["teacher_epoch_s"].items():
        lines.append(f"teacher-{depth} training epoch     {s:10.3f} s")
    lines += ["", f"{'model':<12} {'params':>10} {'inference s':>12} {'nodes/s':>12}"]
    for name, s in rec["infer_s"].items():
        lines.append(f"{name:<12} {rec['params'][name]:>10,} {s:>12.4f} "
                     f"{rec['throughput_nodes_s'][name]:>12,.0f}")
    lines += [
        (f"student speedup vs {rec['deepest_teacher']}: "
        f"{rec['student_speedup_vs_deepest_teacher']:.2f} x "
        f"(median of {rec['repeats']} forwards over {rec['infer_nodes']:,} test nodes)"),
        f"peak RSS: {rec['peak_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines) + "\n"
