"""Teachers: train one GNN per depth, or reuse the checkpoint a previous run left.

A teacher checkpoint stores its model config, training config, seed and the dataset fingerprint;
it is reused only when all of them match the current run, and a mismatch is an error rather than
a silent retrain over the user's file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import scale
from .config import ModelConfig, RunConfig, TrainConfig, teacher_names, teacher_replicas
from .context import RunContext
from .data import GraphDataset
from .models import GNN, count_parameters
from .runs import CheckpointError, RunLock, load_checkpoint, resume_path, save_checkpoint
from .targets import (
    TrainedModel,
    check_compatible,
    checkpoint_payload,
    model_from_checkpoint,
    training_key,
)
from .train import Resume, fit, seed_everything


def teacher_seed(seed: int, layers: int, replica: int = 0) -> int:
    # Independent of which other teachers exist, so a reused teacher equals a retrained one;
    # depths stay below 100 (options: at most 64), so replicas never meet another depth's seed.
    return seed * 1000 + layers + 100 * replica


def _reuse(path: Path, cfg: ModelConfig, train_cfg: TrainConfig, seed: int,
           data: GraphDataset) -> dict[str, Any]:
    payload = load_checkpoint(path)
    check_compatible(payload, data, path)
    wanted = {"model_config": cfg.to_dict(),
              "train_config": train_cfg.to_dict(), "seed": seed}
    for key, value in wanted.items():
        if payload.get(key) != value:
            raise CheckpointError(
                f"{path} was trained with a different {key.replace('_', ' ')} "
                f"({payload.get(key)} vs {value}); use another run directory or --teachers DIR"
            )
    return payload


def train_or_load_teachers(run: RunConfig, data: GraphDataset, teacher_dir: Path,
                           ctx: RunContext) -> list[TrainedModel]:
    """One trained teacher per configured depth, reusing matching checkpoints in ``teacher_dir``.

    A teacher being trained saves its state to ``teacher-L.resume`` every
    ``ctx.checkpoint_every`` seconds, and an interrupted one continues from there.
    ``ctx.fresh`` retrains every teacher and ignores saved states (``--force``). ``teacher_dir``
    is locked while in use, so two runs that share it cannot train the same teacher at once.
    """
    with RunLock(teacher_dir, log=ctx.log):
        return _train_or_load(run, data, teacher_dir, ctx)


def load_trained_teachers(run: RunConfig, data: GraphDataset, teacher_dir: Path,
                          ctx: RunContext) -> list[TrainedModel]:
    """The teachers another process has just trained or checked in ``teacher_dir``, loaded
    without taking its lock: the other ranks of a distributed run, after rank 0."""
    return _train_or_load(run, data, teacher_dir,
                          dataclasses.replace(ctx, quiet=True, fresh=False))


def _train_or_load(run: RunConfig, data: GraphDataset, teacher_dir: Path,
                   ctx: RunContext) -> list[TrainedModel]:
    device = ctx.device
    teachers = []
    dev_data = data.to(device)
    for cfg, name, replica in zip(run.teachers, teacher_names(run.teachers),
                                  teacher_replicas(run.teachers)):
        path = teacher_dir / f"{name}.pt"
        seed = teacher_seed(run.seed, cfg.hidden_layers, replica)
        if path.exists() and not ctx.fresh:
            payload = _reuse(path, cfg, run.teacher_train, seed, data)
            model = model_from_checkpoint(payload, path).to(device)
            m = payload["metrics"]
            ctx.log(f"reusing {name} from {path} (val {m['val']:.4f})")
            teachers.append(TrainedModel(name, model, cfg, count_parameters(model), m["val"],
                                         m["test"], m["best_epoch"], m["train_s"], path, True))
            continue
        seed_everything(seed)
        model = GNN(data.num_features, data.num_classes, cfg).to(device)
        resume = Resume(resume_path(path), training_key(cfg, run.teacher_train, seed, data,
                                                        **scale.key(run.scale)),
                        every_s=ctx.checkpoint_every, log=ctx.log)
        if ctx.fresh:
            resume.discard()
        result = fit(model, dev_data, run.teacher_train, seed=seed, desc=name, quiet=ctx.quiet,
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
