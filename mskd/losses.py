"""Loss functions for training and distilling GNNs: pure functions, shapes in the docstrings.

The objective (``docs/method.md``) is a visible weighted sum built by the caller::

    L = task_loss + sum_k a_k * (beta * lsp_loss_k + gamma * kd_loss_k)

so every distillation loss can return per-node values (``reduction="none"``) that node-wise
teacher attention weights can multiply. Teacher inputs are always detached: teachers are frozen and
a distillation loss must never push gradients into them. Because a frozen teacher's LSP local
structure is a constant of the graph, :func:`local_structure` + :func:`structure_kl` let the caller
compute it once instead of on every step (:func:`lsp_loss` is the two composed;
:func:`lsp_target_loss` takes the teacher's half as computed beforehand).

Kernels are looked up by name in :data:`KERNELS`; the distillation methods name their losses in
:data:`mskd.distill.METHODS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import add_self_loops, remove_self_loops, scatter

REDUCTIONS = ("mean", "sum", "none")


class KernelParams(NamedTuple):
    """Hyper-parameters of the LSP kernels (an immutable value; each kernel reads its own)."""

    scale: float = 100.0  # l1, l1_code: distance divisor (both authors' codes use 100)
    sigma: float = 1.0  # rbf: bandwidth
    c: float = 1.0  # poly: additive constant
    d: int = 2  # poly: degree


Kernel = Callable[[Tensor, Tensor, KernelParams], Tensor]


# ---------------------------------------------------------------------------------------------
# helpers


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def _reduce(per_node: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_node.mean()
    if reduction == "sum":
        return per_node.sum()
    return per_node


def _check_2d(name: str, x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, F], got shape {tuple(x.shape)}")


def _check_same_nodes(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.size(0) != b.size(0):
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of nodes, "
            f"got {a.size(0)} and {b.size(0)}"
        )


def _check_temperature(T: float) -> None:
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")


def segment_log_softmax(score: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Log-softmax of ``score`` within the groups given by ``index``.

    ``log p_e = score_e - log sum_{e': index[e'] = index[e]} exp(score_e')``, computed with the
    max-shift so that large logits (linear/poly kernels) neither overflow nor, as ``log`` of a
    plain softmax would, underflow to ``-inf``.

    Args:
        score: one logit per edge.
        index: the group (target node) of each edge.
        num_nodes: number of groups N.

    Shapes:
        score: [E], index: [E] -> [E]
    """
    # The shift cancels out of the result, so it needs no gradient.
    shift = scatter(score.detach(), index, dim=0, dim_size=num_nodes, reduce="max")
    shifted = score - shift[index]
    log_norm = scatter(shifted.exp(), index, dim=0, dim_size=num_nodes, reduce="sum").log()
    return shifted - log_norm[index]


# ---------------------------------------------------------------------------------------------
# task loss


def task_loss(logits: Tensor, y: Tensor, multilabel: bool, reduction: str = "mean") -> Tensor:
    """Supervised loss on labelled nodes.

    Single-label: cross-entropy ``-log softmax(z_v)[y_v]``. Multi-label: binary cross-entropy with
    logits, averaged over labels, ``-(1/C) sum_c [y_vc log sig(z_vc) + (1 - y_vc) log sig(-z_vc)]``.
    ``reduction="mean"`` averages over nodes (for BCE this equals PyTorch's default mean over all
    N*C entries, as in the authors' code).

    Args:
        logits: raw scores of the nodes to supervise (select the training nodes first).
        y: class indices (single-label) or 0/1 targets (multi-label).
        multilabel: whether ``y`` holds one binary target per label.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Shapes:
        logits: [N, C]; y: [N] long (single-label) or [N, C] (multi-label)
        -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    _check_2d("logits", logits)
    if multilabel:
        if y.shape != logits.shape:
            raise ValueError(
                f"multi-label targets must have the shape of logits {tuple(logits.shape)}, "
                f"got {tuple(y.shape)}"
            )
        per_node = F.binary_cross_entropy_with_logits(
            logits, y.to(logits.dtype), reduction="none"
        ).mean(dim=1)
    else:
        if y.dim() != 1 or y.size(0) != logits.size(0):
            raise ValueError(
                f"single-label targets must have shape [{logits.size(0)}], got {tuple(y.shape)}"
            )
        if y.is_floating_point():
            raise ValueError("single-label targets must be integer class indices")
        per_node = F.cross_entropy(logits, y, reduction="none")
    return _reduce(per_node, reduction)


# ---------------------------------------------------------------------------------------------
# local structure preserving (LSP) loss


def l1_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    """``-||x_j - x_i||_1 / scale``: log of the similarity ``exp(-||x_j - x_i||_1 / scale)``."""
    return -(x_j - x_i).abs().sum(dim=-1) / params.scale


def l1_code_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    """``exp(-||x_j - x_i||_1 / scale)`` used *as the logit*, as both authors' codes do."""
    return l1_kernel(x_j, x_i, params).exp()


def rbf_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    """``-||x_j - x_i||_2^2 / sigma``: log of the RBF similarity."""
    return -(x_j - x_i).pow(2).sum(dim=-1) / params.sigma


def linear_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    """``x_j . x_i`` used as the logit (it can be negative, so it cannot be a similarity)."""
    return (x_j * x_i).sum(dim=-1)


def poly_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    """``(x_j . x_i + c)^d`` used as the logit (negative for odd d, so not a similarity)."""
    return ((x_j * x_i).sum(dim=-1) + params.c).pow(params.d)


KERNELS: dict[str, Kernel] = {
    "l1": l1_kernel,
    "l1_code": l1_code_kernel,
    "rbf": rbf_kernel,
    "linear": linear_kernel,
    "poly": poly_kernel,
}


def _resolve_kernel(kernel: str | Kernel) -> Kernel:
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; valid: {', '.join(KERNELS)}")
        return KERNELS[kernel]
    return kernel


def _kernel_params(scale: float, sigma: float, c: float, d: int) -> KernelParams:
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return KernelParams(scale=scale, sigma=sigma, c=c, d=d)


def with_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``edge_index`` with every self loop removed and exactly one per node appended.

    Validates the edges: shape [2, E], integer ids in ``[0, num_nodes)``.

    Shapes:
        edge_index: [2, E] -> [2, E' + N] where E' counts the non-self edges
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.is_floating_point():
        raise ValueError("edge_index must hold integer node ids")
    if edge_index.numel() > 0 and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")
    edge_index, _ = remove_self_loops(edge_index.long())
    edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    return edge_index


# Floats of one gathered [chunk, F] block in :func:`edge_kernel`: 4M (16 MB in float32) bounds
# the temporary memory of a chunk while keeping the number of Python-level chunk steps small.
EDGE_CHUNK_FLOATS = 1 << 22

# Per-kernel gradients for :func:`edge_kernel`'s backward pass: ``(x_j, x_i, k, g, params) ->
# (g_j, g_i)`` for one chunk, where x_j, x_i are the chunk's gathered endpoints (owned by the
# caller, so they may be overwritten), k the kernel values and g the incoming gradient per edge.
# ``g_i = None`` means ``-g_j`` (kernels of x_j - x_i). Written out because autograd through the
# kernel makes about three times as many [chunk, F] passes (measured in docs/performance.md);
# tests/test_losses.py checks each against autograd. A kernel not listed falls back to autograd.


def _l1_grad(x_j: Tensor, x_i: Tensor, k: Tensor, g: Tensor, p: KernelParams):
    return x_j.sub_(x_i).sign_().mul_((g / -p.scale).unsqueeze(1)), None


def _l1_code_grad(x_j: Tensor, x_i: Tensor, k: Tensor, g: Tensor, p: KernelParams):
    return x_j.sub_(x_i).sign_().mul_((g * k / -p.scale).unsqueeze(1)), None


def _rbf_grad(x_j: Tensor, x_i: Tensor, k: Tensor, g: Tensor, p: KernelParams):
    return x_j.sub_(x_i).mul_((g * (-2.0 / p.sigma)).unsqueeze(1)), None


def _product_grad(x_j: Tensor, x_i: Tensor, coef: Tensor):
    coef = coef.unsqueeze(1)
    return x_i.mul_(coef), x_j.mul_(coef)


def _linear_grad(x_j: Tensor, x_i: Tensor, k: Tensor, g: Tensor, p: KernelParams):
    return _product_grad(x_j, x_i, g)


def _poly_grad(x_j: Tensor, x_i: Tensor, k: Tensor, g: Tensor, p: KernelParams):
    base = (x_j * x_i).sum(dim=-1) + p.c
    return _product_grad(x_j, x_i, g * p.d * base.pow(p.d - 1))


# The same kernels evaluated in place on a chunk's gathered endpoints (which they may overwrite):
# the same operations in the same order as the public kernels above, with no temporaries.
def _l1_fwd(x_j: Tensor, x_i: Tensor, p: KernelParams) -> Tensor:
    return x_j.sub_(x_i).abs_().sum(dim=-1).div_(-p.scale)


def _l1_code_fwd(x_j: Tensor, x_i: Tensor, p: KernelParams) -> Tensor:
    return _l1_fwd(x_j, x_i, p).exp_()


def _rbf_fwd(x_j: Tensor, x_i: Tensor, p: KernelParams) -> Tensor:
    return x_j.sub_(x_i).square_().sum(dim=-1).div_(-p.sigma)


def _linear_fwd(x_j: Tensor, x_i: Tensor, p: KernelParams) -> Tensor:
    return x_j.mul_(x_i).sum(dim=-1)


def _poly_fwd(x_j: Tensor, x_i: Tensor, p: KernelParams) -> Tensor:
    return x_j.mul_(x_i).sum(dim=-1).add_(p.c).pow_(p.d)


# kernel -> (in-place forward, gradient); a kernel not listed runs as given, with autograd.
_FAST_KERNELS: dict[Kernel, tuple[Callable, Callable]] = {
    l1_kernel: (_l1_fwd, _l1_grad),
    l1_code_kernel: (_l1_code_fwd, _l1_code_grad),
    rbf_kernel: (_rbf_fwd, _rbf_grad),
    linear_kernel: (_linear_fwd, _linear_grad),
    poly_kernel: (_poly_fwd, _poly_grad),
}


def _kernel_chunks(h: Tensor, src: Tensor, dst: Tensor, kernel: Kernel, params: KernelParams,
                   chunk: int) -> Tensor:
    fwd = _FAST_KERNELS.get(kernel, (kernel, None))[0]
    out = h.new_empty(src.numel())
    for i in range(0, src.numel(), chunk):
        out[i:i + chunk] = fwd(h[src[i:i + chunk]], h[dst[i:i + chunk]], params)
    return out


class _EdgeKernel(torch.autograd.Function):
    """Per-edge kernel values computed chunk by chunk; the backward pass gathers each chunk's
    endpoints again instead of keeping [E, F] tensors from the forward pass."""

    @staticmethod
    def forward(ctx, h: Tensor, src: Tensor, dst: Tensor, kernel: Kernel, params: KernelParams,
                chunk: int) -> Tensor:
        k = _kernel_chunks(h, src, dst, kernel, params, chunk)
        ctx.save_for_backward(h, src, dst, k)
        ctx.kernel, ctx.params, ctx.chunk = kernel, params, chunk
        return k

    @staticmethod
    def backward(ctx, grad_k: Tensor):
        h, src, dst, k = ctx.saved_tensors
        grad_h = torch.zeros_like(h)
        chunk, params = ctx.chunk, ctx.params
        rule = _FAST_KERNELS.get(ctx.kernel, (None, None))[1]
        for i in range(0, src.numel(), chunk):
            s, d = src[i:i + chunk], dst[i:i + chunk]
            if rule is not None:
                g_s, g_d = rule(h[s], h[d], k[i:i + chunk], grad_k[i:i + chunk], params)
            else:
                with torch.enable_grad():
                    h_s = h[s].detach().requires_grad_()
                    h_d = h[d].detach().requires_grad_()
                    g_s, g_d = torch.autograd.grad(ctx.kernel(h_s, h_d, params), (h_s, h_d),
                                                   grad_k[i:i + chunk])
            grad_h.index_add_(0, s, g_s)
            if g_d is None:
                grad_h.index_add_(0, d, g_s, alpha=-1)
            else:
                grad_h.index_add_(0, d, g_d)
        return grad_h, None, None, None, None, None


def edge_kernel(h: Tensor, src: Tensor, dst: Tensor, kernel: Kernel, params: KernelParams,
                chunk: int | None = None) -> Tensor:
    """``kernel(h[src], h[dst], params)`` without keeping an [E, F] tensor alive: the edges are
    processed in chunks of ``chunk`` (default: ``EDGE_CHUNK_FLOATS / F``), and when ``h`` needs a
    gradient the backward pass gathers each chunk's endpoints again, so what is kept for the
    backward pass is ``h``, the edge index and the [E] kernel values. Works for any kernel of :data:`KERNELS` or a callable of the
    same form.

    Shapes:
        h: [N, F], src: [E], dst: [E] -> [E]
    """
    if chunk is None:
        chunk = max(1, EDGE_CHUNK_FLOATS // max(1, h.size(1)))
    if h.requires_grad and torch.is_grad_enabled():
        return _EdgeKernel.apply(h, src, dst, kernel, params, chunk)
    return _kernel_chunks(h, src, dst, kernel, params, chunk)


def _log_structure(h: Tensor, edge_index: Tensor, kernel: Kernel, params: KernelParams) -> Tensor:
    src, dst = edge_index
    return segment_log_softmax(edge_kernel(h, src, dst, kernel, params), dst, h.size(0))


@torch.no_grad()
def median_edge_distance(h: Tensor, edge_index: Tensor) -> float:
    """Median L1 distance ``||h_u - h_v||_1`` over the edges that are not self loops (1.0 when
    there are none or the median is 0): the data's own scale for the ``l1`` kernels
    (``--kernel-scale auto``).

    Shapes:
        h: [N, F], edge_index: [2, E] -> float
    """
    _check_2d("h", h)
    src, dst = edge_index
    keep = src != dst
    if not bool(keep.any()):
        return 1.0
    dist = -edge_kernel(h.detach(), src[keep], dst[keep], l1_kernel, KernelParams(scale=1.0))
    m = float(dist.median())
    return m if m > 0 and math.isfinite(m) else 1.0


def kernel_divisor(kernel_scale: float | str, h: Tensor, edge_index: Tensor) -> float:
    """The ``l1`` kernels' distance divisor (``--kernel-scale``) for hidden states ``h``:
    ``kernel_scale``, or with ``"auto"`` :func:`median_edge_distance` of ``h``."""
    if kernel_scale == "auto":
        return median_edge_distance(h, edge_index)
    return float(kernel_scale)


def edge_log_structure(
    h: Tensor,
    edge_index: Tensor,
    kernel: str | Kernel = "l1",
    *,
    scale: float = 100.0,
    sigma: float = 1.0,
    c: float = 1.0,
    d: int = 2,
) -> Tensor:
    """:func:`local_structure`'s log-probabilities on an edge index that already holds exactly one
    self loop per node (as :func:`local_structure` returns it), keeping its edge order; used to
    line a student's structure up with a cached teacher structure.

    Shapes:
        h: [N, F], edge_index: [2, E] -> [E]
    """
    _check_2d("h", h)
    return _log_structure(h, edge_index, _resolve_kernel(kernel), _kernel_params(scale, sigma, c, d))


def local_structure(
    h: Tensor,
    edge_index: Tensor,
    kernel: str | Kernel = "l1",
    *,
    scale: float = 100.0,
    sigma: float = 1.0,
    c: float = 1.0,
    d: int = 2,
) -> tuple[Tensor, Tensor]:
    """Each node's distribution over its in-edges, in log space (the LSP paper's "local
    structure"; formulas and kernels as in :func:`lsp_loss`)::

        log p_v(u) = k(h_u, h_v) - log sum_{w -> v} exp(k(h_w, h_v))

    A frozen teacher's structure is a constant of the graph: compute it once (under
    ``torch.no_grad()``), keep it, and pass it to :func:`structure_kl` each step, instead of
    paying for the teacher's O(E * Ft) distances on every call of :func:`lsp_loss`.

    Args:
        h: hidden representation.
        edge_index: edges in PyG convention (source u, target v); self loops are normalised by
            :func:`with_self_loops`.
        kernel, scale, sigma, c, d: as in :func:`lsp_loss`.

    Returns:
        ``(edge_index_with_self_loops, log_p)``: keep the two together, ``log_p[e]`` belongs to
        edge ``e`` of the returned edge index.

    Shapes:
        h: [N, F], edge_index: [2, E] -> ([2, E'], [E']) with E' = non-self edges + N
    """
    _check_2d("h", h)
    edge_index = with_self_loops(edge_index, h.size(0))
    return edge_index, edge_log_structure(h, edge_index, kernel, scale=scale, sigma=sigma, c=c, d=d)


def structure_kl(
    log_p_teacher: Tensor,
    log_p_student: Tensor,
    edge_index: Tensor,
    num_nodes: int,
    reduction: str = "mean",
) -> Tensor:
    """Per-node ``KL(p_v^teacher || p_v^student) = sum_{u -> v} p_t (log p_t - log p_s)`` of two
    local structures from :func:`local_structure` on the same edge index (the second half of
    :func:`lsp_loss`). The teacher side is detached.

    Args:
        log_p_teacher: teacher log-probabilities per edge.
        log_p_student: student log-probabilities per edge.
        edge_index: the edge index :func:`local_structure` returned (with self loops).
        num_nodes: N.
        reduction: ``"mean"`` (over nodes) | ``"sum"`` | ``"none"``.

    Shapes:
        log_p_teacher: [E], log_p_student: [E], edge_index: [2, E]
        -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    if not (log_p_teacher.shape == log_p_student.shape == edge_index.shape[1:]):
        raise ValueError(
            f"log_p_teacher {tuple(log_p_teacher.shape)}, log_p_student "
            f"{tuple(log_p_student.shape)} and edge_index {tuple(edge_index.shape)} must describe "
            "the same edges"
        )
    log_p_teacher = log_p_teacher.detach()
    per_edge = log_p_teacher.exp() * (log_p_teacher - log_p_student)
    per_node = scatter(per_edge, edge_index[1], dim=0, dim_size=num_nodes, reduce="sum")
    return _reduce(per_node, reduction)


def lsp_loss(
    h_student: Tensor,
    h_teacher: Tensor,
    edge_index: Tensor,
    kernel: str | Kernel = "l1",
    reduction: str = "mean",
    *,
    scale: float = 100.0,
    sigma: float = 1.0,
    c: float = 1.0,
    d: int = 2,
) -> Tensor:
    """Local structure preserving loss (Yang et al., "Distilling Knowledge from Graph
    Convolutional Networks", CVPR 2020), the "topological semantics" term of MSKD (Zhang et al.,
    AAAI 2022).

    Each node v gets a distribution over its in-edges u -> v (self loop included once)::

        p_v(u) = exp(k(h_u, h_v)) / sum_{w -> v} exp(k(h_w, h_v))
        LSP    = mean_v KL(p_v^teacher || p_v^student)
               = mean_v sum_{u -> v} p_v^t(u) (log p_v^t(u) - log p_v^s(u))

    where ``k`` is a log-score ("logit") per edge, from :data:`KERNELS`:

    - ``"l1"`` (default): ``k = -||h_u - h_v||_1 / scale``, i.e.
      ``p_v(u) = s(u, v) / sum_w s(w, v)`` with ``s = exp(-||h_u - h_v||_1 / 100)``, the
      similarity of ``docs/method.md`` and of the LSP paper's idea.
    - ``"l1_code"``: ``k = exp(-||h_u - h_v||_1 / scale)``. Both authors' codes (DistillGCN and
      MSKD) apply the edge softmax to the similarity itself, so ``p_v(u)`` is proportional to
      ``exp(s(u, v))``; since ``s`` lies in (0, 1], no two neighbours' probabilities differ by more
      than a factor e. Kept so the two can be compared.
    - ``"rbf"``: ``k = -||h_u - h_v||_2^2 / sigma``.
    - ``"linear"``: ``k = h_u . h_v``; ``"poly"``: ``k = (h_u . h_v + c)^d``. These kernel values
      can be negative, so they are the softmax logit rather than the (positive) similarity.

    Only distances/products *within* each model enter, so the widths Fs and Ft may differ and no
    projection is needed. The teacher distribution uses ``h_teacher.detach()``. Self loops already
    in ``edge_index`` are removed and one per node is added, so every node's distribution is
    defined (an isolated node contributes 0). Duplicate non-self edges count once each. Work and
    memory are O(E * (Fs + Ft)); with a frozen teacher, cache its half with
    :func:`local_structure` and call :func:`structure_kl` (same result, O(E * Fs) per step).

    Args:
        h_student: student hidden representation.
        h_teacher: teacher hidden representation of the same nodes (frozen).
        edge_index: edges in PyG convention, ``edge_index[0]`` = source u, ``[1]`` = target v.
        kernel: a name in :data:`KERNELS` or a callable ``(x_j, x_i, KernelParams) -> [E]``.
        reduction: ``"mean"`` (over nodes) | ``"sum"`` | ``"none"`` (per-node values, e.g. to
            weight them with node-wise teacher attention).
        scale: divisor of the L1 distance (``l1``, ``l1_code``); the authors use 100.
        sigma: RBF bandwidth.
        c: constant of the polynomial kernel.
        d: degree of the polynomial kernel.

    Shapes:
        h_student: [N, Fs], h_teacher: [N, Ft], edge_index: [2, E]
        -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    _check_2d("h_student", h_student)
    _check_2d("h_teacher", h_teacher)
    _check_same_nodes("h_student", h_student, "h_teacher", h_teacher)
    kernel_fn = _resolve_kernel(kernel)
    params = _kernel_params(scale, sigma, c, d)
    num_nodes = h_student.size(0)
    edge_index = with_self_loops(edge_index, num_nodes)
    log_p_s = _log_structure(h_student, edge_index, kernel_fn, params)
    with torch.no_grad():
        log_p_t = _log_structure(h_teacher.detach(), edge_index, kernel_fn, params)
    return structure_kl(log_p_t, log_p_s, edge_index, num_nodes, reduction)


def lsp_target_loss(
    h_student: Tensor,
    log_p_teacher: Tensor,
    edge_index: Tensor,
    kernel: str | Kernel = "l1",
    kernel_scale: float | str = 100.0,
    reduction: str = "mean",
) -> Tensor:
    """:func:`lsp_loss` against a teacher structure formed beforehand (a frozen teacher's,
    from :func:`local_structure` or :func:`edge_log_structure`): the student's structure is
    formed on the teacher's edges, at its own :func:`kernel_divisor`, and compared with
    :func:`structure_kl`. This is the ``lsp`` term of :data:`mskd.distill.METHODS`.

    Args:
        h_student: student hidden representation.
        log_p_teacher: teacher log-probabilities per edge of ``edge_index``.
        edge_index: the teacher structure's edges: one self loop per node of the structure,
            every edge's target among them.
        kernel: a name in :data:`KERNELS` or a callable ``(x_j, x_i, KernelParams) -> [E]``.
        kernel_scale: the ``l1`` kernels' distance divisor, or ``"auto"`` for the student's
            median edge distance.
        reduction: ``"mean"`` (over nodes) | ``"sum"`` | ``"none"``.

    Shapes:
        h_student: [N, Fs], log_p_teacher: [E], edge_index: [2, E]
        -> scalar, or [N] for ``reduction="none"`` (0 for a node that is no edge's target)
    """
    scale = kernel_divisor(kernel_scale, h_student, edge_index)
    log_p_student = edge_log_structure(h_student, edge_index, kernel, scale=scale)
    return structure_kl(log_p_teacher, log_p_student, edge_index, h_student.size(0), reduction)


# ---------------------------------------------------------------------------------------------
# logit distillation


def kd_loss(
    z_student: Tensor,
    z_teacher: Tensor,
    T: float = 1.0,
    multilabel: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Logit knowledge distillation (Hinton et al., "Distilling the Knowledge in a Neural
    Network", 2015), as MSKD (Zhang et al., AAAI 2022) uses it for the teachers' logits.

    Single-label, per node, with ``p = softmax(z_t / T)`` and ``q = softmax(z_s / T)``::

        KD_v = T^2 * sum_c p_c (log p_c - log q_c)

    Multi-label, per node, with ``p = sigmoid(z_t / T)`` and ``q = sigmoid(z_s / T)`` per label::

        KD_v = T^2 * (1/C) sum_c [p_c (log p_c - log q_c) + (1 - p_c)(log(1 - p_c) - log(1 - q_c))]

    The mean (not the sum) over labels keeps the term on the scale of BCE-with-logits, which also
    averages over labels, so the weight gamma means the same for 6 or 121 labels. ``T^2`` keeps
    the gradient scale independent of the temperature. Logs come from ``log_softmax`` /
    ``logsigmoid`` so that saturated logits stay finite. The teacher is detached.

    Args:
        z_student: student logits.
        z_teacher: teacher logits (frozen).
        T: temperature, > 0.
        multilabel: per-label sigmoid (True) or softmax over classes (False).
        reduction: ``"mean"`` (over nodes) | ``"sum"`` | ``"none"``.

    Shapes:
        z_student: [N, C], z_teacher: [N, C] -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    _check_temperature(T)
    _check_2d("z_student", z_student)
    _check_2d("z_teacher", z_teacher)
    if z_student.shape != z_teacher.shape:
        raise ValueError(
            f"z_student and z_teacher must have the same shape, "
            f"got {tuple(z_student.shape)} and {tuple(z_teacher.shape)}"
        )
    s = z_student / T
    t = z_teacher.detach() / T
    if multilabel:
        log_p_t, log_1mp_t = F.logsigmoid(t), F.logsigmoid(-t)
        log_q, log_1mq = F.logsigmoid(s), F.logsigmoid(-s)
        per_label = log_p_t.exp() * (log_p_t - log_q) + log_1mp_t.exp() * (log_1mp_t - log_1mq)
        per_node = per_label.mean(dim=1)
    else:
        log_p_t = F.log_softmax(t, dim=1)
        log_q = F.log_softmax(s, dim=1)
        per_node = (log_p_t.exp() * (log_p_t - log_q)).sum(dim=1)
    return _reduce(per_node * (T * T), reduction)


# ---------------------------------------------------------------------------------------------
# feature-level baselines of the LSP paper


def fitnet_loss(
    h_student: Tensor,
    h_teacher: Tensor,
    proj: Callable[[Tensor], Tensor] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """FitNet hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015), as the
    LSP paper (Yang et al., CVPR 2020) uses it as a baseline::

        FitNet_v = (1/Ft) sum_f (proj(h_s)[v, f] - h_t[v, f])^2

    ``proj`` is a learned map owned (and optimised) by the caller, e.g. ``nn.Linear(Fs, Ft)``;
    ``None`` means identity and requires Fs == Ft. The teacher is detached.

    Args:
        h_student: student hidden representation.
        h_teacher: teacher hidden representation (frozen).
        proj: maps student features to the teacher's width.
        reduction: ``"mean"`` (over nodes; equals the MSE over all entries) | ``"sum"`` |
            ``"none"``.

    Shapes:
        h_student: [N, Fs], h_teacher: [N, Ft], proj: [N, Fs] -> [N, Ft]
        -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    _check_2d("h_student", h_student)
    _check_2d("h_teacher", h_teacher)
    _check_same_nodes("h_student", h_student, "h_teacher", h_teacher)
    hint = h_student if proj is None else proj(h_student)
    if hint.shape != h_teacher.shape:
        raise ValueError(
            f"projected student features {tuple(hint.shape)} do not match the teacher's "
            f"{tuple(h_teacher.shape)}; pass proj mapping Fs={h_student.size(1)} "
            f"to Ft={h_teacher.size(1)} (e.g. nn.Linear)"
        )
    per_node = (hint - h_teacher.detach()).pow(2).mean(dim=1)
    return _reduce(per_node, reduction)


def _attention_map(h: Tensor, p: int) -> Tensor:
    return F.normalize(h.abs().pow(p).sum(dim=1), p=2.0, dim=0)


def at_loss(h_student: Tensor, h_teacher: Tensor, p: int = 2, reduction: str = "mean") -> Tensor:
    """Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR
    2017), adapted to graphs as a baseline in the LSP paper (Yang et al., CVPR 2020): one
    attention value per node instead of per pixel::

        a(h)[v] = sum_f |h[v, f]|^p,   a_hat = a / ||a||_2   (normalised over nodes)
        AT_v    = N * (a_hat_s[v] - a_hat_t[v])^2

    so that ``mean_v AT_v = ||a_hat_s - a_hat_t||_2^2``. The maps are scale invariant
    (``h_s = c * h_t`` gives 0) and need no projection, so widths may differ. The teacher is
    detached.

    Args:
        h_student: student hidden representation.
        h_teacher: teacher hidden representation (frozen).
        p: exponent of the attention map, >= 1.
        reduction: ``"mean"`` | ``"sum"`` (``N * ||a_hat_s - a_hat_t||^2``) | ``"none"``.

    Shapes:
        h_student: [N, Fs], h_teacher: [N, Ft] -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    _check_2d("h_student", h_student)
    _check_2d("h_teacher", h_teacher)
    _check_same_nodes("h_student", h_student, "h_teacher", h_teacher)
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    diff = _attention_map(h_student, p) - _attention_map(h_teacher.detach(), p)
    per_node = h_student.size(0) * diff.pow(2)
    return _reduce(per_node, reduction)
