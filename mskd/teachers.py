"""Teachers: train one GNN per depth, or reuse the checkpoint a previous run left.

A teacher checkpoint stores its model config, training config, seed and the dataset fingerprint;
it is reused only when all of them match the current run, and a mismatch is an error rather than
a silent retrain over the user's file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__, scale
from .config import ModelConfig, RunConfig, TrainConfig
from .data import GraphDataset
from .models import GNN, count_parameters
from .runs import CheckpointError, RunLock, load_checkpoint, resume_path, save_checkpoint
from .train import FitResult, Resume, fit, seed_everything


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


def teacher_seed(seed: int, layers: int) -> int:
    # Independent of which other teachers exist, so a reused teacher equals a retrained one.
    return seed * 1000 + layers


def checkpoint_payload(
    kind: str, model: GNN, data: GraphDataset, train_cfg: TrainConfig, seed: int,
    result: FitResult, test: float, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "mskd_version": __version__,
        "model_config": model.cfg.to_dict(),
        "train_config": dataclasses.asdict(train_cfg),
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


def _reuse(path: Path, cfg: ModelConfig, train_cfg: TrainConfig, seed: int,
           data: GraphDataset) -> dict[str, Any]:
    payload = load_checkpoint(path)
    check_compatible(payload, data, path)
    wanted = {"model_config": cfg.to_dict(),
              "train_config": dataclasses.asdict(train_cfg), "seed": seed}
    for key, value in wanted.items():
        if payload.get(key) != value:
            raise CheckpointError(
                f"{path} was trained with a different {key.replace('_', ' ')} "
                f"({payload.get(key)} vs {value}); use another run directory or --teachers DIR"
            )
    return payload


def train_or_load_teachers(
    run: RunConfig, data: GraphDataset, teacher_dir: Path, device: torch.device,
    quiet: bool = False, log=print, checkpoint_every: float = 30.0, fresh: bool = False,
) -> list[TrainedModel]:
    """One trained teacher per configured depth, reusing matching checkpoints in ``teacher_dir``.

    A teacher being trained saves its state to ``teacher-L.resume`` every ``checkpoint_every``
    seconds, and an interrupted one continues from there. ``fresh`` retrains every teacher and
    ignores saved states (``--force``). ``teacher_dir`` is locked while in use, so two runs that
    share it cannot train the same teacher at once.
    """
    with RunLock(teacher_dir, log=None if quiet else log):
        return _train_or_load(run, data, teacher_dir, device, quiet, log, checkpoint_every, fresh)


def load_trained_teachers(run: RunConfig, data: GraphDataset, teacher_dir: Path,
                          device: torch.device) -> list[TrainedModel]:
    """The teachers another process has just trained or checked in ``teacher_dir``, loaded
    without taking its lock: the other ranks of a distributed run, after rank 0."""
    return _train_or_load(run, data, teacher_dir, device, True, print, 0.0, False)


def _train_or_load(run, data, teacher_dir, device, quiet, log, checkpoint_every, fresh):
    teachers = []
    dev_data = data.to(device)
    for cfg in run.teachers:
        name = f"teacher-{cfg.hidden_layers}"
        path = teacher_dir / f"{name}.pt"
        seed = teacher_seed(run.seed, cfg.hidden_layers)
        if path.exists() and not fresh:
            payload = _reuse(path, cfg, run.teacher_train, seed, data)
            model = model_from_checkpoint(payload, path).to(device)
            m = payload["metrics"]
            if not quiet:
                log(f"reusing {name} from {path} (val {m['val']:.4f})")
            teachers.append(TrainedModel(name, model, cfg, count_parameters(model), m["val"],
                                         m["test"], m["best_epoch"], m["train_s"], path, True))
            continue
        seed_everything(seed)
        model = GNN(data.num_features, data.num_classes, cfg).to(device)
        resume = Resume(resume_path(path), training_key(cfg, run.teacher_train, seed, data,
                                                        **scale.key(run.scale)),
                        every_s=checkpoint_every, log=None if quiet else log)
        if fresh:
            resume.discard()
        result = fit(model, dev_data, run.teacher_train, seed=seed, desc=name, quiet=quiet,
                     resume=resume,
                     **scale.fit_kwargs_teacher(model, dev_data, run.scale, seed))
        test, _ = scale.evaluate(model, dev_data, "test", run.scale)
        save_checkpoint(path, checkpoint_payload("teacher", model, data, run.teacher_train,
                                                 seed, result, test))
        resume.discard()
        model.eval()
        teachers.append(TrainedModel(name, model, cfg, count_parameters(model), result.val, test,
                                     result.best_epoch, result.train_s, path, False))
    for t in teachers:
        for p in t.model.parameters():
            p.requires_grad_(False)
    return teachers


def training_key(cfg: ModelConfig, train_cfg: TrainConfig, seed: int, data: GraphDataset,
                 **extra: Any) -> dict[str, Any]:
    """What a saved training state must match to be resumed (see :class:`mskd.train.Resume`)."""
    return {"model_config": cfg.to_dict(), "train_config": dataclasses.asdict(train_cfg),
            "seed": seed, "dataset": data.name, "fingerprint": data.fingerprint(), **extra}
