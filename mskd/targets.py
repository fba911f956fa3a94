"""What a trained model is as a file, and what frozen teachers give a student.

A checkpoint (:func:`checkpoint_payload`) stores the weights with the model and training config,
seed and dataset fingerprint, so :func:`check_compatible` can refuse it on another dataset, graph
or split and :func:`model_from_checkpoint` can rebuild the model without the run that made it.
:class:`TeacherView` is one frozen teacher's outputs on the nodes of a training step, the one
shape in which full-batch (:mod:`mskd.distill`) and sampled (:mod:`mskd.scale`) training serve
teacher targets to the loss terms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from . import __version__
from .config import ModelConfig, TrainConfig
from .data import GraphDataset
from .errors import CheckpointError
from .models import GNN
from .train import FitResult


@dataclass
class TrainedModel:
    """A trained (or loaded) model and its validation-selected scores."""

    name: str
    model: GNN
    cfg: ModelConfig
    params: int
    val: float
    test: float
    best_epoch: int
    train_s: float
    path: Path | None = None
    reused: bool = False

    @property
    def layers(self) -> int:
        return self.cfg.hidden_layers


def checkpoint_payload(
    kind: str, model: GNN, data: GraphDataset, train_cfg: TrainConfig, seed: int,
    result: FitResult, test: float, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "mskd_version": __version__,
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "seed": seed,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "dataset": data.name,
        # Where the graph came from: lets `mskd evaluate` find a user's .npz graph again.
        "data_source": data.info.get("source"),
        "task": data.task,
        "fingerprint": data.fingerprint(),
        "split_seed": data.info.get("split_seed"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": {
            "val": result.val, "test": test, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "train_s": result.train_s,
        },
        **(extra or {}),
    }


def model_from_checkpoint(payload: dict[str, Any], path: Path | str = "checkpoint") -> GNN:
    try:
        cfg = ModelConfig(**payload["model_config"])
        model = GNN(int(payload["in_channels"]), int(payload["out_channels"]), cfg)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        msg = str(e).splitlines()[0][:160]
        raise CheckpointError(f"{path}: weights do not fit the stored architecture ({msg})") from None
    model.eval()
    return model


def check_compatible(payload: dict[str, Any], data: GraphDataset, path: Path) -> None:
    """Refuse a checkpoint made for another dataset, graph or split."""
    if payload["dataset"] != data.name:
        raise CheckpointError(
            f"{path} was trained on {payload['dataset']!r}, not {data.name!r}"
        )
    if payload.get("fingerprint") != data.fingerprint():
        raise CheckpointError(
            f"{path} was trained on a different version of {data.name} (graph, node order or "
            "split differ; check --split-seed and the data root)"
        )
    if payload["in_channels"] != data.num_features or payload["out_channels"] != data.num_classes:
        raise CheckpointError(
            f"{path}: model expects {payload['in_channels']} features/{payload['out_channels']} "
            f"classes, dataset has {data.num_features}/{data.num_classes}"
        )


def training_key(cfg: ModelConfig, train_cfg: TrainConfig, seed: int, data: GraphDataset,
                 **extra: Any) -> dict[str, Any]:
    """What a saved training state must match to be resumed (see :class:`mskd.train.Resume`)."""
    return {"model_config": cfg.to_dict(), "train_config": train_cfg.to_dict(),
            "seed": seed, "dataset": data.name, "fingerprint": data.fingerprint(), **extra}


@dataclass
class TeacherView:
    """One teacher's outputs on the nodes of a step's graph."""

    logits: Tensor  # [N, C]
    # [N, W], the teacher's last hidden layer. None when the full-batch provider serves the LSP
    # target below instead: the target is all the structure term needs, and on PPI the hidden
    # layers of three 4x256 teachers would hold ~550 MB for nothing.
    hidden: Tensor | None
    # LSP target, when a term compares structures: edge index with one self loop per node (of a
    # sampled batch: per seed) and the teacher's log distribution over each node's in-edges,
    # aligned with it (the edge index is one tensor shared by all teachers of a graph).
    edge_index: Tensor | None = None
    log_p: Tensor | None = None


# How a training mode serves teacher targets: a step's graph (or neighbour-sampled batch) -> per
# teacher, its outputs on the step's nodes. Full-batch training serves them from
# mskd.distill.TeacherOutputs, sampled training from mskd.scale.CachedTeacherOutputs.
TeacherTargets = Callable[[Any], list[TeacherView]]
# What mskd.distill.Objective is handed to build its targets once it knows what the method
# needs: (the teachers the method uses, the LSP kernel or None when no term compares structures).
ServeTargets = Callable[[Sequence[TrainedModel], str | None], TeacherTargets]
