"""The training loop shared by teachers and students.

Objective per step: ``task_loss + sum_i weight_i(epoch) * term_i(step)``. Distillation adds its
terms (LSP, KD, ...) as :class:`LossTerm` objects; the loop itself knows nothing about teachers.

Model selection: after every epoch the model is scored on the validation split with the one
evaluator; the best epoch (higher score, ties broken by lower validation loss) is kept, training
stops after ``patience`` epochs without improvement, and the best weights are restored. The test
split is never looked at here.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import GraphDataset
from .evaluate import score
from .losses import task_loss


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss); the last good weights are kept."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available, else cpu."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


@dataclass
class Step:
    """What a loss term sees at one optimisation step."""

    logits: Tensor  # [N, C] for every node of ``graph``
    hidden: list[Tensor]  # per hidden layer, [N, width]
    graph: Data  # the (batched) graph; ``graph.mask`` marks the training nodes, ``graph.gid``
    epoch: int


@dataclass
class LossTerm:
    """A named extra term of the objective. ``weight`` may depend on the epoch (schedules)."""

    name: str
    fn: Callable[[Step], Tensor]
    weight: float | Callable[[int], float] = 1.0

    def weight_at(self, epoch: int) -> float:
        return float(self.weight(epoch) if callable(self.weight) else self.weight)


@dataclass
class FitResult:
    best_epoch: int
    val: float
    val_loss: float
    epochs_run: int
    train_s: float
    history: list[dict] = field(default_factory=list)


def iterate_batches(graphs: Sequence[Data], batch_size: int, gen: torch.Generator) -> Iterator[Data]:
    """Whole-graph mini-batches in a seeded random order; one graph is yielded as it is."""
    if len(graphs) == 1:
        yield graphs[0]
        return
    order = torch.randperm(len(graphs), generator=gen).tolist()
    for i in range(0, len(order), batch_size):
        yield Batch.from_data_list([graphs[j] for j in order[i : i + batch_size]])


@torch.no_grad()
def predict_split(model: nn.Module, graphs: Sequence[Data]) -> tuple[Tensor, Tensor]:
    """Eval-mode logits and targets of the masked nodes of every graph, concatenated."""
    was = model.training
    model.eval()
    logits, ys = [], []
    for g in graphs:
        z, _ = model(g.x, g.edge_index)
        logits.append(z[g.mask])
        ys.append(g.y[g.mask])
    model.train(was)
    return torch.cat(logits), torch.cat(ys)


def evaluate_split(model: nn.Module, data: GraphDataset, split: str) -> tuple[float, float]:
    """(metric, task loss) of ``model`` on one split."""
    logits, y = predict_split(model, data.splits[split])
    return score(y, logits, data.task), task_loss(logits, y, data.multilabel).item()


def fit(
    model: nn.Module,
    data: GraphDataset,
    cfg: TrainConfig,
    terms: Sequence[LossTerm] = (),
    extra_modules: Sequence[nn.Module] = (),
    seed: int = 0,
    desc: str = "train",
    quiet: bool = False,
) -> FitResult:
    """Train ``model`` on ``data``'s train split, select on validation, restore the best weights.

    ``extra_modules`` (e.g. FitNet's projection) are optimised alongside the model.
    """
    params = list(model.parameters()) + [p for m in extra_modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best_state = copy.deepcopy(model.state_dict())
    best = (-1.0, float("inf"))
    best_epoch, since_best = 0, 0
    history: list[dict] = []
    t0 = time.perf_counter()
    # Logs (CI, nohup) are not terminals: redraw rarely there instead of a line per epoch.
    interactive = sys.stderr.isatty()
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, disable=quiet, leave=True,
               dynamic_ncols=True, mininterval=0.1 if interactive else 30.0)
    epoch = 0
    for epoch in bar:
        model.train()
        for m in extra_modules:
            m.train()
        sums: dict[str, float] = {}
        steps = 0
        for g in iterate_batches(data.splits["train"], cfg.batch_size, gen):
            logits, hidden = model(g.x, g.edge_index)
            loss = task_loss(logits[g.mask], g.y[g.mask], data.multilabel)
            parts = {"task": loss}
            step = Step(logits, hidden, g, epoch)
            for t in terms:
                w = t.weight_at(epoch)
                if w == 0.0:
                    continue  # a zero-weight term costs nothing: it is not even computed
                v = t.fn(step)
                parts[t.name] = v
                loss = loss + w * v
            for name, v in parts.items():
                if not torch.isfinite(v):
                    model.load_state_dict(best_state)
                    raise TrainingError(
                        f"{desc}: loss term {name!r} is {v.item()} at epoch {epoch}; "
                        f"stopped, best weights so far are from epoch {best_epoch}"
                    )
                sums[name] = sums.get(name, 0.0) + v.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        val, val_loss = evaluate_split(model, data, "val")
        rec = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}, "val": val,
               "val_loss": val_loss}
        history.append(rec)
        if (val, -val_loss) > (best[0], -best[1]):
            best = (val, val_loss)
            best_epoch, since_best = epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        bar.set_postfix(loss=f"{rec['task']:.3f}", val=f"{val:.4f}", best=f"{best[0]:.4f}@{best_epoch}")
        if since_best >= cfg.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best[0], best[1], epoch, time.perf_counter() - t0, history)
