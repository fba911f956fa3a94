"""The command line's options: one parser for the CLI and the Python API (:mod:`mskd.api`).

Both read the same flags through :func:`build_parser` and turn them into a run's configuration
with :func:`resolve_config`, so an option means the same and is refused with the same one-line
message (a :class:`mskd.errors.UsageError` or :class:`mskd.errors.ConfigError`) either way.
``args.command`` names the subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable

from .config import (
    ARCHS,
    INPUT_DROPOUTS,
    MAX_HOPS,
    SEED_MAX,
    SELECTIONS,
    RunConfig,
    at_depths,
    preset,
)
from .convs import CONVS
from .data import canonical_name
from .distill import METHODS
from .errors import ConfigError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as one ``mskd: error:`` line with exit code 2, like every other
    error: argparse prints the usage block above its message and exits on its own."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


# Numeric flags are checked when parsed, so a bad value is refused (argparse names the flag)
# before anything is loaded or written. Integers are bounded too: beyond int64 torch fails with
# "Overflow when unpacking long long", which names no flag.
INT64_MAX = 2**63 - 1
# Loss weights up to 1e6: beyond that the task loss (order 1) is below float32's resolution of
# the weighted total (eps 1.2e-7) and takes no part in training.
WEIGHT_MAX = 1e6
# Temperatures (--tau, --temperature) within [1e-3, 1e3]: logits of order 100 divided by T stay
# far inside float32, and the KD term's T^2 factor (at most 1e6) stays a weight like the others.
SCALE_MAX = 1e3
# Adam moves every weight by about lr per step: beyond 1 the weights leave any useful range in a
# few steps, and the run would end in non-finite numbers instead of an error up front.
LR_MAX = 1.0
# A typo must not fork thousands of processes.
NPROC_MAX = 1024
# More buckets than test nodes are merged anyway; bounds the quantile arrays.
BUCKETS_MAX = 1000


def _int_range(low: int, high: int = INT64_MAX) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or not low <= v <= high:
            raise argparse.ArgumentTypeError(f"expected an integer {_int_bounds(low, high)}, "
                                             f"got {text!r}")
        return v
    return parse


def _int_bounds(low: int, high: int) -> str:
    return f">= {low} (at most 2^63-1)" if high == INT64_MAX else f"in [{low}, {high}]"


def _ints_range(low: int, high: int = INT64_MAX) -> Callable[[str], tuple[int, ...]]:
    one = _int_range(low, high)

    def parse(text: str) -> tuple[int, ...]:
        try:
            vals = tuple(one(v) for v in text.split(",") if v.strip())
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers "
                                             f"{_int_bounds(low, high)}, got {text!r}") from None
        if not vals:
            raise argparse.ArgumentTypeError("expected at least one integer")
        return vals
    return parse


def _real_range(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] ((low, high] with ``low_open``); NaN and inf are refused."""
    shown = f"in {'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else (
        f"{'>' if low_open else '>='} {low:g}")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        above = v > low if low_open else v >= low  # false for NaN
        if not (above and v <= high and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"expected a finite number {shown}, got {text!r}")
        return v
    return parse


_seconds = _real_range(0.0, math.inf)
TEACHER_ARCHS = ("gat", "gcn", "sage")


def _teacher_archs(text: str) -> tuple[str, ...]:
    archs = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in archs if a not in TEACHER_ARCHS]
    if bad or not archs:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated architectures from {', '.join(TEACHER_ARCHS)}, got "
            f"{text!r}")
    return archs


def _kernel_scale(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return _real_range(1 / SCALE_MAX, SCALE_MAX)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a finite number in [{1 / SCALE_MAX:g}, {SCALE_MAX:g}], "
            f"got {text!r}") from None
_seed = _int_range(0, SEED_MAX)
_count = _int_range(1)
_weight = _real_range(0.0, WEIGHT_MAX)
# Deeper GNNs over-smooth to near-constant features long before this; a typo such as 1,2,30000
# would otherwise build for minutes and then run out of memory.
_depths = _ints_range(1, 64)


# --- arguments ---------------------------------------------------------------------------------


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "cora",
                   default_help: str = "the one stored in the checkpoint") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default,
                   help="dataset name (cora, citeseer, pubmed, ppi, amazon-computers, "
                        "amazon-photo, coauthor-cs, coauthor-physics, ogbn-arxiv, ogbn-products) or a "
                        "PATH.npz of your own "
                        f"graph (default: {default or default_help})")
    g.add_argument("--data-root", default=None,
                   help="folder holding PyG dataset folders (Planetoid/, Amazon/, ...); default "
                        "$MSKD_DATA_ROOT, else ~/.cache/mskd/data")
    g.add_argument("--split-seed", type=_seed, default=None,
                   help="seed of the random 20/30-per-class split for datasets without an "
                        "official split (default 0)")


_RUN_FORCE = ("start the run in OUT over: ignore its results, saved training states and the "
              "teachers in OUT/teachers (teachers given with --teachers DIR are still reused)")


def _convs(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in vals if v not in CONVS]
    if bad or not vals or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(
            f"expected one or two distinct of {', '.join(CONVS)}, comma-separated, got {text!r}")
    return vals


def _add_common_args(p: argparse.ArgumentParser, force_help: str = _RUN_FORCE) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=None,
                   help="run directory (default runs/<dataset>/<timestamp>)")
    g.add_argument("--teachers", default=None, metavar="DIR",
                   help="where teacher checkpoints are read from / written to (default OUT/teachers); "
                        "matching checkpoints there are reused, not retrained")
    g.add_argument("--seed", type=_seed, default=0, help="random seed of the run (default 0)")
    g.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    g.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    g.add_argument("--conv", choices=CONVS, default="fused",
                   help="message-passing implementation: fused (sparse-dense products, default) "
                        "or pyg (PyG's layers); same parameters and checkpoints, same function")
    _add_resume_args(g, force_help)
    _add_training_args(p)


def _add_resume_args(g, force_help: str) -> None:
    g.add_argument("--checkpoint-every", type=_seconds, default=30.0, metavar="SECONDS",
                   help="save the training state this often (default 30; 0 = every epoch); an "
                        "interrupted run resumes from it when the same command is run again")
    g.add_argument("--force", action="store_true", help=force_help)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("training (override the dataset preset)")
    t.add_argument("--epochs", type=_count, default=None,
                   help="maximum epochs for teachers and student")
    t.add_argument("--patience", type=_count, default=None,
                   help="stop after this many epochs without a better validation score")
    t.add_argument("--lr", type=_real_range(0.0, LR_MAX, low_open=True), default=None,
                   help=f"Adam learning rate, in (0, {LR_MAX:g}]")
    t.add_argument("--select", choices=SELECTIONS, default=None,
                   help="which validation epoch is kept: score (default: best validation "
                        "score) or score+loss (the GAT paper's early stopping, docs/method.md)")
    _add_model_args(t)


def _add_model_args(g) -> None:
    """The architecture overrides of the preset (run, distill, teachers, compare and bench)."""
    g.add_argument("--teacher-depths", type=_depths, default=None, metavar="L1,L2,...",
                   help="hidden layers of each teacher (default: the preset's, 1,2,3); a "
                        "repeated depth adds a replica trained from another seed (2,2,2: a plain "
                        "ensemble of one depth)")
    g.add_argument("--teacher-archs", type=_teacher_archs, default=None, metavar="A1,A2,...",
                   help="architecture of each teacher, one for all or one per teacher, after "
                        "--arch: gat, gcn, sage (e.g. gat,gcn,sage with depths 1,2,3 for more "
                        "diverse teachers)")
    g.add_argument("--teacher-residual", choices=("on", "off"), default=None,
                   help="residual connections in the teachers (default: the preset's; "
                        "docs/results.md, 'Teachers at published strength', says which)")
    g.add_argument("--arch", choices=("gat", "gcn", "sage"), default=None,
                   help="architecture of teachers and student (default: the preset's, gat)")
    g.add_argument("--student-arch", choices=ARCHS, default=None,
                   help="architecture of the student only, after --arch: gat, gcn, sage, or mlp "
                        "(a graph-free student: no edges at inference; the structure terms still "
                        "use them in training)")
    g.add_argument("--student-heads", type=_int_range(1, 64), default=None, metavar="K",
                   help="the student's heads per hidden layer (GCN, SAGE and MLP students: width "
                        "= hidden x heads, so this widens them; default: the preset's)")
    g.add_argument("--student-hops", type=_int_range(0, MAX_HOPS), default=None, metavar="K",
                   help="MLP student only: its first layer also mixes its output propagated over "
                        "1..K hops of the normalised adjacency (cheap structure, but the edges "
                        "are needed at inference; default 0: graph-free)")
    g.add_argument("--student-dropout", type=_real_range(0.0, 0.95), default=None, metavar="P",
                   help="the student's dropout (default: the preset's)")
    g.add_argument("--input-dropout", choices=INPUT_DROPOUTS, default=None,
                   help="first-layer dropout of teachers and student: dense, or sparse (over the "
                        "non-zero features only; same distribution, faster on sparse features, "
                        "another random stream); default: the preset's")


def _add_scale_args(p: argparse.ArgumentParser, nproc: bool = False) -> None:
    g = p.add_argument_group("large graphs (docs/scale.md)")
    g.add_argument("--sampler", choices=("full", "neighbor"), default=None,
                   help="full: every step sees the whole graph (default); neighbor: mini-batches "
                        "of seed nodes with sampled neighbourhoods (PyG NeighborLoader), exact "
                        "layer-wise inference for teacher targets and evaluation")
    g.add_argument("--fanout", type=_ints_range(-1), default=None, metavar="K1,K2,...",
                   help="--sampler neighbor: neighbours sampled per node at each hop, -1 = all; "
                        "deeper models repeat the last value (default 15,10,5)")
    g.add_argument("--batch-size", type=_count, default=None, metavar="B",
                   help="--sampler neighbor: seed nodes per step and process (default 1024)")
    g.add_argument("--chunk-size", type=_count, default=None, metavar="N",
                   help="--sampler neighbor: rows one chunk of layer-wise inference gathers, "
                        "target nodes plus their in-edges (default 4096); bounds its memory")
    if nproc:
        g.add_argument("--nproc", type=_int_range(1, NPROC_MAX), default=1, metavar="N",
                       help="train the student in N local processes with torch.distributed "
                            "(DDP; gloo on CPU, nccl on GPU); needs --sampler neighbor. The same "
                            "as `torchrun --nproc-per-node N -m mskd.cli ...`")


def _scale_config(args: argparse.Namespace, cfg: RunConfig) -> RunConfig:
    over = {k: getattr(args, k) for k in ("sampler", "fanout", "batch_size", "chunk_size")
            if getattr(args, k, None) is not None}
    if not over:
        return cfg
    return dataclasses.replace(cfg, scale=dataclasses.replace(cfg.scale, **over))


def _add_distill_args(p: argparse.ArgumentParser, default_method: str | None) -> None:
    """Distillation flags; ``default_method=None`` leaves out ``--method`` (commands that run
    several methods take ``--methods`` instead)."""
    g = p.add_argument_group("distillation")
    if default_method is None:
        p.set_defaults(method="mskd")
    else:
        g.add_argument("--method", default=default_method,
                       help="none | kd | fitnet | at | lsp | uniform | mskd | confidence | "
                            f"degree | gate | calibrated (default {default_method}; the last four "
                            "are mskd with that --attention)")
    g.add_argument("--attention", default=None,
                   help="teacher weights of mskd: calibrated (default: uniform over teachers "
                        "scaled by their own temperatures, fitted on validation), node (the "
                        "paper's per-node cosine softmax with the student), global (the authors' "
                        "one weight per teacher), uniform; or from the teachers alone "
                        "(docs/method.md): confidence (each teacher's certainty), degree (per "
                        "degree bucket, fitted on validation), gate (learned per-node gate, "
                        "fitted on validation); calibrated, degree and gate are cross-fitted on "
                        "halves of the validation nodes")
    g.add_argument("--tau", type=_real_range(1 / SCALE_MAX, SCALE_MAX), default=None,
                   help="temperature of the node, confidence and degree softmax (small = "
                        f"sharper), in [{1 / SCALE_MAX:g}, {SCALE_MAX:g}]")
    g.add_argument("--schedule", default=None,
                   help="joint (all teachers every step, default) or sequential (the authors' "
                        "one teacher per phase, LSP only in each phase's warm-up). Sequential "
                        "phases run to their end, 500 epochs each, or --epochs divided among the "
                        "teachers (warm-up in proportion); --patience then applies to the "
                        "teachers only")
    g.add_argument("--beta", type=_weight, default=None,
                   help=f"weight of the structure term (LSP/FitNet/AT), in [0, {WEIGHT_MAX:g}]")
    g.add_argument("--gamma", type=_weight, default=None,
                   help=f"weight of the logit KD term, in [0, {WEIGHT_MAX:g}]")
    g.add_argument("--temperature", type=_real_range(1 / SCALE_MAX, SCALE_MAX), default=None,
                   help=f"KD temperature T, in [{1 / SCALE_MAX:g}, {SCALE_MAX:g}]")
    g.add_argument("--kernel", default=None, help="LSP kernel: l1 (default), rbf, linear, poly")
    g.add_argument("--kernel-scale", type=_kernel_scale, default=None, metavar="S|auto",
                   help="divisor of the l1 kernels' distances (default 100, the authors'); "
                        "auto: each model's median per-edge distance of its matched hidden layer")
    g.add_argument("--student-layer", type=_ints_range(0), default=None, metavar="I[,I,...]",
                   help="student hidden layer (0-based) matched to each teacher's last hidden "
                        "layer: one value for all or one per teacher (default: spread over depth)")
    g.add_argument("--teacher-layers", type=_int_range(0), default=None,
                   help="single-teacher methods (kd, fitnet, at, lsp): use the teacher with this "
                        "many hidden layers (default the deepest)")
    g.add_argument("--faithful", action="store_true",
                   help="the authors' code choices: sequential schedule, global attention computed "
                        "once, LSP only (no logit KD); see docs/faithful.md")
    g.add_argument("--no-teacher-cache", action="store_true",
                   help="re-run the frozen teachers every step instead of caching their outputs")


_ALL_METHODS = ("all, less calibrated while it is mskd's --attention (the default), as that cell "
                "would train exactly as mskd's")
_COMPARE_FORCE = ("start the comparison in OUT over: recompute every cell, even finished ones, "
                  "and accept new settings")


def _add_compare_args(p: argparse.ArgumentParser, seeds_default: str | None,
                      methods_default: str, force_help: str = _COMPARE_FORCE) -> None:
    g = p.add_argument_group("comparison")
    g.add_argument("--out", default=None,
                   help="comparison directory (default runs/<dataset>/compare); rerunning with "
                        "the same --out and flags resumes it")
    g.add_argument("--seeds", default=seeds_default, metavar="SEEDS",
                   help="seeds as a range 0-4 or a list 0,2,5 (default "
                        f"{seeds_default or 'those of the comparison; 0-4 for a new one'})")
    g.add_argument("--methods", default=None, metavar="M1,M2,...",
                   help=f"student methods, from {', '.join(METHODS)} (default "
                        f"{methods_default})")
    g.add_argument("--device", default="auto",
                   help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    g.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    g.add_argument("--conv", choices=CONVS, default="fused",
                   help="message-passing implementation: fused (sparse-dense products, default) "
                        "or pyg (PyG's layers); same parameters and checkpoints, same function")
    _add_resume_args(g, force_help)
    p.set_defaults(seed=0)  # one cell per seed of --seeds; resolve_config needs a base seed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mskd",
        description="Multi-scale knowledge distillation from multiple GNN teachers "
                    "(Zhang et al., AAAI 2022).",
    )
    from . import __version__
    parser.add_argument("--version", action="version", version=f"mskd {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error (a bug in mskd), print its traceback instead "
                             "of writing it to a file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # run and distill take the same flags; they differ in what their help says they are for.
    for name, help_, description in (
        ("run", "train (or reuse) teachers, distil the student, evaluate, report",
         ("End to end: teachers of several depths, then the student, then results.json and a "
          "table.")),
        ("distill", "distil a student with one method (teachers trained if missing)",
         ("Train the student with --method; teachers are reused from --teachers (or "
          "OUT/teachers) or trained first.")),
    ):
        p = sub.add_parser(name, help=help_, description=description)
        _add_data_args(p)
        _add_common_args(p)
        _add_distill_args(p, "mskd")
        _add_scale_args(p, nproc=True)

    p = sub.add_parser("teachers", help="train or reuse the teachers only",
                       description="Train one teacher per depth into OUT/teachers (or --teachers).")
    _add_data_args(p)
    _add_common_args(p, force_help="retrain every teacher in the teacher directory, ignoring "
                                    "matching checkpoints and saved training states")
    _add_scale_args(p)

    p = sub.add_parser("compare", help="teachers and student methods over several seeds: "
                                       "mean +- std table",
                       description="Train the teachers once per seed (reusing cached ones) and "
                                   "every requested student method; write OUT/compare.json, "
                                   "compare.csv and compare.md (mean +- sample std over seeds). "
                                   "Rerunning the same command resumes: finished cells "
                                   "(OUT/seed<k>/<method>/results.json) are loaded, not "
                                   "recomputed.")
    _add_data_args(p)
    _add_compare_args(p, seeds_default="0-4", methods_default=_ALL_METHODS)
    p.add_argument("--plot", action="store_true",
                   help="also draw OUT/compare.png (needs matplotlib; without it the "
                        "figure is skipped with a note, the tables are written)")
    _add_training_args(p)
    _add_distill_args(p, None)
    _add_scale_args(p)

    p = sub.add_parser("degree", help="test metric by node in-degree bucket, per teacher and "
                                      "student method, and the mskd attention per bucket",
                       description="The paper's motivating analysis: test nodes in quantile "
                                   "buckets of in-degree; each teacher's and student method's "
                                   "metric per bucket, and the mean post-training node attention "
                                   "the mskd student gives each teacher (when it trained with "
                                   "--attention node). With --run DIR, uses "
                                   "the checkpoints of a finished `mskd compare` (no training); "
                                   "otherwise runs (or resumes) the comparison first. Writes "
                                   "OUT/degree.json, degree.md and, when matplotlib is "
                                   "installed, degree.png.")
    _add_data_args(p, default=None, default_help="required unless --run is given")
    p.add_argument("--run", default=None, metavar="DIR",
                   help="a finished `mskd compare` directory: analyse its checkpoints, train "
                        "nothing (its dataset and settings are used; --data-root still applies)")
    _add_compare_args(p, seeds_default=None,
                      methods_default="those of the comparison; for a new one " + _ALL_METHODS,
                      force_help="replace an earlier degree analysis in OUT (never replaced "
                                 "without it); without --run also " + _COMPARE_FORCE)
    p.add_argument("--buckets", type=_int_range(1, BUCKETS_MAX), default=4,
                   help="number of in-degree quantile buckets (default 4; fewer when degrees tie)")
    p.add_argument("--no-plot", action="store_true",
                   help="skip degree.png (without matplotlib it is skipped anyway, with a note)")
    _add_training_args(p)
    _add_distill_args(p, None)

    p = sub.add_parser("plot", help="redraw a plot from a saved compare.json or degree.json",
                       description="Redraw the PNG of a saved compare.json (bar chart, error "
                                   "bars = std over seeds) or degree.json (metric per degree "
                                   "bucket, attention per bucket) without retraining.")
    p.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="compare.json or degree.json written by mskd compare / mskd degree")
    p.add_argument("--out", default=None, metavar="PNG",
                   help="where to write the PNG (default: next to FILE, same name, .png)")

    p = sub.add_parser("evaluate", help="score saved checkpoints",
                       description="Score teacher/student checkpoints on their dataset's "
                                   "val and test splits.")
    p.add_argument("checkpoints", nargs="*", help="checkpoint files (.pt)")
    p.add_argument("--run", default=None, metavar="DIR",
                   help="score every checkpoint of a run directory (DIR/*.pt, DIR/teachers/*.pt)")
    _add_data_args(p, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the scores as JSON")

    p = sub.add_parser("bench", help="time distillation (teacher cache on/off), teacher training "
                                     "and inference on this machine",
                       description="One run, one machine: seconds per distillation epoch with "
                                   "and without the teacher cache, per plain student epoch, per "
                                   "teacher training epoch; median inference latency and "
                                   "throughput of every model; parameter counts; peak RSS. "
                                   "Teachers are freshly initialised (untrained weights time "
                                   "the same) unless --teachers DIR is given. Compare ratios "
                                   "within one run; absolute seconds depend on the machine's "
                                   "load.")
    _add_data_args(p)
    p.add_argument("--teachers", default=None, metavar="DIR",
                   help="time the trained teachers DIR/teacher-L.pt instead of fresh ones")
    _add_model_args(p)
    p.add_argument("--epochs", type=_count, default=3,
                   help="timed student epochs per mode (plain, uncached, cached; default 3)")
    p.add_argument("--teacher-epochs", type=_count, default=1,
                   help="timed training epochs per teacher (default 1)")
    p.add_argument("--repeats", type=_count, default=20,
                   help="timed inference forwards per model; the median is reported (default 20)")
    p.add_argument("--warmup", type=_int_range(0), default=3,
                   help="untimed inference forwards before those (default 3)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the initial weights (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the measurements as JSON (never overwrites)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--conv", type=_convs, default=("fused",), metavar="IMPL[,IMPL]",
                   help="message-passing implementation(s) to time: fused (default), pyg, or "
                        "both (pyg,fused): then every figure runs in its own process, the two "
                        "alternating, and the JSON gets conv_speedup (first / second)")
    p.add_argument("--features", choices=("auto", "dense", "sparse"), default="auto",
                   help="how inference gets the node features: auto (sparse below 5 %% non-zeros, "
                        "e.g. Coauthor's keywords; default), dense, or sparse: the first layer "
                        "then works on the non-zeros only, for every model alike")
    p.add_argument("--rounds", type=_count, default=1,
                   help="with two --conv: measurements per figure and implementation; the "
                        "median is reported (default 1)")

    p = sub.add_parser("predict", help="per-node predictions of a checkpoint as CSV",
                       description="Run one checkpoint (no teachers) on every node of its "
                                   "dataset and write OUT as CSV: split, graph (PPI), node id, "
                                   "predicted class (multi-label: 0/1 per label) and per-class "
                                   "probabilities (softmax; multi-label: sigmoid). The "
                                   "checkpoint must have been trained on this dataset version.")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a .pt checkpoint")
    _add_data_args(p, default=None)
    p.add_argument("--out", required=True, metavar="CSV",
                   help="where to write the predictions (an existing file is never overwritten)")
    p.add_argument("--chunk-size", type=_count, default=None, metavar="N",
                   help="exact layer-wise inference in chunks gathering at most N rows (target "
                        "nodes plus their in-edges), for graphs whose whole-graph forward does "
                        "not fit in memory (default: one whole-graph forward)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")

    p = sub.add_parser("export", help="export a checkpoint's model to TorchScript (or ONNX)",
                       description="Write the model of a checkpoint as a standalone program "
                                   "(x [N, F], edge_index [2, E]) -> logits [N, C]. torchscript: "
                                   "traced (PyG's GATConv does not compile with torch.jit.script "
                                   "in PyG 2.8), checked against the original on a second graph "
                                   "of another size; metadata in the file as mskd.json. onnx: "
                                   "exports every architecture, checked with onnxruntime; needs the "
                                   "onnx extra (pip install -e \".[onnx]\").")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a .pt checkpoint")
    p.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"),
                   help="torchscript (default) or onnx")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: next to the checkpoint, .torchscript or .onnx); "
                        "an existing file is never overwritten")
    return parser


# --- config from arguments ----------------------------------------------------------------------


def resolve_config(args: argparse.Namespace) -> RunConfig:
    name = canonical_name(args.dataset)
    cfg = dataclasses.replace(preset(name), dataset=args.dataset, seed=args.seed)
    if args.split_seed is not None:
        cfg = dataclasses.replace(cfg, split_seed=args.split_seed)
    train_over = {k: v for k, v in (("epochs", args.epochs), ("patience", args.patience),
                                    ("lr", args.lr),
                                    ("select", getattr(args, "select", None))) if v is not None}
    if train_over:
        cfg = dataclasses.replace(
            cfg,
            teacher_train=dataclasses.replace(cfg.teacher_train, **train_over),
            student_train=dataclasses.replace(cfg.student_train, **train_over),
        )
    teachers = cfg.teachers
    model_over = {k: v for k, v in (("arch", args.arch), ("input_dropout", args.input_dropout))
                  if v is not None}
    if model_over:
        teachers = tuple(dataclasses.replace(t, **model_over) for t in teachers)
        cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **model_over))
    student_over = {k: v for k, v in (("arch", getattr(args, "student_arch", None)),
                                       ("heads", getattr(args, "student_heads", None)),
                                       ("dropout", getattr(args, "student_dropout", None)),
                                       ("hops", getattr(args, "student_hops", None)))
                    if v is not None}
    if student_over:
        cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **student_over))
    if args.teacher_depths:
        teachers = at_depths(teachers, args.teacher_depths)
    archs = getattr(args, "teacher_archs", None)
    if archs:
        if len(archs) not in (1, len(teachers)):
            raise ConfigError(f"--teacher-archs needs 1 or {len(teachers)} values (one per "
                              f"teacher), got {len(archs)}")
        archs = archs * len(teachers) if len(archs) == 1 else archs
        teachers = tuple(dataclasses.replace(t, arch=a) for t, a in zip(teachers, archs))
    residual = getattr(args, "teacher_residual", None)
    if residual is not None:
        teachers = tuple(dataclasses.replace(t, residual=residual == "on") for t in teachers)
    cfg = dataclasses.replace(cfg, teachers=teachers)
    cfg = _scale_config(args, cfg)
    if hasattr(args, "method"):
        from .distill import faithful, scale_phases, scheduled
        from .distill import validate as validate_distill
        over = {k: getattr(args, a) for k, a in (
            ("method", "method"), ("attention", "attention"), ("tau", "tau"),
            ("schedule", "schedule"), ("beta", "beta"), ("gamma", "gamma"),
            ("temperature", "temperature"), ("kernel", "kernel"),
            ("kernel_scale", "kernel_scale"),
            ("student_layers", "student_layer"), ("teacher_layers", "teacher_layers"),
        ) if getattr(args, a) is not None}
        dist = dataclasses.replace(cfg.distill, **over)
        if args.faithful:
            dist = faithful(dist)
        cfg = dataclasses.replace(cfg, distill=dist)
    cfg.validate()
    if hasattr(args, "method"):
        # A bad --method/--attention/... fails here, before any data is loaded, run directory
        # created or teacher trained.
        validate_distill(cfg.distill, cfg.student.hidden_layers,
                         [t.hidden_layers for t in cfg.teachers])
        k = len(cfg.teachers)
        if cfg.distill.schedule == "sequential" and args.epochs is not None and k > 1:
            cfg = dataclasses.replace(cfg, distill=scale_phases(cfg.distill, args.epochs, k))
        if not hasattr(args, "methods"):
            # One method: config.json records the epochs its schedule runs. A comparison does
            # this per cell (comparison.cell_config).
            cfg = scheduled(cfg)
    return cfg
