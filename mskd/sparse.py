"""Message passing as sparse-dense matrix products, without per-edge feature tensors.

PyG's ``MessagePassing`` gathers one message per edge (an [E, heads, channels] tensor for GAT),
scatters them into the targets and keeps the gathered tensor for the backward pass; on PPI-sized
graphs that tensor is most of a layer's time and memory (``docs/performance.md``). Here the
aggregation ``out[v] = sum_{u -> v} a_uv x[u]`` is one CSR matrix times a dense matrix, and its
backward is two more sparse kernels:

- ``d x = A^T @ d out``, with ``A^T`` a CSR matrix whose structure is built once per graph;
- ``d a_uv = d out[v] . x[u]``, a sampled dense-dense product (``torch.sparse.sampled_addmm``)
  evaluated only at the edges.

Only [E]-sized (or [E, heads]-sized) tensors are ever per edge. Multi-head layers use one
block matrix of ``N * heads`` rows: row ``v * heads + h`` holds head ``h``'s coefficients of
node ``v``'s in-edges, and the dense operand is the [N, heads * C] projection viewed as
[N * heads, C], so all heads go through one kernel call with no transposes.

The structure of a graph (sort order, CSR pointers, transpose) depends only on its edge index,
so :func:`adjacency` keeps it for every edge-index tensor it has seen until that tensor is freed:
full-batch training builds it once and reuses it every step.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Both warnings fire on every CSR construction; the tensors built here are valid by construction.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


@dataclass
class Blocks:
    """The CSR structure of ``A`` and ``A^T`` for one number of heads.

    ``A`` has ``N * heads`` rows (row ``v * heads + k``: node v's in-edges in head k); position
    ``p`` of its values holds entry ``value_index[p]`` of a row-major [E, heads] coefficient
    tensor (edges numbered as in :class:`Adjacency`). ``t_order`` puts ``A``'s values into
    ``A^T``'s order.
    """

    crow: Tensor
    col: Tensor
    row: Tensor  # [E * heads]: the row of each position
    value_index: Tensor  # [E * heads]: position in a row-major [E, heads] coefficient tensor
    t_crow: Tensor
    t_col: Tensor
    t_order: Tensor
    size: int  # N * heads


@dataclass
class Adjacency:
    """A graph's edges ``src -> dst`` (in the caller's order), optional constant edge weights
    (GCN's normalisation, SAGE's 1 / in-degree) and their CSR structures.

    Shapes:
        src, dst: [E], weight: [E]; ``num_nodes`` = N.
    """

    src: Tensor
    dst: Tensor
    num_nodes: int
    weight: Tensor | None = None
    _blocks: dict[int, Blocks] = field(default_factory=dict, repr=False)
    _block_weight: Tensor | None = field(default=None, repr=False)

    def blocks(self, heads: int = 1) -> Blocks:
        """The block structure for ``heads`` heads (built on first use, then kept)."""
        got = self._blocks.get(heads)
        if got is None:
            got = self._blocks[heads] = _build_blocks(self.src, self.dst, self.num_nodes, heads)
        return got

    def block_weight(self) -> Tensor:
        """``weight`` in the one-head block order (kept: constant weights are permuted once)."""
        if self._block_weight is None:
            self._block_weight = self.weight[self.blocks(1).value_index]
        return self._block_weight


def _build_blocks(src: Tensor, dst: Tensor, n: int, heads: int) -> Blocks:
    device = src.device
    h = torch.arange(heads, device=device)
    # Row of (edge, head) is dst * heads + head; a stable sort keeps the caller's edge order
    # inside each row.
    rows = (dst.unsqueeze(1) * heads + h).reshape(-1)
    order = torch.argsort(rows, stable=True)
    cols = (src.unsqueeze(1) * heads + h).reshape(-1)[order]
    size = n * heads
    counts = torch.bincount(rows, minlength=size)
    crow = torch.zeros(size + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=crow[1:])
    t_order = torch.argsort(cols, stable=True)
    t_counts = torch.bincount(cols, minlength=size)
    t_crow = torch.zeros(size + 1, dtype=torch.long, device=device)
    torch.cumsum(t_counts, 0, out=t_crow[1:])
    t_col = rows[order][t_order]
    return Blocks(crow, cols, rows[order], order, t_crow, t_col, t_order, size)


_seen: dict[tuple, tuple[weakref.ref, int, Adjacency]] = {}


def adjacency(edge_index: Tensor, num_nodes: int, kind: str,
              build: Callable[[Tensor, int], Adjacency]) -> Adjacency:
    """The :class:`Adjacency` that ``build(edge_index, num_nodes)`` makes, kept per edge-index
    tensor (and ``kind``: GAT, GCN and SAGE normalise self loops differently) while that tensor is
    alive and unmodified."""
    key = (id(edge_index), num_nodes, kind)
    hit = _seen.get(key)
    if hit is not None and hit[0]() is edge_index and hit[1] == edge_index._version:
        return hit[2]
    adj = build(edge_index, num_nodes)
    try:
        ref = weakref.ref(edge_index, lambda _r, key=key: _seen.pop(key, None))
    except TypeError:  # tensors that cannot be weakly referenced are not kept
        return adj
    _seen[key] = (ref, edge_index._version, adj)
    return adj


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: int) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, (size, size), check_invariants=False)


class _SpMM(torch.autograd.Function):
    """``out = A(values) @ x`` for a fixed block structure; gradients for ``values`` and ``x``."""

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, blocks: Blocks) -> Tensor:
        ctx.blocks = blocks
        ctx.save_for_backward(values, x)
        return torch.sparse.mm(_csr(blocks.crow, blocks.col, values, blocks.size), x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        values, x = ctx.saved_tensors
        b: Blocks = ctx.blocks
        grad_values = grad_x = None
        grad_out = grad_out.contiguous()
        if ctx.needs_input_grad[0]:
            pattern = _csr(b.crow, b.col, torch.zeros_like(values), b.size)
            grad_values = torch.sparse.sampled_addmm(pattern, grad_out, x.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            a_t = _csr(b.t_crow, b.t_col, values[b.t_order], b.size)
            grad_x = torch.sparse.mm(a_t, grad_out)
        return grad_values, grad_x, None


def spmm(coef: Tensor, x: Tensor, adj: Adjacency) -> Tensor:
    """Multi-head weighted sum over in-edges: ``out[v, h] = sum_{e: u -> v} coef[e, h] x[u, h]``.

    Args:
        coef: one coefficient per edge of ``adj`` (in its edge order) and head.
        x: node features, heads concatenated (head ``h`` is columns ``h*C:(h+1)*C``).
        adj: the graph.

    Shapes:
        coef: [E, H] (or [E] for one head), x: [N, H * C] -> [N, H * C]
    """
    blocks = adj.blocks(1 if coef.dim() == 1 else coef.size(1))
    return spmm_blocks(coef.reshape(-1)[blocks.value_index], x, blocks)


def spmm_blocks(values: Tensor, x: Tensor, blocks: Blocks) -> Tensor:
    """:func:`spmm` with the coefficients already in ``blocks``' CSR order (what
    :func:`segment_softmax` returns), which saves the permutation.

    Shapes:
        values: [E * H], x: [N, H * C] -> [N, H * C]
    """
    n = x.size(0)
    if n == 0 or blocks.size % n or x.size(1) % (blocks.size // n):
        raise ValueError(f"x of shape {tuple(x.shape)} does not fit a graph of {blocks.size} "
                         "node-head rows")
    out = _SpMM.apply(values, x.contiguous().view(blocks.size, -1), blocks)
    return out.view(n, -1)


def segment_softmax(score: Tensor, blocks: Blocks) -> Tensor:
    """Softmax of ``score`` over each row of ``blocks`` (a node's in-edges, per head), as
    ``torch_geometric.utils.softmax`` computes it (max-shifted, ``1e-16`` added to the sum), with
    segment reductions over the sorted rows instead of scatters.

    Shapes:
        score: [E * H] in ``blocks``' order -> [E * H]
    """
    # The shift cancels out of the result, so it needs no gradient.
    top = torch.segment_reduce(score.detach(), "max", offsets=blocks.crow, axis=0, unsafe=True)
    ex = (score - top[blocks.row]).exp()
    total = torch.segment_reduce(ex, "sum", offsets=blocks.crow, axis=0, unsafe=True)
    return ex / (total[blocks.row] + 1e-16)
