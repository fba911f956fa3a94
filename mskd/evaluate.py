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
