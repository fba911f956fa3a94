"""The student: trained alone or distilled from frozen teachers.

Objective (``docs/method.md``)::

    L = L_task + sum_k a_k * (beta * S_k + gamma * KD_k)

where ``S_k`` is the structure term of teacher k (LSP for ``lsp``/``uniform``/``mskd``, FitNet or
AT for those baselines), ``KD_k`` the logit term, and ``a_k`` the teacher weights (uniform over
calibrated teachers by default, per node for the paper's ``--attention node``). Each method is
one entry of :data:`METHODS` listing its terms (:class:`Term`); adding a baseline means adding its
loss to ``losses.py``, an entry here and a test (``docs/method.md``, "Adding a method").

Frozen teachers are run once per graph in ``eval()`` mode under ``no_grad`` and their outputs
cached (they cannot change); ``teacher_cache=False`` re-runs them every step instead, which gives
the same numbers and exists for comparison. The cache is also kept on disk next to the teacher
checkpoints (``<teacher_dir>/cache/``) with a manifest of everything it was computed from, so the
next student trained with the same teachers skips the teacher forwards; a manifest that differs in
any field makes the file stale and it is rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from . import __version__, distributed, scale
from .attention import MODES as ATTENTION_MODES
from .attention import teacher_weights
from .config import ConfigError, DistillConfig, RunConfig, TrainConfig
from .context import RunContext
from .data import GraphDataset
from .losses import (
    KERNELS,
    at_loss,
    edge_log_structure,
    fitnet_loss,
    kd_loss,
    kernel_divisor,
    lsp_target_loss,
    with_self_loops,
)
from .models import GNN, count_parameters
from .runs import file_digest, resume_path, save_checkpoint
from .selection import CALIBRATED, calibration_temperatures, selection_weights, teacher_temperatures
from .selection import FITTED as FITTED_SELECTION
from .selection import MODES as SELECTION_MODES
from .targets import (
    ServeTargets,
    TeacherTargets,
    TeacherView,
    TrainedModel,
    checkpoint_payload,
    training_key,
)
from .train import LossTerm, Resume, Step, fit, seed_everything


@dataclass(frozen=True)
class Term:
    """One distillation term: a loss of :mod:`mskd.losses` between the student and each teacher
    its method uses, weighted per node by the teacher weights, summed over the teachers and
    averaged over the step's nodes (``docs/method.md``, "Adding a method").

    The loss is called as ``loss(student, *teacher, **options, reduction="none")`` and must return
    one value per row of ``student``; the step's own nodes are its first rows (a sampled batch
    keeps the student's hidden states of the seeds' neighbours after them).

    - ``student``: ``"logits"`` (the student's logits, [N, C]) or ``"hidden"`` (the student hidden
      layer matched to the teacher, [N, Ws]);
    - ``teacher``: ``"logits"`` ([N, C]), ``"hidden"`` (the teacher's last hidden layer, [N, Wt])
      or ``"structure"`` (its LSP target: ``log_p`` [E] and ``edge_index`` [2, E], formed with
      ``--kernel`` on the step's edges);
    - ``weight``: the :class:`mskd.config.DistillConfig` field that weighs the term (a term with
      weight 0 is left out); ``warmup_only`` terms are on only during each phase's warm-up of the
      sequential schedule;
    - ``options``: the loss's keyword arguments, each from a DistillConfig field or, for
      ``"multilabel"``, the dataset's task;
    - ``extra``: a trainable module the loss needs, built per teacher from (student width,
      teacher width), trained with the student and passed to the loss as ``proj``.
    """

    name: str  # the term's name in the loss history
    loss: Callable[..., Tensor]
    student: str
    teacher: str
    weight: str
    warmup_only: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    extra: Callable[[int, int], nn.Module] | None = None


@dataclass(frozen=True)
class Method:
    """A method: the teachers it distils and its terms. The terms of a method share its teachers'
    outputs and their per-node weights at every step (``a_k`` multiplies every term of teacher
    k)."""

    teachers: str  # "none" | "one" (--teacher-layers, default the deepest) | "all"
    terms: tuple[Term, ...] = ()
    attention: str | None = None  # fixed teacher weighting, or None = --attention

    def attention_for(self, cfg: DistillConfig) -> str:
        """The teacher weighting this method trains with: its own, else ``cfg.attention``."""
        return self.attention or cfg.attention

    def uses(self, target: str) -> bool:
        """Whether a term reads this teacher target (``"structure"``: the LSP kernel's)."""
        return any(t.teacher == target for t in self.terms)


LSP = Term("lsp", lsp_target_loss, student="hidden", teacher="structure", weight="beta",
           warmup_only=True, options={"kernel": "kernel", "kernel_scale": "kernel_scale"})
FITNET = Term("fitnet", fitnet_loss, student="hidden", teacher="hidden", weight="beta",
              warmup_only=True, extra=nn.Linear)
AT = Term("at", at_loss, student="hidden", teacher="hidden", weight="beta", warmup_only=True)
KD = Term("kd", kd_loss, student="logits", teacher="logits", weight="gamma",
          options={"T": "temperature", "multilabel": "multilabel"})

METHODS: dict[str, Method] = {
    "none": Method("none"),
    "kd": Method("one", (KD,)),
    "fitnet": Method("one", (FITNET,)),
    "at": Method("one", (AT,)),
    "lsp": Method("one", (LSP,)),
    "uniform": Method("all", (LSP, KD), attention="uniform"),
    # Its weights are --attention's: calibrated teachers by default, node for the paper's.
    "mskd": Method("all", (LSP, KD)),
    # mskd with teacher-side selection (mskd.selection) in place of the student-side attention.
    "confidence": Method("all", (LSP, KD), attention="confidence"),
    "degree": Method("all", (LSP, KD), attention="degree"),
    "gate": Method("all", (LSP, KD), attention="gate"),
    # Uniform averaging of teachers calibrated by their own temperatures (mskd.selection).
    "calibrated": Method("all", (LSP, KD), attention=CALIBRATED),
}
SCHEDULES = ("joint", "sequential")
SCALED_KERNELS = ("l1", "l1_code")  # the kernels whose distances --kernel-scale divides
# The history records each loss term's share of the gradient every this many epochs.
GRAD_SHARE_EVERY = 10


def faithful(cfg: DistillConfig) -> DistillConfig:
    """The authors' code choices (docs/faithful.md): sequential phases with LSP only during each
    phase's warm-up, global attention computed once from the untrained student, logit KD off."""
    return dataclasses.replace(
        cfg, method="mskd", schedule="sequential", attention="global", gamma=0.0, kernel="l1_code",
        faithful=True,
    )


def scale_phases(cfg: DistillConfig, epochs: int, n_teachers: int) -> DistillConfig:
    """Sequential phases fitted into ``epochs`` (``--epochs``): ``epochs // n_teachers`` per
    teacher, the LSP warm-up in the same proportion to its phase as before (authors: 80 of 500,
    at least one epoch)."""
    if epochs < n_teachers:
        raise ConfigError(f"--epochs {epochs} with the sequential schedule: it needs at least one "
                          f"epoch per teacher phase, {n_teachers} in all")
    phase = epochs // n_teachers
    warmup = max(1, min(phase, round(cfg.lsp_warmup * phase / cfg.phase_epochs)))
    return dataclasses.replace(cfg, phase_epochs=phase, lsp_warmup=warmup)


def scheduled(run: RunConfig) -> RunConfig:
    """``run`` with the student's epochs and patience as its schedule trains them, so that
    ``config.json`` and ``results.json`` record what ran: the sequential schedule runs every
    phase to its end (``phase_epochs`` per teacher, no early stopping) whatever the preset's or
    ``--patience``'s values. Single-teacher methods and the joint schedule are left as they are."""
    d = run.distill
    if d.schedule != "sequential" or METHODS[d.method].teachers != "all" or len(run.teachers) < 2:
        return run
    total = d.phase_epochs * len(run.teachers)
    return dataclasses.replace(run, student_train=dataclasses.replace(
        run.student_train, epochs=total, patience=total))


def validate(cfg: DistillConfig, n_student_layers: int, teacher_depths: Sequence[int]) -> None:
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; valid: {', '.join(METHODS)}")
    if cfg.attention not in (*ATTENTION_MODES, *SELECTION_MODES, CALIBRATED):
        raise ConfigError(f"unknown attention {cfg.attention!r}; valid: "
                          f"{', '.join((*ATTENTION_MODES, *SELECTION_MODES, CALIBRATED))}")
    if cfg.kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {cfg.kernel!r}; valid: {', '.join(KERNELS)}")
    if cfg.kernel_scale == "auto":
        if cfg.kernel not in SCALED_KERNELS:
            raise ConfigError(f"--kernel-scale auto sets the distance divisor of the "
                              f"{' and '.join(SCALED_KERNELS)} kernels; --kernel {cfg.kernel} "
                              "has none")
    elif isinstance(cfg.kernel_scale, str) or not 0 < cfg.kernel_scale < math.inf:
        raise ConfigError(f"kernel_scale must be 'auto' or finite and > 0, got "
                          f"{cfg.kernel_scale!r}")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")
    # Written so that NaN fails too (every comparison with NaN is false).
    if not (0 < cfg.temperature < math.inf and 0 < cfg.tau < math.inf):
        raise ConfigError(f"temperature and tau must be finite and > 0, got {cfg.temperature} "
                          f"and {cfg.tau}")
    if not (0 <= cfg.beta < math.inf and 0 <= cfg.gamma < math.inf):
        raise ConfigError(f"beta and gamma must be finite and >= 0, got {cfg.beta} and "
                          f"{cfg.gamma}")
    if cfg.teacher_layers and cfg.teacher_layers not in teacher_depths:
        raise ConfigError(
            f"--teacher-layers {cfg.teacher_layers}: no such teacher; configured depths "
            f"{', '.join(map(str, teacher_depths))}"
        )
    if cfg.student_layers:
        if len(cfg.student_layers) not in (1, len(teacher_depths)):
            raise ConfigError(
                f"--student-layer needs 1 or {len(teacher_depths)} values, got "
                f"{len(cfg.student_layers)}"
            )
        bad = [i for i in cfg.student_layers if not 0 <= i < n_student_layers]
        if bad:
            raise ConfigError(
                f"--student-layer {bad[0]} out of range: the student has hidden layers "
                f"0..{n_student_layers - 1}"
            )


def matched_layers(n_student_layers: int, n_teachers: int, given: Sequence[int] = ()) -> list[int]:
    """Student hidden layer matched to each teacher (teachers sorted by depth, shallow first).

    Default: spread over the student's depth, teacher k of K -> layer ceil((k+1) S / K) - 1, so
    the deepest teacher meets the last student hidden layer.
    """
    if given:
        return list(given) * n_teachers if len(given) == 1 else list(given)
    return [math.ceil((k + 1) * n_student_layers / n_teachers) - 1 for k in range(n_teachers)]


CACHE_FORMAT = 1
_VIEW_FIELDS = ("logits", "hidden", "edge_index", "log_p")


def _sha256_weights(model: nn.Module) -> str:
    # The weights actually in memory: a checkpoint edited after it was loaded must not pass.
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def kernel_tag(kernel: str | None, kernel_scale: float | str) -> str | None:
    """What names a teacher structure cache: the kernel, and its divisor unless it is the
    default (so caches written before the divisor was a setting stay valid)."""
    if kernel is None or kernel_scale == 100.0:
        return kernel
    return f"{kernel}-s{kernel_scale}"


def cache_manifest(teachers: Sequence[TrainedModel], data: GraphDataset,
                   kernel: str | None) -> dict:
    """What a persisted teacher cache was computed from; any difference makes it stale.

    ``data.fingerprint()`` already covers the graphs, node order (through edges, labels and a
    row-weighted feature checksum), masks and splits; ``graphs`` repeats the node and edge counts
    of each training graph so that a cache is never lined up with a graph of another size.
    """
    import torch_geometric

    return {
        "format": CACHE_FORMAT,
        "teachers": [
            {"name": t.name, "checkpoint_sha256": file_digest(t.path) if t.path else None,
             "weights_sha256": _sha256_weights(t.model),
             "model_config": t.cfg.to_dict()}
            for t in teachers
        ],
        "dataset": data.name,
        "fingerprint": data.fingerprint(),
        "graphs": [[int(g.gid), int(g.num_nodes), int(g.edge_index.shape[1])]
                   for g in data.splits["train"]],
        "kernel": kernel or "none",
        "versions": {"torch": str(torch.__version__),
                     "torch_geometric": str(torch_geometric.__version__),
                     "mskd": __version__},
    }


def _first_difference(a: object, b: object, where: str = "") -> str | None:
    """Dotted path of the first field where two manifests differ (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return sub
            found = _first_difference(a[key], b[key], sub)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            # Name list entries by their teacher where there is one: "teachers[teacher-2]...".
            tag = x.get("name", i) if isinstance(x, dict) else i
            found = _first_difference(x, y, f"{where}[{tag}]")
            if found:
                return found
        return None
    return None if a == b else (where or "manifest")


def teacher_cache_file(teachers: Sequence[TrainedModel], kernel: str | None) -> Path | None:
    """``<teacher_dir>/cache/outputs-t<depths>-<kernel>.pt``, or None when the teachers do not
    all live in one directory (in-memory teachers, or checkpoints gathered from several runs)."""
    dirs = {t.path.parent for t in teachers if t.path is not None}
    if len(dirs) != 1 or any(t.path is None for t in teachers):
        return None
    # The teachers' names without "teacher-": "1-2-3" by depth as before, replicas and mixed
    # architectures included.
    names = "-".join(t.name.removeprefix("teacher-") for t in teachers)
    return dirs.pop() / "cache" / f"outputs-t{names}-{kernel or 'none'}.pt"


class TeacherOutputs:
    """Outputs of every frozen teacher, per training graph.

    Teachers are frozen and in eval mode, so their logits, hidden layers and even their LSP target
    distributions are constants of the graph: they are computed once here (``cache=True``) and
    gathered per step. ``cache=False`` re-runs the teachers on every step's graph instead, which
    gives the same loss values and exists for comparison and for inputs that change per step.

    With ``file`` and ``manifest`` the cache also persists across runs: it is loaded from
    ``file`` when the manifest stored there equals ``manifest`` (same teacher checkpoints and
    weights, dataset, node order, kernel, library versions), and otherwise rebuilt and written
    back atomically. A stale or unreadable file is reported through ``log`` and never used.
    """

    def __init__(self, teachers: Sequence[TrainedModel], graphs: Sequence, cache: bool = True,
                 kernel: str | None = None, *, file: Path | None = None,
                 manifest: dict | None = None, log: Callable[[str], None] | None = None,
                 kernel_scale: float | str = 100.0) -> None:
        self.models = [t.model for t in teachers]
        for m in self.models:
            m.eval()
        self.cache = cache
        self.kernel = kernel
        self.kernel_scale = kernel_scale
        # Per teacher, the divisor its structure was formed with (the median with "auto").
        self.scales: list[float] = []
        self.log = log or (lambda msg: None)
        self.source = "none"  # "file" when loaded, "computed" when built here
        self._store: dict[int, list[TeacherView]] = {}
        if not cache:
            return
        if file is not None and manifest is not None:
            loaded = self._load(file, manifest, graphs)
            if loaded is not None:
                self._store, self.source = loaded, "file"
                return
        for g in graphs:
            self._store[int(g.gid)], self.scales = self._run(g.x, g.edge_index)
        self.source = "computed"
        if file is not None and manifest is not None:
            self._save(file, manifest)

    # -- persistence ---------------------------------------------------------------------------

    def _load(self, file: Path, manifest: dict, graphs: Sequence
              ) -> dict[int, list[TeacherView]] | None:
        if not file.is_file():
            return None
        try:
            # weights_only: a cache file is data, never code to execute.
            payload = torch.load(file, map_location="cpu", weights_only=True)
            stored = payload["manifest"]
            self.scales = list(payload.get("scales", []))
        except Exception as e:  # noqa: BLE001 - truncated zip, pickle errors, wrong layout
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            self.log(f"teacher cache stale: unreadable {file} ({why}); rebuilding")
            return None
        diff = _first_difference(stored, manifest)
        if diff:
            self.log(f"teacher cache stale: {diff}; rebuilding")
            return None
        device = graphs[0].x.device if graphs else torch.device("cpu")
        store: dict[int, list[TeacherView]] = {}
        try:
            for g in graphs:
                views = []
                for d in payload["graphs"][int(g.gid)]:
                    t = {k: (d[k].to(device) if d.get(k) is not None else None)
                         for k in _VIEW_FIELDS}
                    if t["logits"].shape[0] != g.num_nodes:
                        raise ValueError(f"graph {int(g.gid)} has {g.num_nodes} nodes, cache "
                                         f"{t['logits'].shape[0]}")
                    if any(v is not None and v.is_floating_point() and not bool(v.isfinite().all())
                           for v in t.values()):
                        # Damaged or edited: recomputed rather than trusted (a NaN here stopped
                        # the student with "loss term is nan", blaming the training).
                        raise ValueError(f"graph {int(g.gid)} holds non-finite outputs")
                    views.append(TeacherView(**t))
                if len(views) != len(self.models):
                    raise ValueError(f"{len(views)} teachers cached, {len(self.models)} wanted")
                store[int(g.gid)] = views
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            self.log(f"teacher cache stale: malformed content ({e}); rebuilding")
            return None
        self.log(f"teacher cache: loaded {file}")
        return store

    def _save(self, file: Path, manifest: dict) -> None:
        graphs = {gid: [{k: (getattr(v, k).cpu() if getattr(v, k) is not None else None)
                         for k in _VIEW_FIELDS} for v in views]
                  for gid, views in self._store.items()}
        try:
            save_checkpoint(file, {"manifest": manifest, "graphs": graphs,
                                   "scales": self.scales})
        except OSError as e:
            # The cache is an optimisation: a read-only teacher directory only costs time.
            self.log(f"teacher cache: not written ({e.strerror or e}: {file})")
            return
        self.log(f"teacher cache: wrote {file}")

    # -- computing and gathering ---------------------------------------------------------------

    @torch.no_grad()
    def _run(self, x: Tensor, edge_index: Tensor) -> tuple[list[TeacherView], list[float]]:
        """Per teacher, its outputs on one graph (the LSP target in place of the hidden layer
        when there is a kernel), and the divisor each structure was formed with."""
        out, scales = [], []
        loops = None
        for m in self.models:
            z, h = m(x, edge_index)
            if self.kernel:
                if loops is None:
                    loops = with_self_loops(edge_index, x.shape[0])
                scale = kernel_divisor(self.kernel_scale, h[-1], loops)
                scales.append(scale)
                log_p = edge_log_structure(h[-1], loops, self.kernel, scale=scale)
                out.append(TeacherView(z, None, loops, log_p))
            else:
                out.append(TeacherView(z, h[-1]))
        return out, scales

    def __call__(self, g) -> list[TeacherView]:
        """Per teacher, its outputs on the nodes of step graph ``g``."""
        if not self.cache:
            # Only a built cache reports its divisors: the uncached ones are the step's.
            return self._run(g.x, g.edge_index)[0]
        gids = g.gid.tolist() if isinstance(g.gid, Tensor) else [int(g.gid)]
        if len(gids) == 1:
            return self._store[gids[0]]
        # A batch concatenates its graphs' nodes (and edges) in the order of ``gid``.
        parts = [self._store[i] for i in gids]
        offsets = torch.tensor([0] + [p[0].logits.shape[0] for p in parts[:-1]]).cumsum(0).tolist()
        loops = None
        if parts[0][0].edge_index is not None:
            # One edge index serves every teacher of a graph; shift and join it once per step.
            loops = torch.cat([p[0].edge_index + off for p, off in zip(parts, offsets)], dim=1)
        views = []
        for k in range(len(self.models)):
            hidden = (torch.cat([p[k].hidden for p in parts])
                      if parts[0][k].hidden is not None else None)
            view = TeacherView(torch.cat([p[k].logits for p in parts]), hidden)
            if loops is not None:
                view.edge_index = loops
                view.log_p = torch.cat([p[k].log_p for p in parts])
            views.append(view)
        return views


def check_data(cfg: DistillConfig, data: GraphDataset) -> None:
    """Refuse, before any training, a selection mode the dataset cannot support: the fitted
    modes and calibration learn from validation labels (at least two), and the fitted modes from
    those of the training graph, which inductive datasets (PPI) keep in other graphs."""
    attention = METHODS[cfg.method].attention_for(cfg)
    if METHODS[cfg.method].teachers != "all" or attention not in (*FITTED_SELECTION, CALIBRATED):
        return
    train, val = data.splits["train"], data.splits["val"]
    n_val = sum(int(g.mask.sum()) for g in val)
    if n_val < 2:
        raise ConfigError(f"--attention {attention} fits on validation labels and {data.name} has "
                          f"{n_val} validation node(s); it needs at least 2 (give a larger "
                          "val_mask, or use --attention node or confidence)")
    if attention == CALIBRATED:
        return
    if not (len(train) == 1 and len(val) == 1 and train[0].num_nodes == val[0].num_nodes):
        raise ConfigError(f"--attention {attention} fits its weights on the validation nodes of "
                          f"the training graph; {data.name} keeps them in other graphs "
                          "(inductive). Use --attention confidence or calibrated there")


def static_weights(mode: str, data: GraphDataset, teachers: Sequence[TrainedModel], tau: float,
                   seed: int) -> dict[int, Tensor]:
    """Teacher-side selection weights (:mod:`mskd.selection`) of every training graph, by graph
    id: computed once from the frozen teachers' full-graph logits. The fitted modes learn from the
    validation nodes of the same graph, so they need a transductive dataset. For
    :data:`~mskd.selection.CALIBRATED` the values are each teacher's temperature per node
    ([N, K]), not weights: cross-fitted on a transductive dataset; on an inductive one, where
    the student never trains on a validation graph, fitted once on all validation graphs."""
    train, val = data.splits["train"], data.splits["val"]
    same_graph = len(train) == 1 and len(val) == 1 and train[0].num_nodes == val[0].num_nodes
    out = {}
    with torch.no_grad():
        if mode == CALIBRATED and not same_graph:
            z = torch.cat([torch.stack([t.model.eval()(g.x, g.edge_index)[0][g.mask]
                                        for t in teachers]) for g in val], dim=1)
            y = torch.cat([g.y[g.mask] for g in val]).cpu()
            temps = teacher_temperatures(z.cpu().float(), y, data.multilabel)
            return {int(g.gid): temps.expand(g.num_nodes, -1).clone() for g in train}
        for g in train:
            z = torch.stack([t.model.eval()(g.x, g.edge_index)[0] for t in teachers])
            val_mask = val[0].mask if same_graph else g.mask
            if mode == CALIBRATED:
                out[int(g.gid)] = calibration_temperatures(z, g.y, val_mask, data.multilabel,
                                                           seed)
            else:
                out[int(g.gid)] = selection_weights(mode, z, g.edge_index, g.y, g.mask,
                                                    val_mask, tau, data.multilabel, seed)
    return out


def full_batch_targets(data: GraphDataset, kernel_scale: float | str = 100.0, cache: bool = True,
                       persist: bool = True, log: Callable[[str], None] | None = None
                       ) -> ServeTargets:
    """Full-batch training's teacher targets: :class:`TeacherOutputs` over ``data``'s training
    graphs, computed once (``cache``) and, with ``persist``, kept next to the teacher checkpoints
    where the next run with them looks."""
    def serve(teachers: Sequence[TrainedModel], kernel: str | None) -> TeacherOutputs:
        tag = kernel_tag(kernel, kernel_scale)
        file = teacher_cache_file(teachers, tag) if cache and persist else None
        manifest = cache_manifest(teachers, data, tag) if file else None
        return TeacherOutputs(teachers, data.splits["train"], cache, kernel, file=file,
                              manifest=manifest, log=log, kernel_scale=kernel_scale)
    return serve


class Objective:
    """The distillation terms of one method (its :data:`METHODS` entry), sharing teacher outputs
    and attention weights between terms within a step.

    How teacher targets are served is the caller's: ``targets`` builds them for the teachers the
    method uses (default: :func:`full_batch_targets` with ``teacher_cache``, ``persist`` and
    ``log``), and ``wrap`` is applied to every trainable extra module before a loss calls it
    (the DDP wrapper in a distributed run); the modules themselves are in ``extra_modules``.
    """

    def __init__(self, cfg: DistillConfig, data: GraphDataset, teachers: Sequence[TrainedModel],
                 student: GNN, teacher_cache: bool = True, persist: bool = True,
                 log: Callable[[str], None] | None = None, seed: int = 0, *,
                 targets: ServeTargets | None = None,
                 wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        self.cfg = cfg
        self.method = METHODS[cfg.method]
        self.multilabel = data.multilabel
        all_teachers = sorted(teachers, key=lambda t: t.layers)
        layers = matched_layers(student.cfg.hidden_layers, len(all_teachers), cfg.student_layers)
        if self.method.teachers == "one":
            depth = cfg.teacher_layers or all_teachers[-1].layers
            idx = [t.layers for t in all_teachers].index(depth)
            self.teachers, self.layers = [all_teachers[idx]], [layers[idx]]
        elif self.method.teachers == "all":
            self.teachers, self.layers = all_teachers, layers
        else:
            self.teachers, self.layers = [], []
        self.attention = self.method.attention_for(cfg)
        self.kernel = cfg.kernel if self.method.uses("structure") else None
        if targets is None:
            targets = full_batch_targets(data, cfg.kernel_scale, teacher_cache, persist, log)
        self.outputs: TeacherTargets | None = (targets(self.teachers, self.kernel)
                                               if self.teachers else None)
        self.extra_modules: list[nn.Module] = []
        self._extras: dict[str, list[nn.Module]] = {}
        for term in self.method.terms:
            if term.extra is not None:
                made = [term.extra(student.cfg.width, t.cfg.width) for t in self.teachers]
                self.extra_modules += made
                self._extras[term.name] = [wrap(m) for m in made] if wrap else made
        self.static: dict[int, Tensor] = {}
        self.temperatures: dict[int, Tensor] = {}
        if self.attention in SELECTION_MODES and len(self.teachers) > 1:
            self.static = static_weights(self.attention, data, self.teachers, cfg.tau, seed)
        elif self.attention == CALIBRATED and len(self.teachers) > 1:
            self.temperatures = static_weights(CALIBRATED, data, self.teachers, cfg.tau, seed)
        self._step_cache: tuple[Step, list[TeacherView], Tensor] | None = None
        self._frozen_weights: Tensor | None = None
        self.attention_log: list[Tensor] = []

    # -- schedule ---------------------------------------------------------------------------

    @property
    def sequential(self) -> bool:
        return self.cfg.schedule == "sequential" and len(self.teachers) > 1

    def phase(self, epoch: int) -> int:
        return min((epoch - 1) // self.cfg.phase_epochs, len(self.teachers) - 1)

    def train_config(self, base: TrainConfig) -> TrainConfig:
        if not self.sequential:
            return base
        # Sequential phases run to the end: early stopping would skip later teachers.
        total = self.cfg.phase_epochs * len(self.teachers)
        return dataclasses.replace(base, epochs=total, patience=total)

    # -- per-step shared state ---------------------------------------------------------------

    def _weights(self, step: Step, outs: list[TeacherView]) -> Tensor:
        """[N, K] per-node weights (every mode is broadcast to this shape)."""
        n, k = step.logits.shape[0], len(outs)
        if self.sequential:
            w = torch.zeros(n, k, device=step.logits.device)
            w[:, self.phase(step.epoch)] = 1.0
            if self.cfg.faithful:
                w = w * self._global_once(step, outs)
            return w
        if k == 1:
            return torch.ones(n, 1, device=step.logits.device)
        if self.attention == "global" and self.cfg.faithful:
            return self._global_once(step, outs).expand(n, k)
        if self.static:
            return self._static_for(step.graph).to(step.logits.device)
        # Calibrated teachers are averaged uniformly; their logits were scaled in _shared.
        mode = "uniform" if self.attention == CALIBRATED else self.attention
        a = teacher_weights(step.logits, [o.logits for o in outs], mode=mode,
                            tau=self.cfg.tau, lam=self.cfg.lam)
        return a if a.ndim == 2 else a.expand(n, k)

    def _static_for(self, g, table: dict[int, Tensor] | None = None) -> Tensor:
        """The rows of ``table`` (default: the static weights) for the nodes of step graph ``g``."""
        table = self.static if table is None else table
        if hasattr(g, "n_id"):  # a neighbour-sampled batch: its seed nodes come first
            return table[0][g.n_id[:g.batch_size].cpu()]
        gids = g.gid.tolist() if isinstance(g.gid, Tensor) else [int(g.gid)]
        return torch.cat([table[i] for i in gids])

    def _global_once(self, step: Step, outs) -> Tensor:
        # The authors compute the global weights once, from the untrained student.
        if self._frozen_weights is None:
            self._frozen_weights = teacher_weights(
                step.logits, [o.logits for o in outs], mode="global", tau=self.cfg.tau,
                lam=self.cfg.lam,
            ).detach()
        return self._frozen_weights

    def _shared(self, step: Step) -> tuple[list[TeacherView], Tensor]:
        # Holding the step itself (not its id) keeps the key unique until the next step.
        if self._step_cache is None or self._step_cache[0] is not step:
            outs = self.outputs(step.graph)
            if self.temperatures:
                t = self._static_for(step.graph, self.temperatures).to(step.logits.device)
                outs = [dataclasses.replace(o, logits=o.logits / t[:, k:k + 1])
                        for k, o in enumerate(outs)]
            w = self._weights(step, outs).detach()
            self._step_cache = (step, outs, w)
            self.attention_log.append(w.mean(dim=0).cpu())
        return self._step_cache[1], self._step_cache[2]

    # -- terms -------------------------------------------------------------------------------

    def _weight(self, term: Term) -> float | Callable[[int], float]:
        weight = float(getattr(self.cfg, term.weight))
        if not (term.warmup_only and self.sequential):
            return weight

        def warmup(epoch: int) -> float:
            return weight if (epoch - 1) % self.cfg.phase_epochs < self.cfg.lsp_warmup else 0.0
        return warmup

    def _setting(self, name: str) -> object:
        return self.multilabel if name == "multilabel" else getattr(self.cfg, name)

    def _term(self, term: Term, step: Step) -> Tensor:
        outs, w = self._shared(step)
        n = step.logits.shape[0]
        options = {k: self._setting(v) for k, v in term.options.items()}
        extras = self._extras.get(term.name)
        total = step.logits.new_zeros(n)
        for k, (view, layer) in enumerate(zip(outs, self.layers)):
            if not bool((w[:, k] != 0).any()):
                continue
            student = step.logits if term.student == "logits" else step.hidden[layer]
            teacher = ((view.log_p, view.edge_index) if term.teacher == "structure"
                       else (getattr(view, term.teacher),))
            if extras:
                options["proj"] = extras[k]
            per_node = term.loss(student, *teacher, **options, reduction="none")
            total = total + w[:, k] * per_node[:n]
        return total.mean()

    def terms(self) -> list[LossTerm]:
        """The method's terms as :func:`mskd.train.fit` takes them; a term weighted 0 is left
        out (it would not be computed anyway)."""
        return [LossTerm(t.name, functools.partial(self._term, t), self._weight(t))
                for t in self.method.terms if getattr(self.cfg, t.weight) != 0]

    def state(self) -> dict:
        """What a resumed training needs to continue exactly (see :class:`mskd.train.Resume`)."""
        return {"attention_log": list(self.attention_log), "frozen": self._frozen_weights}

    def load_state(self, state: dict) -> None:
        self.attention_log = list(state["attention_log"])
        self._frozen_weights = state["frozen"]

    def mean_attention(self) -> list[float]:
        """Mean weight per teacher over all steps (what the student actually used)."""
        if not self.attention_log:
            return []
        return torch.stack(self.attention_log).mean(dim=0).tolist()


def train_student(run: RunConfig, data: GraphDataset, teachers: Sequence[TrainedModel],
                  out_dir: Path, ctx: RunContext) -> tuple[TrainedModel, dict]:
    """Train the student with ``run.distill.method`` on ``ctx.device``; save
    ``student-<method>.pt``.

    With ``ctx.teacher_cache`` the teachers' outputs are computed once and, when the teachers
    were loaded from (or saved to) one directory, persisted in ``<teacher_dir>/cache/`` for the
    next run (see :class:`TeacherOutputs`). While training, the state is saved to
    ``student-<method>.resume`` every ``ctx.checkpoint_every`` seconds and an interrupted
    training continues from it (``ctx.fresh`` ignores it). Cache and resume messages go to
    ``ctx.log``.

    Returns the trained student and a dict of method details for ``results.json``.
    """
    device = ctx.device
    cfg = run.distill
    validate(cfg, run.student.hidden_layers, [t.layers for t in teachers])
    check_data(cfg, data)
    sampled = run.scale.sampler != "full"
    if sampled:
        scale.check_supported(data, run.scale)
    seed_everything(run.seed)
    dev_data = data.to(device)
    student = GNN(data.num_features, data.num_classes, run.student).to(device)
    # The two training modes differ in how batches and teacher targets are served, not in the
    # objective: sampled batches gather exact layer-wise teacher outputs by node, and the extra
    # modules train under DDP alongside the student when several processes run.
    if sampled:
        targets = scale.layerwise_targets(dev_data, run.scale, cfg.kernel_scale)
        wrap = functools.partial(distributed.wrap, device=device)
    else:
        targets = full_batch_targets(dev_data, cfg.kernel_scale, ctx.teacher_cache, log=ctx.log)
        wrap = None
    objective = Objective(cfg, dev_data, teachers, student, seed=run.seed, targets=targets,
                          wrap=wrap)
    hooks = (scale.student_hooks(student, dev_data, run.scale, run.seed, device,
                                 every_node=bool(objective.teachers),
                                 full_hidden=objective.method.uses("structure"))
             if sampled else None)
    train_cfg = objective.train_config(run.student_train)
    path = out_dir / f"student-{cfg.method}.pt"
    # The teachers' bytes, not their names: retrained teachers make a saved state stale.
    key = training_key(run.student, train_cfg, run.seed, data, distill=dataclasses.asdict(cfg),
                       teachers=[file_digest(t.path) if t.path else t.name
                                 for t in objective.teachers], **scale.key(run.scale))
    resume = Resume(resume_path(path), key, every_s=ctx.checkpoint_every,
                    get_extra=objective.state, set_extra=objective.load_state, log=ctx.log)
    if ctx.fresh and distributed.is_main():
        resume.discard()
    result = fit(student, dev_data, train_cfg, terms=objective.terms(),
                 extra_modules=objective.extra_modules, seed=run.seed,
                 desc=f"student-{cfg.method}", quiet=ctx.quiet or not distributed.is_main(),
                 # Ranks of a distributed run must stay in step: none resumes alone.
                 resume=None if distributed.world() > 1 else resume,
                 grad_every=GRAD_SHARE_EVERY, **(hooks.fit_kwargs() if hooks else {}))
    test, _ = scale.evaluate(student, dev_data, "test", run.scale)
    details = {
        "method": cfg.method,
        "teachers_used": [t.name for t in objective.teachers],
        "student_layers_matched": objective.layers,
        "attention": objective.attention if objective.teachers else None,
        "mean_attention": objective.mean_attention(),
        # The divisor each teacher's LSP structure was formed with (--kernel-scale).
        "teacher_kernel_scales": list(getattr(objective.outputs, "scales", []) or []),
        "settings": dataclasses.asdict(cfg),
        # Per-epoch mean of every loss term and the validation score: the loss curve.
        "history": [{k: round(v, 6) if isinstance(v, float) else v for k, v in h.items()}
                    for h in result.history],
    }
    if sampled:
        details["scale"] = {**dataclasses.asdict(run.scale), "processes": distributed.world(),
                            "teacher_cache_bytes": getattr(objective.outputs, "nbytes", 0)}
    if distributed.is_main():
        save_checkpoint(path, checkpoint_payload("student", student, data, train_cfg, run.seed,
                                                 result, test, extra={"distill": details}))
        resume.discard()
    student.eval()
    trained = TrainedModel(f"student-{cfg.method}", student, run.student,
                           count_parameters(student), result.val, test, result.best_epoch,
                           result.train_s, path, False)
    return trained, details
