"""Neighbour-sampled mini-batches: PyG's ``NeighborLoader``, one epoch at a time.

Each batch is PyG's: the subgraph of the seed nodes' sampled ``fanout``-hop in-neighbourhoods,
with ``batch.n_id`` (global id of every node, seeds first) and ``batch.batch_size`` (number of
seeds). An epoch's seed order comes from a generator seeded per run, so every rank of a
distributed run draws the same permutation and takes its own interleaved share of it.

PyG samples with ``pyg-lib`` or ``torch-sparse``. Neither has a wheel for every torch build (none
for this project's CPU torch on PyPI), so when neither is installed the sampling kernel alone is
replaced by :class:`TorchNeighborSampler`: the same sampling (uniform, without replacement, per
hop, directional subgraph) in plain torch operations, behind PyG's own loader and data filtering.
With either library installed, PyG's sampler is used unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch_geometric.typing as pyg_typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import NeighborSampler, SamplerOutput


def native_sampling() -> bool:
    """Whether PyG's compiled neighbour sampling (pyg-lib or torch-sparse) is installed."""
    return bool(pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE)


def sample_hops(colptr: Tensor, row: Tensor, seed: Tensor, fanouts: Sequence[int],
                local: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Uniform neighbour sampling without replacement on a CSC graph.

    Hop by hop, every frontier node keeps ``min(fanout, in-degree)`` of its in-edges (all of them
    for fanout -1); sources not seen before form the next frontier. ``local`` is a scratch
    vector of -1s of length N, returned to all -1s.

    Shapes:
        colptr: [N + 1], row: [E], seed: [S] unique ids ->
        (node [S + M] global ids with seeds first, row [e] and col [e] local source/target
        indices of the sampled edges, edge [e] positions in the CSC order)
    """
    device = seed.device
    node = seed
    local[seed] = torch.arange(seed.numel(), device=device)
    frontier = seed
    rows, cols, edges = [], [], []
    for k in fanouts:
        if frontier.numel() == 0:
            break
        start = colptr[frontier]
        deg = colptr[frontier + 1] - start
        seg = torch.repeat_interleave(torch.arange(frontier.numel(), device=device), deg)
        first = torch.repeat_interleave(deg.cumsum(0) - deg, deg)
        offset = torch.arange(seg.numel(), device=device) - first
        pos = start[seg] + offset
        if k >= 0 and bool((deg > k).any()):
            # A random order within each frontier node's in-edges; keep its first k.
            order = torch.rand(pos.numel(), generator=generator, device=device).argsort()
            order = order[seg[order].argsort(stable=True)]
            order = order[offset < k]  # offset is the rank within the segment after sorting
            pos, seg = pos[order], seg[order]
        src = row[pos]
        new = torch.unique(src[local[src] < 0])
        local[new] = torch.arange(node.numel(), node.numel() + new.numel(), device=device)
        rows.append(local[src])
        cols.append(local[frontier][seg])
        edges.append(pos)
        node = torch.cat([node, new])
        frontier = new
    local[node] = -1
    empty = seed.new_zeros(0)
    cat = (lambda ts: torch.cat(ts) if ts else empty)
    return node, cat(rows), cat(cols), cat(edges)


class TorchNeighborSampler(NeighborSampler):
    """PyG's ``NeighborSampler`` whose homogeneous sampling falls back to :func:`sample_hops`
    when neither pyg-lib nor torch-sparse is installed."""

    def __init__(self, data: Data, num_neighbors: Sequence[int], seed: int = 0) -> None:
        with warnings.catch_warnings():
            # PyG warns that sampling without pyg-lib is deprecated: that is what this replaces.
            warnings.simplefilter("ignore")
            super().__init__(data, list(num_neighbors))
        self.fanouts = list(num_neighbors)
        self.generator = torch.Generator().manual_seed(seed)
        self._local = torch.full((int(data.num_nodes),), -1, dtype=torch.long)

    def _sample(self, seed, seed_time=None, **kwargs):
        if native_sampling() or isinstance(seed, dict):
            return super()._sample(seed, seed_time, **kwargs)
        node, row, col, edge = sample_hops(self.colptr, self.row, seed, self.fanouts,
                                           self._local, self.generator)
        return SamplerOutput(node=node, row=row, col=col, edge=edge, batch=None)


class SparseRows:
    """Rows of a mostly-zero feature matrix, kept in CSR form: a sampled batch gathers only its
    rows' non-zeros, where gathering dense rows copies F floats per node (8,415 on Coauthor
    Physics, most of a sampled step's time and memory there).

    Shapes:
        x: [N, F] dense -> ``rows(n_id)``: sparse COO [len(n_id), F], coalesced
    """

    def __init__(self, x: Tensor) -> None:
        idx = x.nonzero().t()
        self.shape = x.shape
        self.col = idx[1]
        self.values = x[idx[0], idx[1]]
        counts = torch.bincount(idx[0], minlength=x.shape[0])
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def rows(self, n_id: Tensor) -> Tensor:
        start = self.crow[n_id]
        counts = self.crow[n_id + 1] - start
        row = torch.repeat_interleave(torch.arange(n_id.numel()), counts)
        # Position of each kept entry in the CSR arrays: its row's start plus its rank in the row.
        offsets = torch.cumsum(counts, 0) - counts
        pos = start[row] + torch.arange(row.numel()) - offsets[row]
        return torch.sparse_coo_tensor(torch.stack([row, self.col[pos]]), self.values[pos],
                                       (n_id.numel(), self.shape[1]), is_coalesced=True,
                                       check_invariants=False)


class SeedBatches:
    """Per epoch, neighbour-sampled batches of ``batch_size`` seeds for this rank.

    Every rank draws the same seeded permutation of ``seeds`` per epoch, cuts it to a multiple of
    ``world`` (so every rank runs the same number of steps, which DDP requires) and takes every
    ``world``-th entry from ``rank`` on.
    """

    def __init__(self, graph: Data, seeds: Tensor, fanouts: Sequence[int], batch_size: int,
                 seed: int = 0, rank: int = 0, world: int = 1,
                 sparse_features: bool = False) -> None:
        # Sampling runs on the CPU; a step moves its batch to the model's device. With
        # ``sparse_features`` a batch's ``x`` is a sparse COO tensor of its rows (SparseRows).
        self.features = SparseRows(graph.x.cpu()) if sparse_features else None
        x = None if sparse_features else graph.x.cpu()
        self.graph = Data(x=x, edge_index=graph.edge_index.cpu(), y=graph.y.cpu(),
                          mask=graph.mask.cpu(), num_nodes=graph.num_nodes)
        self.seeds = seeds.cpu()
        self.batch_size = batch_size
        self.rank, self.world = rank, world
        self.fanouts = list(fanouts)
        # Different ranks sample different neighbourhoods; the epoch permutation is shared.
        self.sampler = TorchNeighborSampler(self.graph, self.fanouts, seed=seed * 1009 + rank)
        self.order = torch.Generator().manual_seed(seed)

    def steps_per_epoch(self) -> int:
        per_rank = self.seeds.numel() // self.world
        return -(-per_rank // self.batch_size)

    def __call__(self, epoch: int = 0) -> Iterator[Data]:
        perm = self.seeds[torch.randperm(self.seeds.numel(), generator=self.order)]
        perm = perm[: perm.numel() // self.world * self.world][self.rank :: self.world]
        loader = NeighborLoader(self.graph, self.fanouts, input_nodes=perm,
                                batch_size=self.batch_size, shuffle=False,
                                neighbor_sampler=self.sampler)
        for batch in loader:
            if self.features is not None:
                batch.x = self.features.rows(batch.n_id)
            yield batch

    def state(self) -> dict:
        """The generators behind the epoch order and the sampled neighbourhoods: saved with a
        training state so a resumed run draws the batches an uninterrupted one would."""
        return {"order": self.order.get_state(), "sampler": self.sampler.generator.get_state()}

    def load_state(self, state: dict) -> None:
        self.order.set_state(state["order"])
        self.sampler.generator.set_state(state["sampler"])
