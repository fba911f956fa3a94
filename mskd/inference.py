"""Layer-wise full-neighbourhood inference: exact eval-mode outputs of a GNN on a graph too large
for one forward pass.

A forward pass over the whole graph keeps every layer's activations, messages and attention
coefficients of all E edges alive at once. Layer-wise inference computes one layer for all nodes
before starting the next, and each layer in chunks of target nodes together with their complete
in-neighbourhood, so peak working memory is that of one chunk; what is kept between layers is the
[N, width] representation only. A chunk is sized by the rows it gathers (its targets plus their
in-edges), not by its targets alone: on a denser graph it holds fewer targets, so its memory does
not grow with the degree. A node whose in-edges alone exceed the budget is a chunk of its own.
Because every target sees all of its in-edges, the result equals ``model(x, edge_index)`` in eval
mode (up to floating-point summation order), unlike a neighbour-sampled forward pass.

GAT and GCN layers start with a per-node linear map. It is applied once to every node, and the
chunks gather its narrow output: gathering the layer's input instead would project each node once
per chunk that needs it (about 15 times per pass on Coauthor Physics) and copy its wide features
as often.

GCN's symmetric normalisation needs the degree of a chunk's *source* nodes in the full graph, which
a chunk's edges do not show: its edge weights are computed once on the full graph with PyG's
``gcn_norm`` and handed to the layer's own ``propagate``.
"""

from __future__ import annotations

from bisect import bisect_right

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .convs import HopLinear, conv_on_projected, linear_first


class _Chunks:
    """The in-edges of contiguous ranges of target nodes, relabelled to a local node set whose
    first entries are the targets themselves (so self loops and root weights line up)."""

    def __init__(self, edge_index: Tensor, num_nodes: int, weight: Tensor | None = None) -> None:
        dst = edge_index[1]
        order = torch.argsort(dst, stable=True)
        self.src = edge_index[0][order]
        self.weight = weight[order] if weight is not None else None
        counts = torch.bincount(dst, minlength=num_nodes)
        self.ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).tolist()
        self.dst = dst[order]
        self.num_nodes = num_nodes
        # Reused scratch for global -> local ids; entries touched by a chunk are reset after it.
        self.local = torch.full((num_nodes,), -1, dtype=torch.long, device=edge_index.device)

    def bounds(self, budget: int) -> list[tuple[int, int]]:
        """Contiguous target ranges, each gathering at most ``budget`` rows (or one target)."""
        out, start = [], 0
        while start < self.num_nodes:
            # Rows gathered by targets [0, i): each target itself plus one row per in-edge.
            stop = bisect_right(range(len(self.ptr)), start + self.ptr[start] + budget,
                                key=lambda i: i + self.ptr[i]) - 1
            stop = min(max(stop, start + 1), self.num_nodes)
            out.append((start, stop))
            start = stop
        return out

    def chunk(self, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """(nodes [n_local] with targets first, local edge index [2, e], edge weights [e])."""
        lo, hi = self.ptr[start], self.ptr[stop]
        src, dst = self.src[lo:hi], self.dst[lo:hi]
        targets = torch.arange(start, stop, device=src.device)
        self.local[targets] = torch.arange(stop - start, device=src.device)
        extra = torch.unique(src[self.local[src] < 0])
        self.local[extra] = torch.arange(stop - start, stop - start + extra.numel(),
                                         device=src.device)
        nodes = torch.cat([targets, extra])
        edge_index = torch.stack([self.local[src], self.local[dst]])
        self.local[nodes] = -1
        w = self.weight[lo:hi] if self.weight is not None else None
        return nodes, edge_index, w


def _conv_chunked(conv: torch.nn.Module, x: Tensor, chunks: _Chunks,
                  bounds: list[tuple[int, int]], edge_index: Tensor) -> Tensor:
    """One message-passing layer for every node, one chunk of targets ``bounds[k]`` at a time."""
    lin = linear_first(conv)
    h = lin(x) if lin is not None else x
    if isinstance(conv, HopLinear):
        # K hops need K-hop neighbourhoods, which one-hop chunks do not hold; the layer's sparse
        # products over the whole graph keep only [N, width] tensors, the memory kept between
        # layers anyway.
        return conv.forward_projected(h, edge_index)
    outs = []
    for start, stop in bounds:
        nodes, ei, w = chunks.chunk(start, stop)
        h_local = h[nodes]
        if isinstance(conv, GCNConv):
            out = conv.propagate(ei, x=h_local, edge_weight=w)
            if conv.bias is not None:
                out = out + conv.bias
        elif lin is not None:
            out = conv_on_projected(conv, lin, h_local, ei)
        else:
            out = conv(h_local, ei)
        outs.append(out[: stop - start])
    return torch.cat(outs)


@torch.no_grad()
def layerwise(model, x: Tensor, edge_index: Tensor, chunk_size: int = 4096,
              keep_hidden: bool = True) -> tuple[Tensor, list[Tensor]]:
    """Eval-mode ``(logits, hidden)`` of a :class:`mskd.models.GNN`, one layer at a time.

    Args:
        model: the GNN (switched to eval mode for the call, then restored).
        x, edge_index: the whole graph.
        chunk_size: rows one chunk gathers, its target nodes plus their in-edges; bounds the
            working memory of one layer independently of the graph's size and degrees.
        keep_hidden: return every hidden layer (else ``hidden`` is empty and each layer's input
            is freed once the next is computed).

    Shapes:
        x: [N, F], edge_index: [2, E] -> logits [N, C], hidden: L tensors [N, width]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = x.shape[0]
    was = model.training
    model.eval()
    if model.cfg.arch == "gcn":
        ei, w = gcn_norm(edge_index, None, n, add_self_loops=True, dtype=x.dtype)
        chunks = _Chunks(ei, n, w)
    else:
        chunks = _Chunks(edge_index, n)
    bounds = chunks.bounds(chunk_size)  # the same for every layer
    hidden: list[Tensor] = []
    h = x
    for conv, res in zip(model.convs, model.res):
        z = _conv_chunked(conv, h, chunks, bounds, edge_index)
        if res is not None:
            z = z + res(h)
        if keep_hidden:
            hidden.append(z)
        h = model.act(z)
    z = _conv_chunked(model.out_conv, h, chunks, bounds, edge_index)
    if model.out_res is not None:
        z = z + model.out_res(h)
    logits = z.view(n, model.out_heads, model.out_channels).mean(dim=1)
    model.train(was)
    return logits, hidden
