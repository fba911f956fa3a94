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

:func:`compare_convs` (``--conv pyg,fused``) times message-passing implementations against each
other instead: every figure in a fresh child process (``python -m mskd.bench``, one job as JSON
on stdin), so each figure has its own peak RSS, the implementations alternating round by round.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .comparison import inference_time
from .config import ConfigError, RunConfig, TrainConfig
from .data import GraphDataset, load_dataset
from .distill import Objective
from .models import GNN, count_parameters, default_conv
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
                   teacher_dir: Path | None = None, conv: str | None = None,
                   depths: tuple[int, ...] | None = None) -> list[TrainedModel]:
    """One frozen teacher per configured depth (or per depth in ``depths``): loaded from
    ``teacher_dir/teacher-L.pt`` when given, else freshly initialised (same seed as a trained one
    would start from); on message-passing implementation ``conv`` (default: the current one)."""
    teachers = []
    for cfg in run.teachers:
        if depths is not None and cfg.hidden_layers not in depths:
            continue
        name = f"teacher-{cfg.hidden_layers}"
        if teacher_dir is not None:
            path = teacher_dir / f"{name}.pt"
            if not path.is_file():
                raise CheckpointError(f"no {name}.pt in {teacher_dir} (depths from --teacher-depths)")
            payload = load_checkpoint(path)
            check_compatible(payload, data, path)
            model = model_from_checkpoint(payload, path)
            if conv is not None:
                model = model.with_conv(conv)
        else:
            seed_everything(teacher_seed(run.seed, cfg.hidden_layers))
            model = GNN(data.num_features, data.num_classes, cfg, conv)
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


def _student(run: RunConfig, data: GraphDataset, device: torch.device, conv: str | None) -> GNN:
    seed_everything(run.seed)  # every mode starts from the same weights
    return GNN(data.num_features, data.num_classes, run.student, conv).to(device)


def _distill_epoch(run: RunConfig, data: GraphDataset, device: torch.device,
                   teachers: list[TrainedModel], conv: str | None, epochs: int,
                   cached: bool) -> tuple[float, float]:
    """(seconds per distillation epoch, seconds to build the teacher cache)."""
    model = _student(run, data, device, conv)
    t0 = time.perf_counter()
    objective = Objective(run.distill, data, teachers, model, teacher_cache=cached,
                          persist=False)
    build = time.perf_counter() - t0 if cached else 0.0
    return _epoch_seconds(model, data, run.student_train, epochs, objective), build


def _teacher_epoch(run: RunConfig, data: GraphDataset, device: torch.device, depth: int,
                   conv: str | None, epochs: int) -> float:
    seed_everything(teacher_seed(run.seed, depth))
    fresh = GNN(data.num_features, data.num_classes, run.teacher(depth), conv).to(device)
    return _epoch_seconds(fresh, data, run.teacher_train, epochs)


FEATURES = ("auto", "dense", "sparse")
# Below this share of non-zero features, "auto" times inference with sparse features (Coauthor's
# keyword features: under 1 %; bag-of-words citations: about 1.3 %; PPI: dense).
SPARSE_BELOW = 0.05


def feature_density(data: GraphDataset) -> float:
    """Share of non-zero entries in the test graphs' features."""
    graphs = data.splits["test"]
    nnz = sum(int(torch.count_nonzero(g.x)) for g in graphs)
    return nnz / max(1, sum(g.x.numel() for g in graphs))


def sparse_inputs(features: str, data: GraphDataset) -> bool:
    """Whether inference is timed with sparse features (``--features``)."""
    if features not in FEATURES:
        raise ConfigError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    return features == "sparse" or (features == "auto" and feature_density(data) < SPARSE_BELOW)


def run_bench(
    run: RunConfig, data: GraphDataset, device: torch.device, *, epochs: int = 3,
    teacher_epochs: int = 1, repeats: int = 20, warmup: int = 3,
    teacher_dir: Path | None = None, log: Callable[[str], None] = lambda msg: None,
    conv: str | None = None, features: str = "auto",
) -> dict[str, Any]:
    """Measure, in this order: inference of every model, the plain student epoch, the uncached
    and cached distillation epochs, each teacher's training epoch. Returns the bench record."""
    _check_counts(epochs, teacher_epochs, repeats, warmup)
    conv = conv or default_conv()
    data = data.to(device)
    teachers = bench_teachers(run, data, device, teacher_dir, conv)
    deepest = max(teachers, key=lambda t: t.layers)

    nodes = sum(int(g.num_nodes) for g in data.splits["test"])
    sparse = sparse_inputs(features, data)
    infer: dict[str, float] = {}
    for name, model in [("student", _student(run, data, device, conv))] + [
            (t.name, t.model) for t in teachers]:
        log(f"inference: {name}")
        infer[name] = inference_time(model, data, repeats, warmup, sparse)

    log("plain student epochs")
    plain = _epoch_seconds(_student(run, data, device, conv), data, run.student_train, epochs)
    times: dict[str, float] = {}
    cache_build = 0.0
    for mode in ("uncached", "cached"):
        log(f"distillation epochs, teacher cache {'on' if mode == 'cached' else 'off'}")
        times[mode], build = _distill_epoch(run, data, device, teachers, conv, epochs,
                                            mode == "cached")
        cache_build = max(cache_build, build)

    teacher_epoch: dict[str, float] = {}
    for t in teachers:
        log(f"training epochs: {t.name}")
        teacher_epoch[str(t.layers)] = _teacher_epoch(run, data, device, t.layers, conv,
                                                      teacher_epochs)

    params = {"student": count_parameters(_student(run, data, device, conv))} | {
        t.name: t.params for t in teachers}
    return {
        "dataset": data.name,
        "method": run.distill.method,
        "conv": conv,
        "feature_density": feature_density(data), "sparse_features": sparse,
        "teachers_source": _teachers_source(teacher_dir),
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


def _check_counts(epochs: int, teacher_epochs: int, repeats: int, warmup: int,
                  rounds: int = 1) -> None:
    for name, value in (("epochs", epochs), ("teacher_epochs", teacher_epochs),
                        ("repeats", repeats), ("rounds", rounds)):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")


def _teachers_source(teacher_dir: Path | None) -> str:
    return (f"loaded from {teacher_dir}" if teacher_dir is not None
            else "freshly initialised (untrained; timings do not depend on the weights)")


# --- one figure per process: comparing message-passing implementations ----------------------------


def figures(run: RunConfig) -> list[str]:
    """The figures ``--conv A,B`` compares: ``infer:<model>``, ``student_epoch``,
    ``distill_epoch_cached`` and ``teacher_epoch:<depth>``."""
    depths = sorted(t.hidden_layers for t in run.teachers)
    return ([f"infer:{m}" for m in ["student"] + [f"teacher-{d}" for d in depths]]
            + ["student_epoch", "distill_epoch_cached"]
            + [f"teacher_epoch:{d}" for d in depths])


def measure_figure(job: dict[str, Any]) -> dict[str, float]:
    """One figure on one implementation, in this process: ``{"seconds", "peak_rss_mb"}`` (and
    ``cache_build_s`` for the distillation epoch). ``job`` is what :func:`compare_convs` hands
    the child process: the run config as JSON, how to load the data, the figure and the
    counts."""
    torch.set_num_threads(job["threads"])
    run = RunConfig.from_dict(job["run"])
    device = torch.device(job["device"])
    data = load_dataset(job["dataset"], job["data_root"], split_seed=run.split_seed).to(device)
    conv, figure = job["conv"], job["figure"]
    teacher_dir = Path(job["teacher_dir"]) if job["teacher_dir"] else None
    kind, _, what = figure.partition(":")
    out: dict[str, float] = {}
    if kind == "infer":
        if what == "student":
            model = _student(run, data, device, conv)
        else:
            depth = int(what.rsplit("-", 1)[1])
            model = bench_teachers(run, data, device, teacher_dir, conv, (depth,))[0].model
        out["seconds"] = inference_time(model, data, job["repeats"], job["warmup"],
                                        sparse_inputs(job["features"], data))
    elif kind == "student_epoch":
        out["seconds"] = _epoch_seconds(_student(run, data, device, conv), data,
                                        run.student_train, job["epochs"])
    elif kind == "distill_epoch_cached":
        teachers = bench_teachers(run, data, device, teacher_dir, conv)
        out["seconds"], out["cache_build_s"] = _distill_epoch(run, data, device, teachers, conv,
                                                              job["epochs"], True)
    elif kind == "teacher_epoch":
        out["seconds"] = _teacher_epoch(run, data, device, int(what), conv,
                                        job["teacher_epochs"])
    else:
        raise ValueError(f"unknown figure {figure!r}")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _in_child(job: dict[str, Any]) -> dict[str, float]:
    # A fresh interpreter per figure: its peak RSS is that figure's alone (plus the data and the
    # imports, the same for every implementation), and no allocator state carries over.
    proc = subprocess.run([sys.executable, "-m", "mskd.bench"], input=json.dumps(job),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench figure {job['figure']} ({job['conv']}) failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_convs(
    run: RunConfig, data: GraphDataset, device: torch.device, convs: tuple[str, ...], *,
    dataset: str, data_root: str | None, epochs: int = 3, teacher_epochs: int = 1,
    repeats: int = 20, warmup: int = 3, rounds: int = 1, teacher_dir: Path | None = None,
    log: Callable[[str], None] = lambda msg: None, features: str = "auto",
) -> dict[str, Any]:
    """Every figure of :func:`figures` on every implementation in ``convs``, each measurement in
    its own process, the implementations alternating (their order reversed every round) so a
    change in the machine's load hits all of them alike. ``rounds`` measurements per figure and
    implementation; the median is reported. ``dataset``/``data_root`` say how a child loads the
    data (``data`` is only described). With two implementations, ``conv_speedup`` holds the
    first's figures divided by the second's (above 1: the second is faster or smaller), and
    ``conv_speedup_fastest_round`` the same ratios of each figure's fastest round."""
    _check_counts(epochs, teacher_epochs, repeats, warmup, rounds)
    base = {"run": run.to_json_dict(), "dataset": dataset, "data_root": data_root,
            "device": str(device), "threads": torch.get_num_threads(), "epochs": epochs,
            "teacher_epochs": teacher_epochs, "repeats": repeats, "warmup": warmup,
            "teacher_dir": str(teacher_dir) if teacher_dir else None, "features": features}
    got: dict[str, dict[str, list[dict[str, float]]]] = {c: {} for c in convs}
    for figure in figures(run):
        for r in range(rounds):
            for conv in (convs if r % 2 == 0 else convs[::-1]):
                log(f"{figure} ({conv}, round {r + 1}/{rounds})")
                got[conv].setdefault(figure, []).append(
                    _in_child({**base, "conv": conv, "figure": figure}))
    nodes = sum(int(g.num_nodes) for g in data.splits["test"])
    per_conv = {c: _conv_record(got[c], nodes) for c in convs}
    # The fastest round of each figure as well: on a machine shared with other work, a burst of
    # load slows some measurements and never speeds one up, so the minimum is the least disturbed.
    fastest = {c: _conv_record(got[c], nodes, min) for c in convs}
    rec: dict[str, Any] = {
        "dataset": data.name, "method": run.distill.method, "convs": list(convs),
        "teachers_source": _teachers_source(teacher_dir), "device": str(device),
        "epochs": epochs, "teacher_epochs": teacher_epochs, "repeats": repeats,
        "warmup": warmup, "rounds": rounds, "train_graphs": len(data.splits["train"]),
        "batch_size": run.student_train.batch_size, "infer_nodes": nodes,
        "feature_density": feature_density(data),
        "sparse_features": sparse_inputs(features, data),
        "params": {"student": count_parameters(GNN(data.num_features, data.num_classes,
                                                   run.student))}
        | {f"teacher-{t.hidden_layers}": count_parameters(
            GNN(data.num_features, data.num_classes, t)) for t in run.teachers},
        "by_conv": per_conv,
        "machine": machine_info(),
    }
    if len(convs) == 2:
        rec["conv_speedup"] = _ratios(per_conv[convs[0]], per_conv[convs[1]])
        rec["conv_speedup_fastest_round"] = _ratios(fastest[convs[0]], fastest[convs[1]])
    return rec


def _conv_record(got: dict[str, list[dict[str, float]]], nodes: int,
                 pick: Callable[[list[float]], float] = statistics.median) -> dict[str, Any]:
    """One implementation's figures, each the ``pick`` (median, or min) over its rounds."""
    def med(figure: str, key: str = "seconds") -> float:
        return pick([m[key] for m in got[figure]])

    infer = {f.split(":", 1)[1]: med(f) for f in got if f.startswith("infer:")}
    teacher = {f.split(":", 1)[1]: med(f) for f in got if f.startswith("teacher_epoch:")}
    return {
        "student_epoch_s": med("student_epoch"),
        "distill_epoch_s_cached": med("distill_epoch_cached"),
        "cache_build_s": med("distill_epoch_cached", "cache_build_s"),
        "distill_vs_plain_epoch": med("distill_epoch_cached") / med("student_epoch"),
        "teacher_epoch_s": teacher,
        "infer_s": infer,
        "throughput_nodes_s": {k: nodes / v for k, v in infer.items()},
        "peak_rss_mb": {f: med(f, "peak_rss_mb") for f in got},
        "all": got,
    }


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "teacher_epoch": {d: a["teacher_epoch_s"][d] / b["teacher_epoch_s"][d]
                          for d in a["teacher_epoch_s"]},
        "student_epoch": a["student_epoch_s"] / b["student_epoch_s"],
        "distill_epoch_cached": a["distill_epoch_s_cached"] / b["distill_epoch_s_cached"],
        "infer": {m: a["infer_s"][m] / b["infer_s"][m] for m in a["infer_s"]},
        "peak_rss_mb": {f: a["peak_rss_mb"][f] / b["peak_rss_mb"][f] for f in a["peak_rss_mb"]},
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
        f"(median of {rec['repeats']} forwards over {rec['infer_nodes']:,} test nodes, "
        f"{'sparse' if rec['sparse_features'] else 'dense'} features, "
        f"{rec['feature_density']:.2%} non-zero)"),
        f"peak RSS: {rec['peak_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines) + "\n"


def format_conv_comparison(rec: dict[str, Any]) -> str:
    """A ``--conv A,B`` bench record as a table: one column per implementation."""
    convs, m = rec["convs"], rec["machine"]
    by = rec["by_conv"]
    lines = [
        (f"mskd bench: {rec['dataset']}, method {rec['method']}, device {rec['device']}, "
         f"implementations {' vs '.join(convs)} (median of {rec['rounds']} alternating rounds, "
         "each figure in its own process)"),
        (f"machine: {m['cpu']}, {m['cores']} cores, torch threads {m['threads']}, "
         f"torch {m['torch']}, torch_geometric {m['torch_geometric']}, {m['date']}"),
        "",
        f"{'figure':<28}" + "".join(f"{c:>12}" for c in convs) + "    peak RSS MB"
        + ("" if len(convs) != 2 else f"{'ratio':>10}"),
    ]

    def row(label: str, figure: str, values: list[float]) -> str:
        rss = " / ".join(f"{by[c]['peak_rss_mb'][figure]:.0f}" for c in convs)
        ratio = f"{values[0] / values[1]:>9.2f}x" if len(values) == 2 else ""
        return f"{label:<28}" + "".join(f"{v:>12.3f}" for v in values) + f"    {rss:<14}" + ratio

    for name in by[convs[0]]["infer_s"]:
        lines.append(row(f"inference {name} s", f"infer:{name}",
                         [by[c]["infer_s"][name] for c in convs]))
    lines.append(row("student epoch s", "student_epoch", [by[c]["student_epoch_s"] for c in convs]))
    lines.append(row("distill epoch (cached) s", "distill_epoch_cached",
                     [by[c]["distill_epoch_s_cached"] for c in convs]))
    for d in by[convs[0]]["teacher_epoch_s"]:
        lines.append(row(f"teacher-{d} epoch s", f"teacher_epoch:{d}",
                         [by[c]["teacher_epoch_s"][d] for c in convs]))
    lines.append("")
    for c in convs:
        lines.append(f"{c}: cached distillation epoch = {by[c]['distill_vs_plain_epoch']:.2f} x "
                     "the plain student epoch")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # The child of compare_convs: one job as JSON on stdin, its measurement as JSON on stdout.
    print(json.dumps(measure_figure(json.loads(sys.stdin.read()))))
