"""Run configuration: frozen dataclasses and per-dataset presets.

A run is fully described by a :class:`RunConfig`. Presets give one per dataset; the CLI only
replaces fields of a preset (``dataclasses.replace``), and every run saves its resolved config as
JSON next to its results, so a result can always be traced back to the exact settings.

Where a number comes from the paper (Zhang et al., AAAI 2022, "Multi-Scale Distillation from
Multiple Graph Neural Networks") or from the authors' code (github.com/NKU-IIPLab/MSKD) the preset
says so; the comment above each other preset says where its settings come from.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

# "mlp": a graph-free student (GLNN, Zhang et al., ICLR 2022): per-node linear layers in the same
# residual layout, trained with the graph only through the distillation losses.
ARCHS = ("gat", "gcn", "sage", "mlp")
ACTIVATIONS = ("elu", "relu")
INPUT_DROPOUTS = ("dense", "sparse")
MAX_HOPS = 10


# Seeds (--seed, --split-seed, --seeds) live in NumPy's legacy seeding range: the training loop
# seeds NumPy with ``seed % 2**32``, so larger seeds would repeat its streams, and derived
# torch seeds (``seed * 1009 + rank``) stay far inside torch's 64-bit range.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class ModelConfig:
    """One GNN stack: ``hidden_layers`` hidden message-passing layers plus one output layer.

    For GAT a hidden layer has ``heads`` heads of ``hidden`` features (concatenated); the output
    layer has ``out_heads`` heads that are averaged. GCN, GraphSAGE and MLP have no heads: their hidden
    width is ``hidden * heads`` so a preset can switch architecture at equal width.
    """

    arch: str = "gat"
    hidden_layers: int = 2
    hidden: int = 8
    heads: int = 8
    out_heads: int = 1
    residual: bool = False
    dropout: float = 0.6
    attn_dropout: float = 0.6
    activation: str = "elu"
    # How the first layer drops out its input in training. "sparse" draws one random number per
    # non-zero feature and multiplies the sparse result with the layer's weights. The outcome has
    # the same distribution as "dense" (a zero entry is zero either way) but comes from another
    # random stream, so a seeded run differs. On bag-of-words features with under 1 % non-zeros
    # (Coauthor) dense dropout was most of an epoch (docs/performance.md).
    input_dropout: str = "dense"
    # MLP only: the first layer mixes its output propagated over 0..hops hops of the normalised
    # adjacency (mskd.convs.HopLinear), so the student sees cheap structure at inference; 0 keeps
    # it graph-free.
    hops: int = 0

    @property
    def width(self) -> int:
        """Features of every hidden representation (heads concatenated)."""
        return self.hidden * self.heads

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, leaving out those added later while at their default: the
        checkpoints, saved training states and teacher caches written before such a field existed
        carry the same dict, so they are still recognised as matching."""
        d = dataclasses.asdict(self)
        for name, old in _ADDED_LATER.items():
            if d[name] == old:
                del d[name]
        return d

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if self.hidden_layers < 1:
            raise ConfigError(f"hidden_layers must be >= 1, got {self.hidden_layers}")
        for name in ("hidden", "heads", "out_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hops <= MAX_HOPS:
            raise ConfigError(f"hops must be in 0..{MAX_HOPS}, got {self.hops}")
        if self.hops and self.arch != "mlp":
            raise ConfigError(f"hops ({self.hops}) is an option of the MLP student; a "
                              f"{self.arch} model propagates through its own layers")
        if self.input_dropout not in INPUT_DROPOUTS:
            raise ConfigError(f"unknown input_dropout {self.input_dropout!r}; "
                              f"valid: {', '.join(INPUT_DROPOUTS)}")


# ModelConfig fields added after checkpoints were first written, with the behaviour they had then.
_ADDED_LATER: dict[str, Any] = {"input_dropout": "dense", "hops": 0}

# How the validation-selected epoch is chosen (mskd.train). "score": the best validation score,
# ties broken by the lower validation loss. "score+loss": the GAT paper's early stopping
# (Velickovic et al., 2018, and its reference code): patience restarts whenever the validation
# score reaches its best so far or the validation loss its lowest, and the weights are kept only
# at an epoch that does both at once.
SELECTIONS = ("score", "score+loss")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and model-selection settings (Adam; best validation epoch with patience)."""

    lr: float = 0.005
    weight_decay: float = 5e-4
    epochs: int = 300
    patience: int = 100
    batch_size: int = 1  # graphs per step; only inductive datasets (PPI) have more than one
    select: str = "score"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, ``select`` left out at its old behaviour ("score"): checkpoints
        and saved training states written before it existed still match."""
        d = dataclasses.asdict(self)
        if d["select"] == "score":
            del d["select"]
        return d

    def validate(self) -> None:
        # Written so that NaN fails too (every comparison with NaN is false).
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be finite and > 0, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience < 1:
            raise ConfigError(f"patience must be >= 1, got {self.patience}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.select not in SELECTIONS:
            raise ConfigError(f"unknown select {self.select!r}; valid: {', '.join(SELECTIONS)}")


@dataclass(frozen=True)
class DistillConfig:
    """How the student learns from the frozen teachers (see ``docs/method.md``)."""

    method: str = "mskd"
    beta: float = 1.0  # weight of the LSP term
    gamma: float = 1.0  # weight of the logit-KD term
    temperature: float = 2.0
    # Uniform averaging of teachers calibrated on validation (mskd.selection): on validation it
    # was ahead of the paper's node attention or within noise of it on every dataset (the figures
    # are in docs/results.md, "Teacher selection by the numbers"); "node" is the paper's mode.
    attention: str = "calibrated"
    # Temperature of the node-wise teacher attention softmax. 0.1 from a validation check on Cora
    # seed 0 (val acc 0.826 / 0.828 / 0.832 for tau 1 / 0.1 / 0.02: all within noise; docs/results.md).
    tau: float = 0.1
    lam: float = 7.0  # lambda of the authors' global attention
    schedule: str = "joint"
    kernel: str = "l1"
    # Divisor of the l1/l1_code kernel's distances: 100 in both authors' codes, or "auto": each
    # model's median per-edge L1 distance of the matched hidden layer (teachers once, the student
    # every step, detached), which keeps neighbours distinguishable at any hidden width.
    kernel_scale: float | str = 100.0
    # Student hidden layer (0-based) matched to each teacher's last hidden layer; empty = spread
    # over the student's depth so deeper teachers meet deeper student layers.
    student_layers: tuple[int, ...] = ()
    # Single-teacher methods (kd, fitnet, at, lsp) use the teacher with this many hidden layers;
    # 0 = the deepest.
    teacher_layers: int = 0
    phase_epochs: int = 500  # sequential schedule: epochs per teacher phase (authors: 500)
    lsp_warmup: int = 80  # sequential schedule: epochs with LSP on at the start of a phase
    faithful: bool = False


SAMPLERS = ("full", "neighbor")


@dataclass(frozen=True)
class ScaleConfig:
    """How training meets a large graph (``docs/scale.md``).

    ``full``: every step sees the whole graph (the default; small and medium graphs).
    ``neighbor``: steps over mini-batches of ``batch_size`` seed nodes with their sampled
    in-neighbourhoods, ``fanout[i]`` neighbours per node at hop i (-1 = all; a model deeper than
    the list repeats its last entry); teacher targets and evaluation use exact layer-wise
    inference over all nodes in chunks gathering at most ``chunk_size`` rows (target nodes plus
    their in-edges).
    """

    sampler: str = "full"
    fanout: tuple[int, ...] = (15, 10, 5)
    batch_size: int = 1024
    chunk_size: int = 4096

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if not self.fanout or any(f == 0 or f < -1 for f in self.fanout):
            raise ConfigError(f"fanout must be positive counts or -1 (all), got {self.fanout}")
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def hops(self, layers: int) -> list[int]:
        """Fanout per hop for a model with ``layers`` message-passing layers."""
        return [self.fanout[min(i, len(self.fanout) - 1)] for i in range(layers)]


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved as ``config.json`` in the run directory."""

    dataset: str = "cora"
    teachers: tuple[ModelConfig, ...] = ()
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    student_train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    # Seed of the random stratified split for datasets without an official one.
    split_seed: int = 0
    preset: str = ""
    scale: ScaleConfig = field(default_factory=ScaleConfig)

    def validate(self) -> None:
        self.scale.validate()
        if not self.teachers:
            raise ConfigError("at least one teacher is required")
        for m in (*self.teachers, self.student):
            m.validate()
        self.teacher_train.validate()
        self.student_train.validate()

    def teacher(self, hidden_layers: int) -> ModelConfig:
        for t in self.teachers:
            if t.hidden_layers == hidden_layers:
                return t
        depths = ", ".join(str(t.hidden_layers) for t in self.teachers)
        raise ConfigError(f"no teacher with {hidden_layers} hidden layers; configured: {depths}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with JSON's types (tuples as lists): what ``config.json`` holds, so a
        stored config read back through :meth:`from_dict` compares equal to a fresh one."""
        return json.loads(json.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        try:
            dist = dict(d.get("distill", {}))
            if "student_layers" in dist:
                dist["student_layers"] = tuple(dist["student_layers"])
            return cls(
                dataset=d["dataset"],
                teachers=tuple(ModelConfig(**t) for t in d["teachers"]),
                student=ModelConfig(**d["student"]),
                teacher_train=TrainConfig(**d["teacher_train"]),
                student_train=TrainConfig(**d["student_train"]),
                distill=DistillConfig(**dist),
                seed=d.get("seed", 0),
                split_seed=d.get("split_seed", 0),
                preset=d.get("preset", ""),
                # Configs saved before mini-batch training existed were full-batch.
                scale=ScaleConfig(**{**d.get("scale", {}),
                                     "fanout": tuple(d.get("scale", {}).get("fanout", (15, 10, 5)))}),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"malformed config: {e}") from None


def teacher_names(teachers: tuple[ModelConfig, ...]) -> list[str]:
    """The name of each teacher, which is also its checkpoint's stem: ``teacher-L`` by depth;
    ``teacher-ARCH-L`` when the teachers mix architectures; a repeated (architecture, depth)
    gets ``-r1``, ``-r2``, ... (replicas trained from other seeds, :func:`teacher_replicas`)."""
    mixed = len({t.arch for t in teachers}) > 1
    names = []
    for t, r in zip(teachers, teacher_replicas(teachers)):
        base = f"teacher-{t.arch}-{t.hidden_layers}" if mixed else f"teacher-{t.hidden_layers}"
        names.append(base if r == 0 else f"{base}-r{r}")
    return names


def teacher_replicas(teachers: tuple[ModelConfig, ...]) -> list[int]:
    """How many teachers of the same architecture and depth come before each one (0 for the
    first): a plain ensemble of one depth is ``--teacher-depths 2,2,2``."""
    seen: dict[tuple[str, int], int] = {}
    out = []
    for t in teachers:
        key = (t.arch, t.hidden_layers)
        out.append(seen.get(key, 0))
        seen[key] = out[-1] + 1
    return out


def with_depths(base: ModelConfig, depths: tuple[int, ...]) -> tuple[ModelConfig, ...]:
    """One teacher config per depth, otherwise identical."""
    return tuple(dataclasses.replace(base, hidden_layers=d) for d in depths)


def at_depths(teachers: tuple[ModelConfig, ...], depths: tuple[int, ...]
              ) -> tuple[ModelConfig, ...]:
    """One teacher config per depth, each the given teacher of the nearest depth (the deeper one
    on a tie) moved to that depth: a preset whose shallow and deep teachers differ keeps that
    difference under ``--teacher-depths``."""
    def nearest(d: int) -> ModelConfig:
        return min(teachers, key=lambda t: (abs(t.hidden_layers - d), -t.hidden_layers))
    return tuple(dataclasses.replace(nearest(d), hidden_layers=d) for d in depths)


# --- presets -----------------------------------------------------------------------------------

# Citation graphs: the GAT paper's Cora setting (Velickovic et al., ICLR 2018: 8 heads x 8
# features, dropout 0.6 on inputs and attention, lr 0.005, weight decay 5e-4). Deeper teachers get
# residual connections as in the MSKD paper's teachers. The student is deeper but thinner
# (2 heads x 8), the MSKD paper's student shape scaled to a small graph.
_CITATION_TEACHER = ModelConfig(
    arch="gat", hidden=8, heads=8, out_heads=1, residual=True, dropout=0.6, attn_dropout=0.6
)
_CITATION_STUDENT = ModelConfig(
    arch="gat", hidden_layers=2, hidden=8, heads=2, out_heads=1, residual=True,
    dropout=0.6, attn_dropout=0.6,
)
_CITATION_TRAIN = TrainConfig(lr=0.005, weight_decay=5e-4, epochs=500, patience=100)
# Cora and CiteSeer: the 1-hidden-layer teacher is the GAT paper's model itself, which has no
# residual; its only shortcut would be the output layer's projection. Without it, 5 seeds: +0.52
# (Cora) and +0.48 (CiteSeer) validation points. Deeper teachers keep theirs: without them (and
# with score+loss stopping) Cora's lose 0.1 and 0.8 points at depths 2 and 3. docs/results.md,
# "Teachers at published strength".
_CITATION_TEACHERS = (dataclasses.replace(_CITATION_TEACHER, hidden_layers=1, residual=False),
                      *with_depths(_CITATION_TEACHER, (2, 3)))

# Amazon / Coauthor: no paper setting exists; same GAT family, lighter dropout (features are
# dense bag-of-words with many more training nodes per class), weight decay as on citations.
_COPURCHASE_TEACHER = dataclasses.replace(_CITATION_TEACHER, dropout=0.5, attn_dropout=0.3)
_COPURCHASE_STUDENT = dataclasses.replace(_CITATION_STUDENT, dropout=0.5, attn_dropout=0.3)
_COPURCHASE_TRAIN = TrainConfig(lr=0.005, weight_decay=5e-4, epochs=500, patience=100)
# Coauthor features are 6,805 / 8,415 keywords with 0.9 % / 0.4 % non-zeros: sparse input dropout
# (same distribution, another random stream) cuts a training forward several-fold.
_COAUTHOR_TEACHER = dataclasses.replace(_COPURCHASE_TEACHER, input_dropout="sparse")
_COAUTHOR_STUDENT = dataclasses.replace(_COPURCHASE_STUDENT, input_dropout="sparse")

# PPI: the MSKD paper's architecture. Teachers: GAT, 4 heads x 256 per hidden layer, 6 averaged
# output heads, residual, no dropout (paper Sec. Experiments; ~1.54M/2.59M/3.65M parameters for
# 1/2/3 hidden layers). Student: 4 hidden layers of 2 heads x 68, 2 output heads (~0.13M).
# Authors' code: Adam, lr 0.005, weight decay 0, 2 graphs per batch. The authors train teachers
# for 60 epochs; we keep the validation-selected best epoch of a longer run instead.
_PPI_TEACHER = ModelConfig(
    arch="gat", hidden=256, heads=4, out_heads=6, residual=True, dropout=0.0, attn_dropout=0.0
)
_PPI_STUDENT = ModelConfig(
    arch="gat", hidden_layers=4, hidden=68, heads=2, out_heads=2, residual=True,
    dropout=0.0, attn_dropout=0.0,
)
_PPI_TRAIN = TrainConfig(lr=0.005, weight_decay=0.0, epochs=500, patience=50, batch_size=2)

DEFAULT_DEPTHS = (1, 2, 3)


def _preset(name: str, teacher: ModelConfig | tuple[ModelConfig, ...], student: ModelConfig,
            train: TrainConfig) -> RunConfig:
    return RunConfig(
        dataset=name,
        teachers=teacher if isinstance(teacher, tuple) else with_depths(teacher, DEFAULT_DEPTHS),
        student=student,
        teacher_train=train,
        student_train=train,
        preset=name,
    )


PRESETS: dict[str, RunConfig] = {
    "cora": _preset("cora", _CITATION_TEACHERS, _CITATION_STUDENT, _CITATION_TRAIN),
    "citeseer": _preset("citeseer", _CITATION_TEACHERS, _CITATION_STUDENT, _CITATION_TRAIN),
    "pubmed": _preset(
        "pubmed",
        # GAT paper's PubMed setting: 8 output heads, weight decay 1e-3, lr 0.01.
        dataclasses.replace(_CITATION_TEACHER, out_heads=8),
        _CITATION_STUDENT,
        TrainConfig(lr=0.01, weight_decay=1e-3, epochs=500, patience=100),
    ),
    "ppi": _preset("ppi", _PPI_TEACHER, _PPI_STUDENT, _PPI_TRAIN),
    "amazon-computers": _preset(
        "amazon-computers", _COPURCHASE_TEACHER, _COPURCHASE_STUDENT, _COPURCHASE_TRAIN
    ),
    "amazon-photo": _preset(
        "amazon-photo", _COPURCHASE_TEACHER, _COPURCHASE_STUDENT, _COPURCHASE_TRAIN
    ),
    "coauthor-cs": _preset("coauthor-cs", _COAUTHOR_TEACHER, _COAUTHOR_STUDENT, _COPURCHASE_TRAIN),
    "coauthor-physics": _preset(
        "coauthor-physics", _COAUTHOR_TEACHER, _COAUTHOR_STUDENT, _COPURCHASE_TRAIN
    ),
    # OGB's large graphs (no paper setting): the co-purchase GAT family, trained on
    # neighbour-sampled mini-batches by default (docs/scale.md); OGB's official splits.
    "ogbn-arxiv": dataclasses.replace(
        _preset("ogbn-arxiv", _COPURCHASE_TEACHER, _COPURCHASE_STUDENT, _COPURCHASE_TRAIN),
        scale=ScaleConfig("neighbor"),
    ),
    "ogbn-products": dataclasses.replace(
        _preset("ogbn-products", _COPURCHASE_TEACHER, _COPURCHASE_STUDENT, _COPURCHASE_TRAIN),
        scale=ScaleConfig("neighbor"),
    ),
    # A user's own graph: the citation setting is a reasonable start for small graphs.
    "npz": _preset("npz", _CITATION_TEACHER, _CITATION_STUDENT, _CITATION_TRAIN),
}


def preset(name: str) -> RunConfig:
    """The preset for a canonical dataset name (``data.canonical_name``), or ``npz``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"no preset {name!r}; valid: {', '.join(PRESETS)}") from None
