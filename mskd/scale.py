"""Neighbour-sampled training of teachers and students (``--sampler neighbor``).

Seeds and losses:

* Teachers: seeds are the training nodes; the task loss is their mean.
* Student with teachers: seeds are *all* nodes of the graph, because the full-batch student
  receives its distillation terms on every node (labelled or not); the distillation terms are
  means over the seeds of a batch. The task loss is summed over the batch's training seeds and
  divided by ``batch_size * |train| / |seeds|``: its expectation over batches is the full-batch
  task loss, a batch without labelled nodes contributes 0 (not NaN), and the loss decomposes
  over ranks, so 2 ranks x B seeds give the gradient of 1 process x 2B seeds.
* Student without teachers (``none``): seeds are the training nodes.

Teacher targets are exact: every teacher is run once with layer-wise full-neighbourhood inference
(:mod:`mskd.inference`), and per node its logits and the hidden layer the losses match are
cached (memory reported). A batch gathers them by ``batch.n_id``. The LSP target distribution is
formed per batch on the batch's own sampled in-edges of the seeds, from the cached teacher hidden
states, and compared with the student's distribution on the same edges.

Evaluation (model selection, test score) uses layer-wise inference too, never sampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .config import ConfigError, ScaleConfig
from .data import GraphDataset
from .evaluate import evaluate_split
from .losses import edge_log_structure, kernel_divisor, task_loss, with_self_loops
from .sampling import SeedBatches
from .targets import ServeTargets, TeacherView, TrainedModel
from .train import Step


def check_supported(data: GraphDataset, scale: ScaleConfig) -> None:
    if scale.sampler == "neighbor" and not (
        data.transductive and len(data.splits["train"]) == 1
    ):
        raise ConfigError(
            f"--sampler neighbor needs one transductive graph; {data.name} has "
            f"{len(data.splits['train'])} training graphs (train it full-batch)"
        )


def n_layers(model: nn.Module) -> int:
    """Hops of a model's receptive field to sample: its message-passing layers, plus an MLP's
    propagated hops (more than its receptive field needs, but an MLP student with LSP still
    wants its batch's neighbours, and graph-free MLPs keep their sampling as it was)."""
    return model.cfg.hidden_layers + 1 + model.cfg.hops


def evaluate(model: nn.Module, data: GraphDataset, split: str,
             scale: ScaleConfig) -> tuple[float, float]:
    """(metric, task loss) on ``split``: whole-graph forward for ``full``, layer-wise otherwise
    (:func:`mskd.evaluate.evaluate_split`)."""
    return evaluate_split(model, data, split,
                          None if scale.sampler == "full" else scale.chunk_size)


class CachedTeacherOutputs:
    """Per node, every teacher's logits and last hidden layer from layer-wise inference; per
    batch, :class:`mskd.targets.TeacherView` objects for its seeds (the interface of
    :class:`mskd.distill.TeacherOutputs`)."""

    def __init__(self, teachers: Sequence, graph, chunk_size: int, kernel: str | None,
                 kernel_scale: float | str = 100.0) -> None:
        self.kernel = kernel
        self.logits, self.hidden = [], []
        for t in teachers:
            z, h = t.model.layerwise(graph.x, graph.edge_index, chunk_size)
            self.logits.append(z)
            self.hidden.append(h[-1])
            del h
        # "auto": each teacher's median over the whole graph, not per batch.
        self.scales = [kernel_divisor(kernel_scale, h, graph.edge_index) if kernel else 1.0
                       for h in self.hidden]
        self.nbytes = sum(t.numel() * t.element_size() for t in (*self.logits, *self.hidden))

    def __call__(self, batch) -> list:
        bs, n_id = batch.batch_size, batch.n_id
        views = []
        edge_index = None
        if self.kernel:
            # The seeds' sampled in-edges, one self loop per seed: where both sides' LSP
            # distributions are formed this step.
            ei = with_self_loops(batch.edge_index, n_id.numel())
            edge_index = ei[:, ei[1] < bs]
        for z, h, scale in zip(self.logits, self.hidden, self.scales):
            view = TeacherView(z[n_id[:bs]], h[n_id[:bs]])
            if edge_index is not None:
                view.edge_index = edge_index
                view.log_p = edge_log_structure(h[n_id], edge_index, self.kernel, scale=scale)
            views.append(view)
        return views


@dataclass
class Hooks:
    """What :func:`mskd.train.fit` needs for mini-batch training."""

    batches: SeedBatches
    forward: Callable[[Any, int], tuple[Tensor, Step]]
    validate: Callable[[], tuple[float, float]]

    def fit_kwargs(self) -> dict[str, Any]:
        return {"batches": self.batches, "forward": self.forward, "validate": self.validate}


def hooks(model: nn.Module, data: GraphDataset, scale: ScaleConfig, seeds: Tensor, seed: int,
          net: nn.Module | None = None, full_hidden: bool = False, rank: int = 0,
          world: int = 1) -> Hooks:
    """Batches, step and validation of neighbour-sampled training over ``seeds``.

    ``net`` is what the step calls (the DDP wrapper of ``model`` in a distributed run);
    ``full_hidden`` keeps the student's hidden states of every node of the subgraph (LSP needs
    the seeds' neighbours), else only the seeds'.
    """
    graph = data.splits["train"][0]
    net = net if net is not None else model
    n_train = int(graph.mask.sum())
    scale_task = n_train / seeds.numel()
    # A model with sparse input dropout takes a batch's features as sparse rows.
    batches = SeedBatches(graph, seeds, scale.hops(n_layers(model)), scale.batch_size, seed,
                          rank, world, sparse_features=model.cfg.input_dropout == "sparse")
    device = graph.x.device

    def forward(batch, epoch: int) -> tuple[Tensor, Step]:
        batch = batch.to(device)
        logits, hidden = net(batch.x, batch.edge_index)
        bs = batch.batch_size
        m = batch.mask[:bs]
        per_node = task_loss(logits[:bs][m], batch.y[:bs][m], data.multilabel, reduction="none")
        loss = per_node.sum() / (bs * scale_task)
        kept = hidden if full_hidden else [h[:bs] for h in hidden]
        return loss, Step(logits[:bs], kept, batch, epoch)

    def validate() -> tuple[float, float]:
        val, loss = evaluate(model, data, "val", scale)
        if world > 1:
            # Equal on every rank already; the mean makes sure every rank decides alike.
            val, loss = distributed.mean([val, loss])
        return val, loss

    return Hooks(batches, forward, validate)


def fit_kwargs_teacher(model: nn.Module, data: GraphDataset, scale: ScaleConfig,
                       seed: int) -> dict[str, Any]:
    """:func:`mskd.train.fit` arguments for a teacher: none for full-batch training. Teachers
    train in one process (in a distributed run, rank 0 trains them before the student)."""
    if scale.sampler == "full":
        return {}
    check_supported(data, scale)
    graph = data.splits["train"][0]
    return hooks(model, data, scale, graph.mask.nonzero().view(-1).cpu(), seed).fit_kwargs()


def key(scale: ScaleConfig) -> dict[str, Any]:
    """What a saved training state must also match: nothing for full-batch training, so its
    states stay valid."""
    return {} if scale.sampler == "full" else {"scale": dataclasses.asdict(scale)}


def layerwise_targets(data: GraphDataset, scale: ScaleConfig,
                      kernel_scale: float | str = 100.0) -> ServeTargets:
    """Sampled training's teacher targets: :class:`CachedTeacherOutputs` of the training graph,
    gathered per batch."""
    graph = data.splits["train"][0]

    def serve(teachers: Sequence[TrainedModel], kernel: str | None) -> CachedTeacherOutputs:
        return CachedTeacherOutputs(teachers, graph, scale.chunk_size, kernel, kernel_scale)
    return serve


def student_hooks(model: nn.Module, data: GraphDataset, scale: ScaleConfig, seed: int,
                  device: torch.device, every_node: bool, full_hidden: bool) -> Hooks:
    """Hooks for the student, under DDP in a distributed run. ``every_node``: the seeds are all
    nodes (a student with teachers), else the training nodes; ``full_hidden``: a term needs the
    student's hidden states of the seeds' neighbours (LSP)."""
    graph = data.splits["train"][0]
    seeds = torch.arange(graph.num_nodes) if every_node else graph.mask.nonzero().view(-1).cpu()
    return hooks(model, data, scale, seeds, seed, net=distributed.wrap(model, device),
                 full_hidden=full_hidden, rank=distributed.rank(), world=distributed.world())
