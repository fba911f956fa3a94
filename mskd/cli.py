"""Command-line interface: the options (:mod:`mskd.options`) parsed and the results printed; the
work is done by :mod:`mskd.api` (run, distill, teachers, compare) and the modules.

Every expected failure (bad input, missing data, unusable checkpoint, unwritable output: a
:class:`mskd.MskdError`, or an OSError) is printed as one line ``mskd: error: ...`` with exit code
2; no traceback. A training that ends in non-finite numbers is one line with exit code 1. Any other
exception is a bug: one line saying so, exit code 1, its traceback in a file (``mskd --debug``
prints it instead).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import distributed
from .api import (
    compare_args,
    degree_args,
    draw_figure,
    load_data,
    prepare_out,
    run_args,
    run_context,
    select_conv,
    stderr_log,
)
from .data import DATASETS, load_dataset
from .errors import CheckpointError, MskdError, UsageError
from .options import build_parser, resolve_config
from .runs import load_checkpoint, write_json
from .train import TrainingError

EXIT_USAGE = 2
EXIT_BUG = 1
# How long a non-reporting rank waits before it exits on an error (see _error).
REPORT_GRACE_S = 30.0


# The name an expected failure had here before mskd.errors existed.
CliError = MskdError


# --- commands ------------------------------------------------------------------------------------


def cmd_teachers(args: argparse.Namespace) -> int:
    from .report import format_table, model_row
    from .teachers import train_or_load_teachers
    from .train import resolve_device

    cfg = resolve_config(args)
    ctx = run_context(args, resolve_device(args.device))
    data = load_data(args, cfg)
    _, teacher_dir = prepare_out(args, data.name)
    teachers = train_or_load_teachers(cfg, data, teacher_dir, ctx)
    print(format_table([model_row(t) for t in teachers], _metric(data)))
    print(f"teachers in {teacher_dir}")
    return 0


def _metric(data) -> str:
    from .evaluate import metric_name
    return metric_name(data.task)


def cmd_run(args: argparse.Namespace) -> int:
    from .report import format_table, model_row

    done = run_args(args)
    if isinstance(done, int):  # the launcher of --nproc N: the workers have printed
        return done
    if not distributed.reporting():
        return 0
    rows = [model_row(t) for t in done.teachers] + [model_row(done.student)]
    print(format_table(rows, done.record["metric"]))
    details = done.details
    if details.get("mean_attention"):
        weights = ", ".join(f"{n}={w:.3f}" for n, w in zip(details["teachers_used"],
                                                           details["mean_attention"]))
        print(f"mean teacher weights: {weights}")
    processes = f" ({done.processes} processes)" if done.processes > 1 else ""
    print(f"results in {done.out / 'results.json'}{processes}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .plots import plot_compare
    from .report import compare_markdown

    rec, out, *_ = compare_args(args, args.seeds, args.methods)
    print(compare_markdown(rec["rows"], rec["metric"], rec["seeds"]), end="")
    drawn = args.plot and draw_figure(plot_compare, rec, out / "compare.png")
    print(f"results in {out / 'compare.json'} (also compare.csv, compare.md"
          f"{', compare.png' if drawn else ''})")
    return 0


def cmd_degree(args: argparse.Namespace) -> int:
    from .comparison import degree_markdown
    from .plots import plot_degree

    rec, out = degree_args(args)
    print(degree_markdown(rec), end="")
    drawn = not args.no_plot and draw_figure(plot_degree, rec, out / "degree.png")
    print(f"results in {out / 'degree.json'} (also degree.md{', degree.png' if drawn else ''})")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_from

    path = plot_from(Path(args.source), Path(args.out) if args.out else None)
    print(f"plot in {path}")
    return 0


def _checkpoint_paths(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in args.checkpoints]
    if args.run:
        run = Path(args.run)
        if not run.is_dir():
            raise CliError(f"run directory not found: {run}")
        paths += sorted((run / "teachers").glob("*.pt")) + sorted(run.glob("*.pt"))
    if not paths:
        raise CliError("nothing to evaluate: give checkpoint files or --run DIR")
    return paths


def _checkpoint_dataset(payload: dict, path: Path) -> str:
    """The dataset a checkpoint is scored on when --dataset is not given."""
    name, source = payload["dataset"], payload.get("data_source") or ""
    if source.lower().endswith(".npz"):  # a user's graph is found by its file, not its name
        return source
    if name not in DATASETS:
        raise CliError(f"{path} was trained on the user graph {name!r}; pass --dataset PATH.npz")
    return name


def _checkpoint_data_key(args: argparse.Namespace, payload: dict, path: Path) -> tuple[str, int]:
    """(dataset, split seed) a checkpoint is run on: --dataset/--split-seed, else its own."""
    dataset = args.dataset or _checkpoint_dataset(payload, path)
    split_seed = args.split_seed if args.split_seed is not None else payload.get("split_seed") or 0
    return dataset, split_seed


def _refuse_existing(path: str | None, flag: str) -> None:
    # is_symlink: a link, even one pointing nowhere, is there too; writing would replace it.
    if path and (Path(path).exists() or Path(path).is_symlink()):
        raise CliError(f"{path} exists; choose a new file for {flag} (nothing is overwritten)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_split, metric_name
    from .models import count_parameters
    from .teachers import check_compatible, model_from_checkpoint
    from .train import resolve_device

    _refuse_existing(args.json, "--json")
    device = resolve_device(args.device)
    rows, loaded = [], {}
    for path in _checkpoint_paths(args):
        payload = load_checkpoint(path)
        key = _checkpoint_data_key(args, payload, path)
        if key not in loaded:
            loaded[key] = load_dataset(key[0], args.data_root, split_seed=key[1]).to(device)
        data = loaded[key]
        check_compatible(payload, data, path)
        model = model_from_checkpoint(payload, path).to(device)
        val, _ = evaluate_split(model, data, "val")
        test, _ = evaluate_split(model, data, "test")
        rows.append({"checkpoint": str(path), "kind": payload["kind"], "dataset": data.name,
                     "metric": metric_name(data.task), "layers": model.cfg.hidden_layers,
                     "params": count_parameters(model), "val": val, "test": test})
    w = max(len(r["checkpoint"]) for r in rows)
    print(f"{'checkpoint'.ljust(w)}  kind     layers  params       val     test   metric")
    for r in rows:
        print(f"{r['checkpoint'].ljust(w)}  {r['kind']:<7}  {r['layers']:>6}  {r['params']:>9,}  "
              f"{r['val']:.4f}  {r['test']:.4f}  {r['metric']}")
    if args.json:
        write_json(Path(args.json), rows)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import compare_convs, format_bench, format_conv_comparison, run_bench
    from .train import resolve_device

    _refuse_existing(args.json, "--json")
    # The preset with --teacher-depths/--arch/--input-dropout applied; bench's --epochs counts
    # timed epochs, it is not the preset's training length.
    cfg = resolve_config(argparse.Namespace(**{**vars(args), "epochs": None, "patience": None,
                                               "lr": None}))
    teacher_dir = Path(args.teachers) if args.teachers else None
    if teacher_dir is not None and not teacher_dir.is_dir():
        raise CliError(f"teacher directory not found: {teacher_dir}")
    device = resolve_device(args.device)
    data = load_data(args, cfg)
    if len(args.conv) > 1:
        rec = compare_convs(cfg, data, device, args.conv, dataset=args.dataset,
                            data_root=args.data_root, epochs=args.epochs,
                            teacher_epochs=args.teacher_epochs, repeats=args.repeats,
                            warmup=args.warmup, rounds=args.rounds, teacher_dir=teacher_dir,
                            log=stderr_log(args.quiet), features=args.features)
        print(format_conv_comparison(rec), end="")
    else:
        rec = run_bench(cfg, data, device, epochs=args.epochs,
                        teacher_epochs=args.teacher_epochs, repeats=args.repeats,
                        warmup=args.warmup, teacher_dir=teacher_dir, log=stderr_log(args.quiet),
                        conv=args.conv[0], features=args.features)
        print(format_bench(rec), end="")
    if args.json:
        write_json(Path(args.json), rec)
        print(f"measurements in {args.json}")
    return 0


def _load_checkpoint_model(path: Path, device=None):
    from .teachers import model_from_checkpoint

    payload = load_checkpoint(path)
    model = model_from_checkpoint(payload, path)
    return payload, model.to(device) if device is not None else model


def cmd_predict(args: argparse.Namespace) -> int:
    from .deploy import write_predictions
    from .teachers import check_compatible
    from .train import resolve_device

    _refuse_existing(args.out, "--out")
    device = resolve_device(args.device)
    path = Path(args.checkpoint)
    payload, model = _load_checkpoint_model(path, device)
    dataset, split_seed = _checkpoint_data_key(args, payload, path)
    data = load_dataset(dataset, args.data_root, split_seed=split_seed)
    check_compatible(payload, data, path)
    rows = write_predictions(model, data.to(device), Path(args.out), args.chunk_size)
    print(f"{rows} node predictions of {path} on {data.name} in {args.out}")
    return 0


def _checkpoint_task(payload: dict, path: Path) -> str:
    from .evaluate import METRICS

    task = payload.get("task")
    if task not in METRICS:
        raise CheckpointError(f"{path} names no known task ({task!r}); it is not an mskd "
                              "checkpoint")
    return task


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy import ExportError, default_out, export_onnx, export_torchscript, onnx_unavailable

    path = Path(args.checkpoint)
    out = Path(args.out) if args.out else default_out(path, args.format)
    _refuse_existing(str(out), "--out")
    if args.format == "onnx" and onnx_unavailable():
        raise CliError(onnx_unavailable())  # before loading anything
    payload, model = _load_checkpoint_model(path)
    meta = {k: payload.get(k) for k in ("kind", "dataset", "task", "in_channels", "out_channels",
                                        "model_config", "mskd_version", "fingerprint")}
    try:
        if args.format == "onnx":
            export_onnx(model, out, _checkpoint_task(payload, path))
        else:
            export_torchscript(model, out, meta)
    except ExportError as e:
        raise CliError(str(e)) from None
    print(f"{args.format} model of {path} in {out}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "distill": cmd_run, "teachers": cmd_teachers, "compare": cmd_compare,
    "degree": cmd_degree, "plot": cmd_plot, "evaluate": cmd_evaluate, "bench": cmd_bench,
    "predict": cmd_predict, "export": cmd_export,
}


def _error(message: object, code: int = EXIT_USAGE) -> int:
    # One line whatever the message holds (paths with newlines, multi-line library errors): log
    # scrapers and the tests rely on it.
    if distributed.reporting():
        print("mskd: error: " + " ".join(str(message).split()), file=sys.stderr)
    else:
        # The other ranks of a launch fail alike, silently: rank 0 reports. The launcher stops
        # every worker as soon as one exits, so these leave last, or rank 0 could be stopped
        # before it has printed the error and its exit code would be lost.
        time.sleep(REPORT_GRACE_S)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _error(e)
    # A --nproc launch hands the same arguments to every worker.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    select_conv(args)
    try:
        return COMMANDS[args.command](args)
    except MskdError as e:
        return _error(e)
    except TrainingError as e:  # the run, not the input: a non-finite loss or weight
        return _error(e, code=1)
    except OSError as e:  # disk full, permission denied while writing
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return _error(f"{e.strerror or e}{where}")
    except KeyboardInterrupt:
        print("mskd: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug, reported as one
        return _internal_error(e, args.debug)


def _internal_error(error: Exception, debug: bool) -> int:
    """A failure that is no MskdError is a bug in mskd, not the user's input: exit code 1, one
    line saying so and where the traceback is (on stderr with ``--debug``, else in a file, so
    that the error line stays one line)."""
    what = f"{type(error).__name__}: {str(error).strip() or '(no message)'}"
    if not distributed.reporting():
        return _error(what, code=EXIT_BUG)
    if debug:
        traceback.print_exception(error)
        return _error(f"internal error (a bug in mskd, not your input): {what}", code=EXIT_BUG)
    try:
        with tempfile.NamedTemporaryFile("w", prefix="mskd-traceback-", suffix=".txt",
                                         delete=False) as f:
            traceback.print_exception(error, file=f)
        where = f"traceback in {f.name}"
    except OSError:
        where = "no traceback file could be written"
    return _error(f"internal error (a bug in mskd, not your input): {what}; {where}; rerun "
                  "with mskd --debug to print it", code=EXIT_BUG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
