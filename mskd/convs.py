"""GAT, GCN and GraphSAGE layers whose aggregation is a sparse-dense product (:mod:`mskd.sparse`),
the MLP student's graph-free layer, and its optional first layer over propagated hops.

Each is a subclass of the PyG layer it replaces and computes exactly its math, so parameter
names, shapes and initialisation are PyG's own and every checkpoint loads into either
implementation. What changes is how in-edges are summed: PyG gathers an [E, heads, channels]
message tensor and keeps it for the backward pass; these layers keep only per-edge scalars
([E, heads] attention coefficients for GAT) and the [N, heads * channels] node projection.

Only the forms mskd builds are covered: GAT with concatenated heads and self loops, no edge
features and no built-in residual; GCN with self loops, no edge weights; SAGE with mean
aggregation, root weight, no normalisation or projection. Graphs are square (one node set):
full graphs, batches of graphs, sampled subgraphs and layer-wise chunks all are.

Each fused layer also has a static-shape form (:func:`make_static`) for ONNX export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import add_self_loops, remove_self_loops

from .sparse import Adjacency, adjacency, segment_softmax, spmm_blocks

CONVS = ("fused", "pyg")


def _gat_graph(edge_index: Tensor, n: int) -> Adjacency:
    # GATConv's own normalisation and edge order: every self loop removed, one per node appended.
    ei, _ = remove_self_loops(edge_index)
    ei, _ = add_self_loops(ei, num_nodes=n)
    return Adjacency(ei[0], ei[1], n)


def _gcn_graph(edge_index: Tensor, n: int) -> Adjacency:
    # GCNConv's: missing self loops added, symmetric normalisation over in-degrees.
    ei, w = gcn_norm(edge_index, None, n, improved=False, add_self_loops=True)
    return Adjacency(ei[0], ei[1], n, w)


def _sage_graph(edge_index: Tensor, n: int) -> Adjacency:
    src, dst = edge_index
    deg = torch.bincount(dst, minlength=n).clamp_(min=1).to(torch.get_default_dtype())
    return Adjacency(src, dst, n, deg.reciprocal()[dst])


def _static_graph(edge_index: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(src, dst, keep)`` of the graph with one self loop appended per node, where ``keep`` is
    False on the self loops it already had: GAT's and GCN's self-loop normalisation without a
    boolean selection, whose output size depends on the data (torch.export and ONNX need shapes
    that follow from the input sizes alone)."""
    loops = torch.arange(n, device=edge_index.device)
    src = torch.cat([edge_index[0], loops])
    dst = torch.cat([edge_index[1], loops])
    keep = torch.cat([edge_index[0] != edge_index[1],
                      torch.ones(n, dtype=torch.bool, device=edge_index.device)])
    return src, dst, keep


class _Static:
    """The static-shape form of a fused layer (``static = True``): plain gathers and scatters
    over per-edge tensors, no CSR tensors, no custom autograd function, no data-dependent shape.
    Slower and hungrier than the fused form; it exists so ``torch.onnx.export`` can capture every
    architecture (PyG's GATConv does not export with dynamic sizes). Same function, same
    parameters."""

    static: bool = False


class FusedGATConv(_Static, GATConv):
    """:class:`torch_geometric.nn.GATConv` (``concat=True``, ``add_self_loops=True``) with the
    aggregation as one block-sparse product; attention dropout draws the same random numbers in
    the same edge order as PyG, so seeded training matches it too.

    Shapes:
        x: [N, F], edge_index: [2, E] -> [N, heads * out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, heads=heads, concat=True, dropout=dropout,
                         add_self_loops=True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:  # type: ignore[override]
        return self.forward_projected(self.lin(x), edge_index)

    def forward_projected(self, h: Tensor, edge_index: Tensor) -> Tensor:
        """The layer given ``h = self.lin(x)`` (lets a caller compute the projection itself,
        e.g. from sparse input)."""
        if self.static:
            return self._static_projected(h, edge_index)
        n, heads = h.size(0), self.heads
        blocks = adjacency(edge_index, n, "gat", _gat_graph).blocks(heads)
        hv = h.view(n, heads, self.out_channels)
        # Flattened, entry v * heads + k is node v's term in head k: a block row or column.
        a_src = (hv * self.att_src).sum(dim=-1).view(-1)
        a_dst = (hv * self.att_dst).sum(dim=-1).view(-1)
        score = F.leaky_relu(a_src[blocks.col] + a_dst[blocks.row], self.negative_slope)
        alpha = segment_softmax(score, blocks)
        if self.training and self.dropout > 0:
            # PyG drops coefficients of an [E, heads] tensor in its edge order; drawing the mask
            # in that shape and order keeps a seeded run's random numbers, and so its result.
            e = blocks.value_index.numel() // heads
            keep = F.dropout(h.new_ones(e, heads), p=self.dropout, training=True)
            alpha = alpha * keep.view(-1)[blocks.value_index]
        out = spmm_blocks(alpha, h, blocks)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _static_projected(self, h: Tensor, edge_index: Tensor) -> Tensor:
        n, heads, c = h.size(0), self.heads, self.out_channels
        src, dst, keep = _static_graph(edge_index, n)
        hv = h.view(n, heads, c)
        a_src = (hv * self.att_src).sum(dim=-1)
        a_dst = (hv * self.att_dst).sum(dim=-1)
        score = F.leaky_relu(a_src[src] + a_dst[dst], self.negative_slope)
        score = score.masked_fill(~keep.unsqueeze(1), float("-inf"))
        idx = dst.unsqueeze(1).expand(-1, heads)
        top = torch.full((n, heads), float("-inf"), dtype=h.dtype, device=h.device)
        top = top.scatter_reduce(0, idx, score, reduce="amax", include_self=True)
        ex = (score - top[dst]).exp()
        total = torch.zeros(n, heads, dtype=h.dtype, device=h.device).scatter_add(0, idx, ex)
        alpha = ex / (total[dst] + 1e-16)
        msg = (alpha.unsqueeze(-1) * hv[src]).view(-1, heads * c)
        out = torch.zeros_like(h).index_add(0, dst, msg)
        if self.bias is not None:
            out = out + self.bias
        return out


def gcn_propagate(h: Tensor, edge_index: Tensor, static: bool = False) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2 h``: GCN's normalised sum over in-edges with self loops, no
    weights, no bias; ``static`` computes it in the static-shape form (:class:`_Static`).

    Shapes:
        h: [N, D], edge_index: [2, E] -> [N, D]
    """
    if static:
        n = h.size(0)
        src, dst, keep = _static_graph(edge_index, n)
        w = keep.to(h.dtype)
        deg = torch.zeros(n, dtype=h.dtype, device=h.device).index_add(0, dst, w)
        inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
        msg = (inv[src] * w * inv[dst]).unsqueeze(1) * h[src]
        return torch.zeros_like(h).index_add(0, dst, msg)
    adj = adjacency(edge_index, h.size(0), "gcn", _gcn_graph)
    return spmm_blocks(adj.block_weight().to(h.dtype), h, adj.blocks(1))


class FusedGCNConv(_Static, GCNConv):
    """:class:`torch_geometric.nn.GCNConv` (self loops, symmetric normalisation) as
    ``D^-1/2 (A + I) D^-1/2 (x W) + b`` with a sparse product.

    Shapes:
        x: [N, F], edge_index: [2, E] -> [N, out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, add_self_loops=True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:  # type: ignore[override]
        return self.forward_projected(self.lin(x), edge_index)

    def forward_projected(self, h: Tensor, edge_index: Tensor) -> Tensor:
        """The layer given ``h = self.lin(x)``."""
        out = gcn_propagate(h, edge_index, self.static)
        if self.bias is not None:
            out = out + self.bias
        return out


class FusedSAGEConv(_Static, SAGEConv):
    """:class:`torch_geometric.nn.SAGEConv` with mean aggregation:
    ``lin_l(mean_{u -> v} x_u) + lin_r(x_v)``, with the mean as a sparse product. The mean is
    taken after ``lin_l``'s weight where that is narrower than the input (the two orders are
    equal; a node without in-edges gets ``lin_l``'s bias either way).

    Shapes:
        x: [N, F], edge_index: [2, E] -> [N, out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, aggr="mean")

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:  # type: ignore[override]
        if self.static:
            src, dst = edge_index
            n = x.size(0)
            count = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(
                0, dst, torch.ones_like(dst, dtype=x.dtype))
            total = torch.zeros_like(x).index_add(0, dst, x[src])
            return self.lin_l(total / count.clamp(min=1).unsqueeze(1)) + self.lin_r(x)
        adj = adjacency(edge_index, x.size(0), "sage", _sage_graph)
        w, blocks = adj.block_weight().to(x.dtype), adj.blocks(1)
        if self.out_channels < x.size(1):
            out = spmm_blocks(w, F.linear(x, self.lin_l.weight), blocks)
            if self.lin_l.bias is not None:
                out = out + self.lin_l.bias
        else:
            out = self.lin_l(spmm_blocks(w, x, blocks))
        return out + self.lin_r(x)


class GraphFreeLayer(nn.Module):
    """A per-node linear layer with the message-passing layers' call signature: the MLP
    student's layer. It ignores ``edge_index`` (an MLP needs no neighbourhood at inference);
    the graph reaches an MLP student only through structure-preserving losses in training.

    Shapes:
        x: [N, F], edge_index: [2, E] (unused) -> [N, out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = nn.Linear(in_channels, out_channels)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.lin(x)

    def forward_projected(self, h: Tensor, edge_index: Tensor) -> Tensor:
        """The layer given ``h = self.lin(x)``: nothing is left to do."""
        return h


class HopLinear(_Static, nn.Module):
    """The first layer of an MLP student with ``hops`` K > 0: one linear map, then a learned
    per-channel mix of its propagations over 0 to K hops of GCN's normalised adjacency,
    ``sum_k gamma_k * A_hat^k (x W) + b``. Because the map is linear, this equals a linear layer
    on SGC-style propagated features ``[x, A_hat x, ..., A_hat^K x]`` whose K + 1 weight blocks
    share W up to the per-channel factors ``gamma_k``: the structure costs K sparse products of
    the layer's narrow output instead of K wide feature matrices, and only
    ``(K + 1) * out_channels`` parameters more than the graph-free layer. The rest of the student
    stays per node; only this layer needs the edges at inference.

    ``gamma`` starts at ``1 / (K + 1)``: the mean of the hops. The layer has no PyG twin; on
    the "pyg" implementation it runs in its static-shape form (plain gathers and scatters), which
    is what the exporters trace.

    Shapes:
        x: [N, F], edge_index: [2, E] -> [N, out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int, hops: int, impl: str = "fused") -> None:
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        self.in_channels, self.out_channels, self.hops = in_channels, out_channels, hops
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.gamma = nn.Parameter(torch.empty(hops + 1, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.static = impl == "pyg"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        nn.init.constant_(self.gamma, 1.0 / (self.hops + 1))
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.forward_projected(self.lin(x), edge_index)

    def forward_projected(self, h: Tensor, edge_index: Tensor) -> Tensor:
        """The layer given ``h = self.lin(x)``."""
        out = h * self.gamma[0]
        for k in range(1, self.hops + 1):
            h = gcn_propagate(h, edge_index, self.static)
            out = out + h * self.gamma[k]
        return out + self.bias


def linear_first(conv: nn.Module) -> nn.Module | None:
    """The per-node linear map ``conv`` applies to its input before message passing, if the rest
    of the layer can be run on that map's output (GCN; GAT without PyG's built-in residual; the
    graph-free layer)."""
    if isinstance(conv, (GCNConv, GraphFreeLayer, HopLinear)):
        return conv.lin
    if isinstance(conv, GATConv) and conv.lin is not None and conv.res is None:
        return conv.lin
    return None


def conv_on_projected(conv: nn.Module, lin: nn.Module, h: Tensor, edge_index: Tensor) -> Tensor:
    """``conv(x, edge_index)`` given ``h = lin(x)``, where ``lin = linear_first(conv)``."""
    if hasattr(conv, "forward_projected"):
        return conv.forward_projected(h, edge_index)
    conv.lin = nn.Identity()
    try:
        return conv(h, edge_index)
    finally:
        conv.lin = lin


def make_static(model: nn.Module) -> nn.Module:
    """Switch every fused layer of ``model`` to its static-shape form (:class:`_Static`), in
    place; returns ``model``."""
    for m in model.modules():
        if isinstance(m, _Static):
            m.static = True
    return model


def make_conv(arch: str, in_dim: int, out_per_head: int, heads: int, attn_dropout: float,
              impl: str = "fused", hops: int = 0) -> torch.nn.Module:
    """One layer of ``arch`` ("gat" | "gcn" | "sage" | "mlp") in implementation ``impl``
    ("fused" | "pyg"); GCN, SAGE and MLP have ``out_per_head * heads`` outputs. Both
    implementations have the same parameters (an MLP layer is the same in both). ``hops`` > 0
    makes an MLP layer a :class:`HopLinear`."""
    if impl not in CONVS:
        raise ValueError(f"unknown conv implementation {impl!r}; valid: {', '.join(CONVS)}")
    fused = impl == "fused"
    out_dim = out_per_head * heads
    if arch == "mlp":
        return HopLinear(in_dim, out_dim, hops, impl) if hops else GraphFreeLayer(in_dim, out_dim)
    if arch == "gat":
        if fused:
            return FusedGATConv(in_dim, out_per_head, heads=heads, dropout=attn_dropout)
        return GATConv(in_dim, out_per_head, heads=heads, concat=True, dropout=attn_dropout,
                       add_self_loops=True)
    if arch == "gcn":
        return FusedGCNConv(in_dim, out_dim) if fused else GCNConv(in_dim, out_dim,
                                                                   add_self_loops=True)
    return FusedSAGEConv(in_dim, out_dim) if fused else SAGEConv(in_dim, out_dim, aggr="mean")
