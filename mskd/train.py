"""The training loop shared by teachers and students.

Objective per step: ``task_loss + sum_i weight_i(epoch) * term_i(step)``. Distillation adds its
terms (LSP, KD, ...) as :class:`LossTerm` objects; the loop itself knows nothing about teachers.

Resume: with a :class:`Resume`, the whole training state (weights, optimiser, epoch, best so far,
history and every random number generator) is saved atomically at the end of an epoch at most
every ``every_s`` seconds; a later call with the same ``Resume`` continues from it and, on CPU,
reaches bit-identical weights and numbers to an uninterrupted run.

Model selection: after every epoch the model is scored on the validation split with the one
evaluator. With ``select="score"`` the best epoch (higher score, ties broken by lower validation
loss) is kept and training stops after ``patience`` epochs without improvement. With
``select="score+loss"`` (the GAT paper's rule) patience restarts whenever the score reaches its
best so far or the loss its lowest so far, and the weights are kept at the last epoch that did
both at once. Either way the kept weights are restored at the end. The test split is never looked
at here.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from .config import ConfigError, TrainConfig
from .data import GraphDataset
from .evaluate import evaluate_split
from .losses import task_loss
from .runs import CheckpointError, RunDirError, load_resume_state, save_checkpoint


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
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
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


@dataclass
class Resume:
    """Where and how often :func:`fit` saves its state, and what the state must match.

    ``key`` identifies the training (configs, seed, dataset fingerprint): a saved state with
    another key belongs to different settings and is refused, never silently continued.
    ``get_extra``/``set_extra`` carry state that lives outside the model (e.g. the attention log
    of a distillation objective).
    """

    path: Path
    key: dict[str, Any]
    every_s: float = 30.0
    get_extra: Callable[[], dict[str, Any]] | None = None
    set_extra: Callable[[dict[str, Any]], None] | None = None
    log: Callable[[str], None] | None = None

    def discard(self) -> None:
        """Drop the state once the final checkpoint is written."""
        self.path.unlink(missing_ok=True)


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        # weights_only loading accepts tensors, not NumPy arrays.
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "batches": gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    gen.set_state(state["batches"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def iterate_batches(graphs: Sequence[Data], batch_size: int, gen: torch.Generator) -> Iterator[Data]:
    """Whole-graph mini-batches in a seeded random order; one graph is yielded as it is."""
    if len(graphs) == 1:
        yield graphs[0]
        return
    order = torch.randperm(len(graphs), generator=gen).tolist()
    for i in range(0, len(order), batch_size):
        yield Batch.from_data_list([graphs[j] for j in order[i : i + batch_size]])


def gradient_shares(terms: dict[str, Tensor], params: Sequence[Tensor]) -> dict[str, float]:
    """Each weighted loss term's gradient norm over ``params`` as a share of their sum: how
    much of the update each term drives (the directions may partly cancel, so this is a share
    of effort, not of the step). Keeps the graph for the real backward pass."""
    norms = {}
    for name, v in terms.items():
        if not v.requires_grad:
            norms[name] = 0.0
            continue
        grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
        norms[name] = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    total = sum(norms.values())
    return {k: (n / total if total > 0 else 0.0) for k, n in norms.items()}


def fit(
    model: nn.Module,
    data: GraphDataset,
    cfg: TrainConfig,
    *,
    terms: Sequence[LossTerm] = (),
    extra_modules: Sequence[nn.Module] = (),
    seed: int = 0,
    desc: str = "train",
    quiet: bool = False,
    resume: Resume | None = None,
    batches: Callable[[int], Iterable[Any]] | None = None,
    forward: Callable[[Any, int], tuple[Tensor, Step]] | None = None,
    validate: Callable[[], tuple[float, float]] | None = None,
    grad_every: int = 0,
) -> FitResult:
    """Train ``model`` on ``data``'s train split, select on validation, restore the best weights.

    ``extra_modules`` (e.g. FitNet's projection) are optimised alongside the model.
    Mini-batch training (:mod:`mskd.scale`) replaces three pieces: ``batches(epoch)`` yields an
    epoch's batches, ``forward(batch, epoch)`` returns the task loss and the :class:`Step` the
    terms see, and ``validate()`` returns (metric, loss) on the validation split. Left out, each
    is the whole-graph version.

    With ``grad_every`` > 0, every ``grad_every``-th epoch (from the first) records in the history
    each term's share of the gradient at its first step: ``grad_share_<name>`` = the norm of the
    weighted term's gradient over the parameters divided by the sum of those norms (one more
    backward pass per term on those steps; the update itself is unchanged).
    """
    params = list(model.parameters()) + [p for m in extra_modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best_state = copy.deepcopy(model.state_dict())
    best = (-1.0, float("inf"))
    marks = best  # score+loss: (highest validation score, lowest validation loss) so far
    best_epoch, since_best = 0, 0
    history: list[dict] = []
    first, elapsed, finished = 1, 0.0, False
    if resume is not None and resume.path.exists():
        state = load_resume_state(resume.path)
        if state["key"] != resume.key:
            raise RunDirError(
                f"{resume.path} holds an interrupted training with different settings; rerun "
                "with the original settings to resume it, or use --force (or another --out) to "
                "start over"
            )
        try:
            model.load_state_dict(state["model"])
            for m, sd in zip(extra_modules, state["extra_modules"]):
                m.load_state_dict(sd)
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{resume.path} does not fit this model ({e}); delete it to "
                                  "start over") from None
        best_state, best = state["best_state"], tuple(state["best"])
        marks = tuple(state.get("marks", best))  # states saved before score+loss existed
        best_epoch, since_best = state["best_epoch"], state["since_best"]
        history, elapsed, finished = state["history"], state["elapsed_s"], state["finished"]
        first = state["epoch"] + 1
        _set_rng_state(state["rng"], gen)
        if state.get("batches") is not None and hasattr(batches, "load_state"):
            batches.load_state(state["batches"])
        if resume.set_extra is not None:
            resume.set_extra(state["extra"])
        if resume.log is not None:
            resume.log(f"{desc}: resuming after epoch {state['epoch']} from {resume.path}")
    t0 = time.perf_counter() - elapsed
    last_save, saved_epoch = time.perf_counter(), first - 1

    def save_state(epoch: int, done: bool) -> None:
        save_checkpoint(resume.path, {
            "key": resume.key, "epoch": epoch, "finished": done,
            "model": model.state_dict(), "extra_modules": [m.state_dict() for m in extra_modules],
            "optimizer": opt.state_dict(), "best_state": best_state, "best": list(best),
            "marks": list(marks), "best_epoch": best_epoch, "since_best": since_best,
            "history": history,
            "elapsed_s": time.perf_counter() - t0, "rng": _rng_state(gen),
            # Mini-batch samplers keep generators of their own (mskd.sampling.SeedBatches).
            "batches": batches.state() if hasattr(batches, "state") else None,
            "extra": resume.get_extra() if resume.get_extra is not None else {},
        })

    named_params = [*model.named_parameters(),
                    *((f"extra{i}.{n}", p) for i, m in enumerate(extra_modules)
                      for n, p in m.named_parameters())]

    def stop(what: str, epoch: int) -> NoReturn:
        """End training on a non-finite number with the last finite weights in the model; the
        last resume state on disk was saved from finite weights and is kept."""
        model.load_state_dict(best_state)
        kept = (f"; the state after epoch {saved_epoch} is kept in {resume.path}"
                if resume is not None and resume.path.exists() else "")
        raise TrainingError(f"{desc}: {what} at epoch {epoch}; stopped, best weights so far "
                            f"are from epoch {best_epoch}{kept}")

    # Logs (CI, nohup) are not terminals: redraw rarely there instead of a line per epoch.
    interactive = sys.stderr.isatty()
    # Updated by hand, not by iterating it: an iterated bar only writes its count back when it
    # redraws, so tqdm's monitor thread drew stale counts beside fresh postfixes in logs.
    bar = tqdm(desc=desc, disable=quiet or finished, leave=True, dynamic_ncols=True,
               mininterval=0.1 if interactive else 30.0, initial=first - 1, total=cfg.epochs)
    epoch = first - 1
    for epoch in ([] if finished else range(first, cfg.epochs + 1)):
        model.train()
        for m in extra_modules:
            m.train()
        sums: dict[str, float] = {}
        shares: dict[str, float] = {}
        steps = 0
        epoch_batches = (batches(epoch) if batches is not None
                         else iterate_batches(data.splits["train"], cfg.batch_size, gen))
        for g in epoch_batches:
            if forward is None:
                logits, hidden = model(g.x, g.edge_index)
                loss = task_loss(logits[g.mask], g.y[g.mask], data.multilabel)
                step = Step(logits, hidden, g, epoch)
            else:
                loss, step = forward(g, epoch)
            parts = {"task": loss}
            weighted = {"task": loss}
            for t in terms:
                w = t.weight_at(epoch)
                if w == 0.0:
                    continue  # a zero-weight term costs nothing: it is not even computed
                v = t.fn(step)
                parts[t.name] = v
                weighted[t.name] = w * v
                loss = loss + w * v
            for name, v in parts.items():
                if not torch.isfinite(v):
                    stop(f"loss term {name!r} is {v.item()}", epoch)
                sums[name] = sums.get(name, 0.0) + v.item()
            if not torch.isfinite(loss):
                # Every term finite, their weighted sum not: a weight times a large term.
                stop(f"the weighted total loss is {loss.item()}", epoch)
            if grad_every and steps == 0 and (epoch - 1) % grad_every == 0 and len(parts) > 1:
                shares = gradient_shares(weighted, params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        # Once per epoch, before the weights can be kept as best or saved in a resume state: a
        # finite loss can still take a step to non-finite weights.
        bad = next((n for n, p in named_params if not bool(p.detach().isfinite().all())), None)
        if bad is not None:
            stop(f"parameter {bad!r} became non-finite", epoch)
        val, val_loss = validate() if validate is not None else evaluate_split(model, data, "val")
        rec = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}, "val": val,
               "val_loss": val_loss, **{f"grad_share_{k}": v for k, v in shares.items()}}
        history.append(rec)
        if cfg.select == "score+loss":
            top, low = val >= marks[0], val_loss <= marks[1]
            if top and low:
                best = (val, val_loss)
                best_epoch = epoch
                best_state = copy.deepcopy(model.state_dict())
            since_best = 0 if top or low else since_best + 1
            marks = (max(val, marks[0]), min(val_loss, marks[1]))
        elif (val, -val_loss) > (best[0], -best[1]):
            best = (val, val_loss)
            best_epoch, since_best = epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        # refresh=False: a forced redraw per epoch would defeat mininterval and write one line
        # per epoch into non-terminal logs; the bar redraws itself at its own pace.
        bar.set_postfix(loss=f"{rec['task']:.3f}", val=f"{val:.4f}",
                        best=f"{best[0]:.4f}@{best_epoch}", refresh=False)
        bar.update(1)
        done = since_best >= cfg.patience or epoch == cfg.epochs
        if resume is not None and (done or time.perf_counter() - last_save >= resume.every_s):
            # Saved after the stopping decision, so a resumed run stops exactly where this would.
            save_state(epoch, done)
            last_save, saved_epoch = time.perf_counter(), epoch
        if done:
            break
    bar.close()
    model.load_state_dict(best_state)
    return FitResult(best_epoch, best[0], best[1], epoch, time.perf_counter() - t0, history)
