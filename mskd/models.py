"""GNN stacks (GAT, GCN, GraphSAGE, and the graph-free MLP) that return ``(logits, hidden)``.

``hidden`` is the list of per-layer hidden node representations, taken after the residual and
before the activation (heads concatenated): what the structure-preserving losses compare.

The residual layout follows the MSKD authors' DGL GAT: no residual on the first layer, an identity
shortcut where the width does not change, a bias-free linear projection where it does, and on the
output layer a projection per output head added before the heads are averaged. That layout is what
makes the paper's parameter counts (about 1.54M / 2.59M / 3.65M teachers, 0.13M student on PPI)
come out, so ``count_parameters`` is comparable with the paper.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .convs import CONVS, conv_on_projected, linear_first, make_conv
from .evaluate import model_logits

# The message-passing implementation new models get (``mskd.convs``): "fused" (sparse-dense
# products, the default) or "pyg" (PyG's own layers). Not part of ModelConfig: the two compute
# the same function with the same parameters, so checkpoints, teacher caches and configs do not
# depend on it, as they do not depend on the device.
_default_conv = "fused"


def set_default_conv(impl: str) -> None:
    """Make ``impl`` ("fused" | "pyg") the implementation of models built from now on."""
    global _default_conv
    if impl not in CONVS:
        raise ValueError(f"unknown conv implementation {impl!r}; valid: {', '.join(CONVS)}")
    _default_conv = impl


def default_conv() -> str:
    """The implementation models get when none is named ("fused" unless set otherwise)."""
    return _default_conv

_ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


class GNN(nn.Module):
    """A stack of ``cfg.hidden_layers`` hidden GNN layers and one output layer.

    Args:
        in_channels: input feature width F.
        out_channels: number of classes (or labels) C.
        cfg: architecture, widths, heads, residual, dropout and activation.
        conv: message-passing implementation, "fused" or "pyg" (default: :func:`default_conv`);
            the parameters, and so the state dict, are the same for both.

    Shapes:
        x: [N, F], edge_index: [2, E] -> logits: [N, C],
        hidden: ``cfg.hidden_layers`` tensors of shape [N, cfg.width].
        ``x`` may also be a sparse COO tensor: the first layer then works on its non-zeros only.
    """

    def __init__(self, in_channels: int, out_channels: int, cfg: ModelConfig,
                 conv: str | None = None) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.conv_impl = conv or _default_conv
        if self.conv_impl not in CONVS:
            raise ValueError(f"unknown conv implementation {self.conv_impl!r}; "
                             f"valid: {', '.join(CONVS)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.convs = nn.ModuleList()
        self.res = nn.ModuleList()
        width = cfg.width
        dims = [in_channels] + [width] * cfg.hidden_layers
        for i in range(cfg.hidden_layers):
            self.convs.append(self._conv(dims[i], cfg.hidden, cfg.heads,
                                         cfg.hops if i == 0 else 0))
            self.res.append(self._shortcut(dims[i], width, enabled=cfg.residual and i > 0))
        self.out_heads = cfg.out_heads if cfg.arch == "gat" else 1
        self.out_conv = self._conv(width, out_channels, self.out_heads)
        self.out_res = self._shortcut(width, out_channels * self.out_heads, enabled=cfg.residual)
        self.act = _ACTIVATIONS[cfg.activation]

    def _conv(self, in_dim: int, out_per_head: int, heads: int, hops: int = 0) -> nn.Module:
        # GAT heads stay concatenated here; the output layer averages them after the residual.
        return make_conv(self.cfg.arch, in_dim, out_per_head, heads, self.cfg.attn_dropout,
                         self.conv_impl, hops)

    def with_conv(self, conv: str) -> GNN:
        """A copy of this model (same weights, same train/eval mode) on implementation ``conv``."""
        like = next(self.parameters())
        twin = GNN(self.in_channels, self.out_channels, self.cfg, conv)
        twin.to(device=like.device, dtype=like.dtype).load_state_dict(self.state_dict())
        for mine, theirs in zip(self.parameters(), twin.parameters()):
            theirs.requires_grad_(mine.requires_grad)
        return twin.train(self.training)

    @staticmethod
    def _shortcut(in_dim: int, out_dim: int, enabled: bool) -> nn.Module | None:
        if not enabled:
            return None
        if in_dim == out_dim:
            return nn.Identity()
        return nn.Linear(in_dim, out_dim, bias=False)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, list[Tensor]]:
        p = self.cfg.dropout
        hidden: list[Tensor] = []
        h = x
        for i, (conv, res) in enumerate(zip(self.convs, self.res)):
            if i == 0 and (x.is_sparse or (self.training and self.cfg.input_dropout == "sparse")):
                # The first layer never has a residual (see __init__).
                z = sparse_dropout_conv(conv, h, edge_index, p, self.training)
            else:
                h_in = F.dropout(h, p=p, training=self.training)
                z = conv(h_in, edge_index)
                if res is not None:
                    z = z + res(h_in)
            hidden.append(z)
            h = self.act(z)
        h_in = F.dropout(h, p=p, training=self.training)
        z = self.out_conv(h_in, edge_index)
        if self.out_res is not None:
            z = z + self.out_res(h_in)
        logits = z.view(z.shape[0], self.out_heads, self.out_channels).mean(dim=1)
        return logits, hidden

    def predict(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Logits in eval mode without autograd (dropout off):
        :func:`mskd.evaluate.model_logits`."""
        return model_logits(self, x, edge_index)

    def layerwise(self, x: Tensor, edge_index: Tensor, chunk_size: int = 4096,
                  keep_hidden: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Eval-mode ``(logits, hidden)`` computed one layer at a time over chunks of nodes with
        their full in-neighbourhood: equal to ``forward`` in eval mode, with the memory of one
        chunk (see :mod:`mskd.inference`)."""
        from .inference import layerwise

        return layerwise(self, x, edge_index, chunk_size, keep_hidden)


# Non-zero positions of the last input seen by sparse_dropout_conv: full-batch training hands the
# same feature matrix to every epoch, and finding them is a pass over all N x F entries.
_nonzero_seen: tuple[weakref.ref, int, Tensor] | None = None


def _nonzero(x: Tensor) -> Tensor:
    global _nonzero_seen
    seen = _nonzero_seen
    if seen is not None and seen[0]() is x and seen[1] == x._version:
        return seen[2]
    idx = x.nonzero().t()
    _nonzero_seen = (weakref.ref(x), x._version, idx)
    return idx


def _row_pointers(rows: Tensor, n: int) -> Tensor:
    """CSR row pointers [n + 1] of sorted row ids."""
    crow = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return crow


def sparse_dropout(x: Tensor, p: float, training: bool = True) -> tuple[Tensor, Tensor]:
    """Dropout of the non-zero entries of ``x``: in training each is zeroed with probability
    ``p`` and the others scaled by ``1 / (1 - p)``, which is dense dropout's distribution since a
    zero entry stays zero either way.

    Shapes:
        x: [N, F], dense or sparse COO (coalesced) -> (indices [2, nnz] of x's non-zeros in
        row-major order, values [nnz])
    """
    if x.is_sparse:
        idx, values = x.indices(), x.values()
    else:
        idx = _nonzero(x)
        values = x[idx[0], idx[1]]
    return idx, F.dropout(values, p=p, training=training)


def sparse_dropout_conv(conv: nn.Module, x: Tensor, edge_index: Tensor, p: float,
                        training: bool = True) -> Tensor:
    """``conv(dropout(x, p), edge_index)`` with :func:`sparse_dropout`.

    For GAT and GCN the dropped-out input stays sparse and is multiplied with the layer's linear
    map directly, so neither N x F random numbers nor the dense product are computed; GraphSAGE,
    which aggregates its raw input, gets it back as a dense matrix. ``x`` may be a sparse COO
    tensor (the rows of a sampled batch, see :class:`mskd.sampling.SparseRows`).

    Shapes:
        x: [N, F] (dense or sparse COO), edge_index: [2, E] -> the layer's output [N, D]
    """
    idx, values = sparse_dropout(x, p, training)
    lin = linear_first(conv)
    if lin is None:
        dense = torch.zeros(x.shape, dtype=values.dtype, device=values.device)
        dense[idx[0], idx[1]] = values
        return conv(dense, edge_index)
    # The indices come from nonzero() or a coalesced tensor: valid, unique and sorted row-major,
    # so they are a CSR layout as they are. CSR times dense is much faster than COO on CPU (on
    # Coauthor Physics' features: about 40x in inference, 2x forward + backward in training) with
    # bitwise the same results.
    crow = _row_pointers(idx[0], x.shape[0])
    xs = torch.sparse_csr_tensor(crow, idx[1], values, x.shape, check_invariants=False)
    h = xs @ lin.weight.t()
    if getattr(lin, "bias", None) is not None:
        h = h + lin.bias
    return conv_on_projected(conv, lin, h, edge_index)


def build_model(in_channels: int, out_channels: int, cfg: ModelConfig,
                conv: str | None = None) -> GNN:
    return GNN(in_channels, out_channels, cfg, conv)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (frozen ones included: a frozen teacher still costs its size)."""
    return sum(p.numel() for p in model.parameters())
