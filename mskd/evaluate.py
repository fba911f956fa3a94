"""The one scoring path: every prediction and score mskd reports goes through this module.

* :func:`predict_labels` is the prediction rule. Like OGB's ``Evaluator``, it is decided by the
  dataset's task, not by the caller: single-label -> the argmax class; multi-label -> a label is
  predicted positive when sigmoid(logit) >= 0.5, i.e. logit >= 0 (the authors' code thresholds raw
  logits at 0.5, a bug we do not copy).
* :func:`model_logits` runs a model in eval mode over a whole graph, in one forward pass or, for a
  graph too large for one, by exact layer-wise inference in chunks (:mod:`mskd.inference`);
  :func:`split_logits` does it for the labelled nodes of a split's graphs.
* :func:`score` is accuracy or micro-F1 of those predictions; :func:`evaluate_split` is the
  (metric, task loss) of a model on a split, what training selects on and runs report.

Shapes are checked with explicit messages. This module runs any module that maps ``(x,
edge_index)`` to ``(logits, hidden)``, so it sits below :mod:`mskd.models` in the layer order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from .data import MULTI, SINGLE, GraphDataset
from .inference import layerwise
from .losses import task_loss

METRICS = {SINGLE: "accuracy", MULTI: "micro-f1"}


def metric_name(task: str) -> str:
    try:
        return METRICS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(METRICS)}") from None


def _check(y_true: Tensor, logits: Tensor, task: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got {list(logits.shape)}")
    n, c = logits.shape
    if task == SINGLE:
        if y_true.shape != (n,):
            raise ValueError(f"single-label y_true must have shape [{n}], got {list(y_true.shape)}")
        if y_true.numel() and (int(y_true.min()) < 0 or int(y_true.max()) >= c):
            raise ValueError(f"labels must lie in [0, {c}), got {int(y_true.min())}..{int(y_true.max())}")
    elif task == MULTI:
        if y_true.shape != (n, c):
            raise ValueError(f"multi-label y_true must have shape [{n}, {c}], got {list(y_true.shape)}")
    else:
        metric_name(task)
    if n == 0:
        raise ValueError("cannot score an empty set of nodes")


def predict_labels(logits: Tensor, task: str) -> Tensor:
    """The predicted labels: the argmax class (single-label) or every label whose logit is >= 0,
    i.e. sigmoid >= 0.5 (multi-label).

    Shapes:
        logits: [N, C] -> single-label: [N] int64 class ids; multi-label: [N, C] bool
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got {list(logits.shape)}")
    if task == SINGLE:
        return logits.argmax(dim=1)
    if task == MULTI:
        return logits >= 0
    raise ValueError(f"unknown task {task!r}; valid: {', '.join(METRICS)}")


@torch.no_grad()
def score(y_true: Tensor, logits: Tensor, task: str) -> float:
    """Accuracy (single-label) or micro-F1 (multi-label) of ``logits`` against ``y_true``.

    Shapes:
        y_true: [N] class ids (single-label) or [N, C] 0/1 (multi-label); logits: [N, C].
    """
    _check(y_true, logits, task)
    pred = predict_labels(logits, task)
    if task == SINGLE:
        return (pred == y_true).float().mean().item()
    truth = y_true > 0.5
    tp = (pred & truth).sum().item()
    fp = (pred & ~truth).sum().item()
    fn = (~pred & truth).sum().item()
    denom = 2 * tp + fp + fn
    # No positives predicted and none present: perfect agreement.
    return 1.0 if denom == 0 else 2 * tp / denom


# --- running a model over a split --------------------------------------------------------------


@torch.no_grad()
def model_logits(model: nn.Module, x: Tensor, edge_index: Tensor,
                 chunk_size: int | None = None) -> Tensor:
    """Eval-mode logits of every node (dropout off, no autograd); the model's train/eval mode is
    restored afterwards.

    ``chunk_size``: exact layer-wise inference in chunks gathering at most that many rows
    (:func:`mskd.inference.layerwise`), for graphs whose whole-graph forward does not fit in
    memory; ``None`` runs one whole-graph forward. Both give the same logits up to floating-point
    summation order.

    Shapes:
        x: [N, F], edge_index: [2, E] -> [N, C]
    """
    if chunk_size is not None:
        return layerwise(model, x, edge_index, chunk_size, keep_hidden=False)[0]
    was = model.training
    model.eval()
    try:
        logits, _ = model(x, edge_index)
    finally:
        model.train(was)
    return logits


def split_logits(model: nn.Module, graphs: Sequence[Data],
                 chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """:func:`model_logits` and targets of the nodes in ``g.mask`` of every graph, concatenated
    in graph order, then node order.

    Shapes:
        -> (logits [M, C], y [M] or [M, C]); M = masked nodes of all graphs
    """
    logits, ys = [], []
    for g in graphs:
        z = model_logits(model, g.x, g.edge_index, chunk_size)
        logits.append(z[g.mask])
        ys.append(g.y[g.mask])
    return torch.cat(logits), torch.cat(ys)


def evaluate_split(model: nn.Module, data: GraphDataset, split: str,
                   chunk_size: int | None = None) -> tuple[float, float]:
    """(metric, task loss) of ``model`` on the labelled nodes of ``split``; ``chunk_size`` as in
    :func:`model_logits`."""
    logits, y = split_logits(model, data.splits[split], chunk_size)
    return score(y, logits, data.task), task_loss(logits, y, data.multilabel).item()


def split_in_degrees(graphs: Sequence[Data]) -> Tensor:
    """:func:`in_degree` of the nodes in ``g.mask`` of every graph, in :func:`split_logits`'
    order (on the CPU).

    Shapes:
        -> [M] int64
    """
    return torch.cat([in_degree(g.edge_index, g.num_nodes)[g.mask.cpu()] for g in graphs])


# --- scores by node degree (the paper's motivating analysis) -----------------------------------


def in_degree(edge_index: Tensor, num_nodes: int) -> Tensor:
    """In-degree of every node, counted on ``edge_index[1]``; self-loops are NOT counted.

    Self-loops are dropped so the degree means "number of neighbours" whether or not a dataset
    stores them (PPI's raw files do, PyG removes them; GAT/GCN add their own inside the layer).

    Shapes:
        edge_index: [2, E] -> [num_nodes] int64
    """
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
    dst = edge_index[1][edge_index[0] != edge_index[1]]
    return torch.bincount(dst.cpu(), minlength=num_nodes)


def quantile_buckets(degrees: Tensor, n_buckets: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """Split nodes into at most ``n_buckets`` degree buckets of about equal size.

    Cut ``i`` (i = 1..n-1) is the observed degree value ``d`` whose count of nodes with degree
    ``< d`` is closest to ``i * M / n`` (M nodes; ties go to the smaller ``d``). A node's bucket is
    the number of cuts <= its degree. Because cuts are observed degree values, tied degrees always
    share a bucket; cuts that coincide (or fall on the smallest degree) are merged, so with heavily
    tied degrees there are *fewer* buckets than asked, but never an empty one.

    Shapes:
        degrees: [M] -> (bucket id per node [M] int64 in 0..B-1, B inclusive (lo, hi) degree
        ranges, one per bucket, in increasing order)
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    if degrees.ndim != 1 or degrees.numel() == 0:
        raise ValueError("degree bucketing needs a non-empty 1-D tensor of degrees")
    d = degrees.to(torch.int64).cpu()
    srt = torch.sort(d).values
    m = srt.numel()
    values = torch.unique(srt)  # sorted
    below = torch.searchsorted(srt, values).double()  # nodes with a smaller degree
    lowest = int(values[0])
    picks = {int(values[int(torch.argmin((below - i * m / n_buckets).abs()))])
             for i in range(1, n_buckets)}
    cuts = sorted(picks - {lowest})
    cut_t = torch.tensor(cuts, dtype=torch.int64)
    bucket = torch.searchsorted(cut_t, d, right=True)
    edges = [lowest, *cuts, int(srt[-1]) + 1]
    bounds = [(edges[i], edges[i + 1] - 1) for i in range(len(edges) - 1)]
    return bucket, bounds


def degree_buckets(
    edge_index: Tensor, num_nodes: int, nodes: Tensor, n_buckets: int
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Quantile buckets of ``nodes`` by in-degree (:func:`in_degree`, self-loops not counted).

    Shapes:
        edge_index: [2, E], nodes: [M] node ids (or a [num_nodes] bool mask) -> (bucket id per
        node of ``nodes`` [M], inclusive (lo, hi) degree range per bucket); see
        :func:`quantile_buckets` for ties.
    """
    deg = in_degree(edge_index, num_nodes)
    return quantile_buckets(deg[nodes.cpu()], n_buckets)


@torch.no_grad()
def bucket_scores(
    y_true: Tensor, logits: Tensor, bucket: Tensor, n_buckets: int, task: str
) -> list[float | None]:
    """:func:`score` of the nodes of each bucket (``None`` for an empty bucket).

    Shapes:
        y_true: [M] or [M, C], logits: [M, C], bucket: [M] ids in 0..n_buckets-1 -> n_buckets
    """
    if bucket.shape != (logits.shape[0],):
        raise ValueError(
            f"bucket must have shape [{logits.shape[0]}], got {list(bucket.shape)}"
        )
    bucket = bucket.to(logits.device)
    out: list[float | None] = []
    for b in range(n_buckets):
        sel = bucket == b
        out.append(score(y_true[sel], logits[sel], task) if bool(sel.any()) else None)
    return out
