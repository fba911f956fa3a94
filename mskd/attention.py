"""Teacher attention: how much the student listens to each of K teachers (``docs/method.md``).

The weights multiply the distillation terms, ``sum_k a_k * (beta * LSP_k + gamma * KD_k)``. They
are computed from detached logits: they guide the student but are never trained, otherwise the
student could lower its loss by moving the weights instead of by matching a teacher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _node_weights(z_student: Tensor, z_teachers: Tensor, tau: float, lam: float) -> Tensor:
    # cosine_similarity broadcasts [N, C] against [K, N, C] -> [K, N]
    sim = F.cosine_similarity(z_student.unsqueeze(0), z_teachers, dim=-1)
    return torch.softmax(sim.t() / tau, dim=1)


def _global_weights(z_student: Tensor, z_teachers: Tensor, tau: float, lam: float) -> Tensor:
    num_classes = z_student.size(1)
    # mean over the C x C entries of z_s^T z_tk, without building it: each entry sums over nodes,
    # so the total is sum_v (sum_c z_s[v, c]) * (sum_c' z_tk[v, c']).
    score = (z_student.sum(dim=1) * z_teachers.sum(dim=2)).sum(dim=1) / num_classes**2
    total = score.sum()
    if total == 0:
        raise ValueError("global attention: the teachers' scores sum to 0, cannot normalise")
    return lam * torch.softmax(score / total, dim=0)


def _uniform_weights(z_student: Tensor, z_teachers: Tensor, tau: float, lam: float) -> Tensor:
    num_teachers = z_teachers.size(0)
    return torch.full(
        (num_teachers,), 1.0 / num_teachers, dtype=z_student.dtype, device=z_student.device
    )


MODES: dict[str, Callable[[Tensor, Tensor, float, float], Tensor]] = {
    "node": _node_weights,
    "global": _global_weights,
    "uniform": _uniform_weights,
}


def teacher_weights(
    z_student: Tensor,
    z_teachers: Sequence[Tensor],
    mode: str = "node",
    tau: float = 1.0,
    lam: float = 7.0,
) -> Tensor:
    """Attention weights over K teachers (Zhang et al., "Multi-Scale Distillation from Multiple
    Graph Neural Networks", AAAI 2022).

    Modes (:data:`MODES`):

    - ``"node"`` (default; the paper's "select teachers for different local structures"): one
      weight vector per node,
      ``a[v, k] = softmax_k(cos(z_s[v], z_tk[v]) / tau)``. Recompute it every step. Cosine lies
      in [-1, 1], so with ``tau = 1`` the weights cannot differ by more than a factor e^2 and in
      practice are nearly uniform (``docs/method.md``: 0.31-0.36 for every node on Cora with
      three teachers); choose ``tau`` on validation and report the weights used.
    - ``"global"`` (the authors' code): one scalar per teacher,
      ``score_k = mean(z_s^T z_tk)`` (the mean over all C x C entries, as the code computes it;
      this is ``(1/C^2) sum_v (sum_c z_s[v, c]) (sum_c z_tk[v, c])``, not the mean of node-wise
      dot products), ``a_k = lam * softmax_k(score_k / sum_j score_j)``. The authors compute it
      once, at the first step, from the untrained student, and round to 2 decimals; we do
      neither here (the caller decides when to call, nothing is rounded). The normalisation by
      the sum is ill-posed when the scores have mixed signs or sum to about 0; a zero sum raises.
    - ``"uniform"``: ``a_k = 1/K``, the multi-teacher ablation.

    All inputs are detached, so no gradient reaches the student through the weights.

    Args:
        z_student: student logits.
        z_teachers: the K teachers' logits for the same nodes.
        mode: ``"node"`` | ``"global"`` | ``"uniform"``.
        tau: temperature of the ``node`` softmax, > 0 (smaller = sharper).
        lam: ``global`` weights sum to ``lam`` (authors: 7), > 0.

    Shapes:
        z_student: [N, C], z_teachers: K x [N, C]
        -> [N, K] for ``node`` (rows sum to 1); [K] for ``uniform`` (sums to 1) and ``global``
        (sums to ``lam``)
    """
    if mode not in MODES:
        raise ValueError(f"unknown attention mode {mode!r}; valid: {', '.join(MODES)}")
    if len(z_teachers) == 0:
        raise ValueError("teacher_weights needs at least one teacher, got K=0")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    if z_student.dim() != 2:
        raise ValueError(f"z_student must be 2-D [N, C], got shape {tuple(z_student.shape)}")
    for k, z_t in enumerate(z_teachers):
        if z_t.shape != z_student.shape:
            raise ValueError(
                f"teacher {k} logits have shape {tuple(z_t.shape)}, "
                f"expected the student's {tuple(z_student.shape)}"
            )
    stacked = torch.stack([z_t.detach() for z_t in z_teachers])
    return MODES[mode](z_student.detach(), stacked, tau, lam)
