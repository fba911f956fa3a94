"""The Python API: what the ``mskd`` commands do, callable from a program or a notebook.

``mskd.run(dataset, out=..., **options)`` is ``mskd run`` and returns its ``results.json`` record;
``mskd.compare(dataset, seeds=..., methods=..., out=..., **options)`` is ``mskd compare`` and
returns its ``compare.json`` record. ``options`` are the command's long flags with underscores
(``epochs=50``, ``teacher_depths=(1, 2, 3)``, ``no_teacher_cache=True``); they go through the
command line's own parser (:mod:`mskd.options`), so a bad option raises :class:`mskd.MskdError`
with the message the CLI prints on its one error line. The CLI (:mod:`mskd.cli`) parses its
arguments and calls the functions below on the same ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .config import ConfigError, RunConfig
from .context import RunContext, stderr_log
from .data import GraphDataset, load_dataset
from .distill import check_data
from .errors import MskdError, RunDirError, UsageError
from .models import set_default_conv
from .options import build_parser, resolve_config
from .runs import (
    RunLock,
    ensure_dir,
    first_difference,
    move_aside,
    new_run_dir,
    write_json,
    write_text,
)
from .targets import TrainedModel


def run(dataset: str, *, out: str | Path, **options: Any) -> dict:
    """Train (or reuse) the teachers, distil the student, write ``OUT/results.json``: what
    ``mskd run --dataset DATASET --out OUT ...`` does, without the printed table.

    ``options`` are ``mskd run``'s long flags with underscores: ``method="kd"``, ``epochs=50``,
    ``teacher_depths=(1, 2, 3)``, ``data_root=...``, ``seed=0``, ``quiet=True``, ... A flag
    without a value is ``True`` to give it. Returns the ``results.json`` record.

    Raises:
        MskdError: a bad option, missing data, an unusable run directory or checkpoint (the
            message the CLI prints).
    """
    done = run_args(parse("run", dataset=dataset, out=out, **options))
    if isinstance(done, int):  # --nproc N: the workers wrote it
        if done != 0:
            raise MskdError(f"the {options.get('nproc')} processes of the run failed (exit code "
                            f"{done}); their error is above")
        return _written(Path(out) / "results.json")
    return _written(done.out / "results.json")


def compare(dataset: str, *, seeds: str | Sequence[int], methods: str | Sequence[str],
            out: str | Path, **options: Any) -> dict:
    """Teachers once per seed and every method, mean +- std over seeds, written to
    ``OUT/compare.{json,csv,md}``: what ``mskd compare`` does. Rerunning resumes it.

    ``seeds`` is ``"0-4"`` or a list of ints, ``methods`` ``"none,kd,mskd"`` or a list of names;
    other ``options`` as for :func:`run`. Returns the ``compare.json`` record.
    """
    args = parse("compare", dataset=dataset, seeds=seeds, methods=methods, out=out, **options)
    rec, out_dir = compare_args(args, args.seeds, args.methods)[:2]
    if args.plot:
        from .plots import plot_compare

        draw_figure(plot_compare, rec, out_dir / "compare.png")
    return _written(out_dir / "compare.json")


def _written(path: Path) -> dict:
    # The record as a reader of the file sees it (lists, not the tuples of the configs).
    return json.loads(path.read_text())


def parse(command: str, **options: Any) -> argparse.Namespace:
    """``options`` as the parsed command line of ``mskd COMMAND``; refused as the CLI refuses
    them. Also selects the message-passing implementation (``conv``) for this process."""
    argv = [command]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue  # the flag's default
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    args = build_parser().parse_args(argv)
    args.argv = argv
    select_conv(args)
    return args


def select_conv(args: argparse.Namespace) -> None:
    # Set on every call: one process may run several commands (tests, notebooks).
    conv = getattr(args, "conv", None)
    set_default_conv(conv if isinstance(conv, str) else "fused")


@dataclass
class RunOutcome:
    """What a run produced: the record written to ``results.json``, and the models it scored."""

    record: dict
    out: Path
    teachers: list[TrainedModel]
    student: TrainedModel
    details: dict
    processes: int = 1


def run_args(args: argparse.Namespace) -> RunOutcome | int:
    """``mskd run`` / ``mskd distill`` on parsed arguments. With ``--nproc N`` (or under
    torchrun) see :func:`run_distributed`."""
    from .distill import train_student
    from .train import resolve_device

    if getattr(args, "nproc", 1) != 1 or distributed.launched():
        return run_distributed(args)
    t0 = time.perf_counter()
    cfg = resolve_config(args)
    ctx = run_context(args, resolve_device(args.device))
    data = load_data(args, cfg)
    out, teacher_dir = prepare_out(args, data.name)
    with RunLock(out, log=ctx.log):
        teachers = _start(args, cfg, data, out, teacher_dir, ctx)
        student, details = train_student(cfg, data, teachers, out, ctx)
        rec = _finish(cfg, data, teachers, student, details, ctx.device, out, t0)
    return RunOutcome(rec, out, teachers, student, details)


def run_distributed(args: argparse.Namespace) -> RunOutcome | int:
    """:func:`run_args` as one rank of a torchrun launch, or, with ``--nproc N`` outside one,
    the launch itself (then its exit code: the workers have reported any error).

    Rank 0 prepares the run directory and trains or checks the teachers while the other ranks
    wait; then every rank loads them and trains its shard of the student's seeds under DDP; rank
    0 alone writes checkpoints and results.
    """
    from .distill import train_student
    from .teachers import load_trained_teachers
    from .train import resolve_device

    t0 = time.perf_counter()
    cfg = resolve_config(args)
    if cfg.scale.sampler != "neighbor":
        raise UsageError("several processes train with mini-batches: add --sampler neighbor")
    if not distributed.launched():
        return distributed.launch(args.nproc, args.argv)
    device = resolve_device(args.device)
    distributed.setup(device)
    try:
        main = distributed.is_main()
        # Rank 0 alone says anything: the other ranks repeat its work.
        ctx = run_context(args, device, quiet=args.quiet or not main)
        # Each step's failure is agreed between the ranks (raised on all, printed by rank 0), so
        # no rank is left waiting in a collective for one that has stopped.
        data = distributed.on_every_rank(
            lambda: load_dataset(args.dataset, args.data_root, split_seed=cfg.split_seed))
        ctx.log(data.summary())
        out, teacher_dir = distributed.from_main(lambda: prepare_out(args, data.name))
        lock = RunLock(out, log=ctx.log)  # taken and held by rank 0 only
        trained: list = []

        def start() -> None:
            lock.acquire()
            trained.extend(_start(args, cfg, data, out, teacher_dir, ctx))

        try:
            distributed.from_main(start)
            teachers = distributed.on_every_rank(
                lambda: trained if main else load_trained_teachers(cfg, data, teacher_dir, ctx))
            student, details = train_student(cfg, data, teachers, out, ctx)
            rec = distributed.from_main(
                lambda: _finish(cfg, data, teachers, student, details, device, out, t0))
        finally:
            lock.release()
        return RunOutcome(rec, out, teachers, student, details, distributed.world())
    finally:
        distributed.shutdown()


def _start(args: argparse.Namespace, cfg: RunConfig, data: GraphDataset, out: Path,
           teacher_dir: Path, ctx: RunContext) -> list[TrainedModel]:
    """A run's first steps in its locked directory: refuse to resume one with other settings,
    record the config, train or reuse the teachers."""
    from .teachers import train_or_load_teachers

    check_interrupted(out, cfg, args.force)
    write_json(out / "config.json", cfg.to_dict())
    # --force starts over the teachers of this run, never those of a --teachers DIR.
    return train_or_load_teachers(cfg, data, teacher_dir,
                                  dataclasses.replace(ctx, fresh=ctx.fresh and not args.teachers))


def _finish(cfg: RunConfig, data: GraphDataset, teachers: list[TrainedModel],
            student: TrainedModel, details: dict, device: torch.device, out: Path,
            t0: float) -> dict:
    from .report import results_record

    rec = results_record(cfg, data, teachers, student, details, str(device),
                         time.perf_counter() - t0)
    write_json(out / "results.json", rec)
    return rec


def run_context(args: argparse.Namespace, device: torch.device,
                quiet: bool | None = None) -> RunContext:
    """The :class:`RunContext` of parsed arguments (``quiet``: in place of ``--quiet``)."""
    return RunContext(device, quiet=args.quiet if quiet is None else quiet,
                      checkpoint_every=args.checkpoint_every, fresh=args.force,
                      teacher_cache=not getattr(args, "no_teacher_cache", False))


def prepare_out(args: argparse.Namespace, dataset_name: str) -> tuple[Path, Path]:
    """The run directory and teacher directory of ``args``, created; a finished run is refused
    unless ``--force`` moves it aside first."""
    out = Path(args.out) if args.out else new_run_dir(dataset_name)
    if (out / "results.json").exists() and args.command != "teachers" and not args.force:
        raise RunDirError(
            f"{out} already holds a finished run (results.json); it is kept as it is. Choose "
            f"another --out, reuse its teachers with --teachers {out / 'teachers'}, or start it "
            "over with --force"
        )
    teacher_dir = Path(args.teachers) if args.teachers else out / "teachers"
    if args.command != "teachers" and teacher_dir.resolve() == out.resolve():
        # Both directories are locked for the whole run: one directory would be refused as "in
        # use" by this very process.
        raise UsageError(f"--teachers {args.teachers} is the run directory itself; give the "
                         f"teachers a directory of their own (default {out / 'teachers'})")
    if args.force and args.command == "teachers":
        _refuse_finished_teachers(teacher_dir)
    elif args.force:
        # All or nothing: the old run keeps its own directory, whole, under a new name; the new
        # one is unfinished until its results.json is written, whatever fails on the way.
        if args.teachers and out.resolve() in teacher_dir.resolve().parents:
            raise UsageError(f"--teachers {args.teachers} lies inside {out}, which --force "
                             "moves aside; leave --teachers out to retrain them, or give a "
                             "directory outside the run")
        aside = move_aside(out)
        if aside is not None:
            stderr_log(args.quiet)(f"--force: the previous run in {out} is now in {aside}")
    ensure_dir(out)
    ensure_dir(teacher_dir)
    return out, teacher_dir


def _refuse_finished_teachers(teacher_dir: Path) -> None:
    run = teacher_dir.parent
    if teacher_dir.name == "teachers" and (run / "results.json").exists():
        raise RunDirError(
            f"{teacher_dir} holds the teachers of the finished run {run}; --force would replace "
            "them under its results.json. Train new teachers into another --out or --teachers "
            "DIR, or start the whole run over with mskd run --force"
        )


def check_interrupted(out: Path, cfg: RunConfig, force: bool) -> None:
    """An unfinished run in ``out`` may be resumed only with the settings it started with."""
    path = out / "config.json"
    if force or not path.exists():
        return
    try:
        # Through the dataclasses, so settings added since (defaulting to their old behaviour)
        # do not make an older run look different.
        have = RunConfig.from_dict(json.loads(path.read_text())).to_json_dict()
    except (OSError, ValueError, ConfigError) as e:
        raise RunDirError(f"{path} is unreadable ({e}); use another --out or --force") from None
    diff = first_difference(have, cfg.to_json_dict())
    if diff:
        raise RunDirError(
            f"{out} holds an interrupted run with other settings: {diff}. Rerun with its settings "
            "to resume it, use another --out, or start it over with --force"
        )


def load_data(args: argparse.Namespace, cfg: RunConfig) -> GraphDataset:
    log = stderr_log(args.quiet)
    data = load_dataset(args.dataset, args.data_root, split_seed=cfg.split_seed)
    log(data.summary())
    check_data(cfg.distill, data)
    return data


def compare_out(args: argparse.Namespace, dataset_name: str) -> Path:
    # A fixed default (not a timestamp), so running the same command again resumes it.
    return ensure_dir(Path(args.out) if args.out else Path("runs") / dataset_name / "compare")


def compare_args(args: argparse.Namespace, seeds_text: str, methods_text: str | None
                 ) -> tuple[dict, Path, RunConfig, GraphDataset, list[str], torch.device]:
    """Parse, validate, load and run (or resume) a comparison: (record, out, config, data,
    methods, device). Without ``methods_text``, the methods of :func:`default_methods`."""
    from .comparison import (
        default_methods,
        parse_methods,
        parse_seeds,
        run_compare,
        validate_methods,
    )
    from .train import resolve_device

    cfg = resolve_config(args)
    seeds = parse_seeds(seeds_text)
    methods = parse_methods(methods_text) if methods_text else default_methods(cfg)
    validate_methods(cfg, methods)
    ctx = run_context(args, resolve_device(args.device))
    data = load_data(args, cfg)
    out = compare_out(args, data.name)
    rec = run_compare(cfg, data, seeds, methods, out, ctx)
    return rec, out, cfg, data, methods, ctx.device


def degree_args(args: argparse.Namespace) -> tuple[dict, Path]:
    """``mskd degree`` on parsed arguments: the analysis of a finished comparison (``--run``) or
    of one run (or resumed) first, written to ``OUT/degree.{json,md}``; (record, OUT). The figure
    is left to the caller (:func:`draw_figure`): the analysis never depends on it."""
    from .comparison import (
        SettingsMismatch,
        degree_analysis,
        degree_markdown,
        existing_seeds_methods,
        load_settings,
        parse_methods,
        parse_seeds,
    )
    from .train import resolve_device

    log = stderr_log(args.quiet)
    if args.run:
        out = Path(args.run)
        if not out.is_dir():
            raise RunDirError(f"comparison directory not found: {out}")
        _refuse_degree_overwrite(out, args.force)
        cfg = RunConfig.from_dict(load_settings(out)["config"])
        seeds, methods = existing_seeds_methods(out)
        seeds = parse_seeds(args.seeds) if args.seeds else seeds
        methods = parse_methods(args.methods) if args.methods else methods
        device = resolve_device(args.device)
        data = load_dataset(cfg.dataset, args.data_root, split_seed=cfg.split_seed)
        log(data.summary())
    else:
        if args.dataset is None:
            raise UsageError("give --dataset (train or resume a comparison) or --run DIR")
        if args.out:
            _refuse_degree_overwrite(Path(args.out), args.force)  # before any training
        try:
            _, out, cfg, data, methods, device = compare_args(
                args, args.seeds or "0-4", args.methods)
        except SettingsMismatch as e:
            # The usual case: a comparison made with non-default flags (e.g. --patience 50),
            # analysed later without repeating them. --run reads them from the directory.
            raise SettingsMismatch(f"{e}; or analyse it with its own settings: "
                                   f"mskd degree --run {args.out or 'DIR'}") from None
        seeds = parse_seeds(args.seeds or "0-4")
        _refuse_degree_overwrite(out, args.force)  # the default OUT is known only now
    rec = degree_analysis(out, data, cfg, seeds, methods, args.buckets, device, log,
                          reuse=not args.force)
    write_json(out / "degree.json", rec)
    write_text(out / "degree.md", degree_markdown(rec))
    return rec, out


def _refuse_degree_overwrite(out: Path, force: bool) -> None:
    found = [n for n in ("degree.json", "degree.md", "degree.png") if (out / n).exists()]
    if found and not force:
        raise RunDirError(
            f"{out} already holds a degree analysis ({', '.join(found)}); it is kept. Replace it "
            f"with --force (mskd degree --run {out} --force retrains nothing)"
        )


def draw_figure(draw: Callable[[dict, Path], Path], rec: dict, path: Path) -> bool:
    """Draw ``rec`` into ``path`` with ``draw`` (a :mod:`mskd.plots` function); without
    matplotlib print on stderr the one line saying the figure was skipped and why, whatever
    ``--quiet`` says, since a file the user expects is missing. True when drawn."""
    from .plots import draw_if_possible

    skipped = draw_if_possible(draw, rec, path)
    if skipped is not None:
        print(f"mskd: {skipped}", file=sys.stderr, flush=True)
    return skipped is None
