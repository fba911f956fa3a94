"""The one evaluator: every score mskd reports goes through :func:`score`.

Like OGB's ``Evaluator``, the metric is decided by the dataset's task, not by the caller:
single-label -> accuracy of the argmax; multi-label -> micro-averaged F1 with a label predicted
positive when sigmoid(logit) >= 0.5, i.e. logit >= 0 (the authors' code thresholds raw logits at
0.5, a bug we do not copy). Shapes are checked with explicit messages.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .data import MULTI, SINGLE

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


@torch.no_grad()
def score(y_true: Tensor, logits: Tensor, task: str) -> float:
    """Accuracy (single-label) or micro-F1 (multi-label) of ``logits`` against ``y_true``.

    Shapes:
        y_true: [N] class ids (single-label) or [N, C] 0/1 (multi-label); logits: [N, C].
    """
    _check(y_true, logits, task)
    if task == SINGLE:
        return (logits.argmax(dim=1) == y_true).float().mean().item()
    pred = logits >= 0
    truth = y_true > 0.5
    tp = (pred & truth).sum().item()
    fp = (pred & ~truth).sum().item()
    fn = (~pred & truth).sum().item()
    denom = 2 * tp + fp + fn
    # No positives predicted and none present: perfect agreement.
    return 1.0 if denom == 0 else 2 * tp / denom


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
