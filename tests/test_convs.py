"""The fused message-passing layers (``mskd.convs``, ``mskd.sparse``) against PyG's own layers:
outputs and every gradient, in eval mode and in train mode with seeded attention dropout."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from mskd.config import ModelConfig
from mskd.convs import FusedGATConv, FusedGCNConv, FusedSAGEConv, HopLinear, make_conv
from mskd.errors import ConfigError
from mskd.models import GNN
from mskd.sparse import Adjacency, adjacency, spmm

TOL = {"rtol": 1e-5, "atol": 1e-5}


def awkward_graph(n: int = 40, e: int = 200, seed: int = 0) -> torch.Tensor:
    """Random edges among the first n - 4 nodes (the last four are isolated), plus existing self
    loops (one of them twice) and duplicated edges."""
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 4, (2, e), generator=gen)
    loops = torch.tensor([[2, 2, 5], [2, 2, 5]])
    return torch.cat([ei, loops, ei[:, :15]], dim=1)


def _outputs_and_grads(conv: torch.nn.Module, x: torch.Tensor, ei: torch.Tensor, seed: int):
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)
    out = conv(x, ei)
    # A weighting that differs per entry, so every output position's gradient is checked.
    w = torch.linspace(-1, 1, out.numel()).view_as(out)
    names = [n for n, _ in conv.named_parameters()]
    grads = torch.autograd.grad((out * w).sum(), [x] + [p for _, p in conv.named_parameters()])
    return out, dict(zip(["x"] + names, grads))


LAYERS = {
    "gat": (lambda f, o: GATConv(f, o, heads=3, concat=True, dropout=0.5, add_self_loops=True),
            lambda f, o: FusedGATConv(f, o, heads=3, dropout=0.5)),
    "gcn": (lambda f, o: GCNConv(f, o, add_self_loops=True), lambda f, o: FusedGCNConv(f, o)),
    "sage": (lambda f, o: SAGEConv(f, o, aggr="mean"), lambda f, o: FusedSAGEConv(f, o)),
}


@pytest.mark.parametrize("arch", list(LAYERS))
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("out", [6, 24])  # SAGE aggregates after its weight when that is narrower
def test_fused_layer_equals_pyg(arch, train, out) -> None:
    make_pyg, make_fused = LAYERS[arch]
    torch.manual_seed(0)
    pyg = make_pyg(12, out)
    fused = make_fused(12, out)
    fused.load_state_dict(pyg.state_dict())
    assert fused.state_dict().keys() == pyg.state_dict().keys()
    pyg.train(train)
    fused.train(train)
    x, ei = torch.randn(40, 12), awkward_graph()
    out_p, g_p = _outputs_and_grads(pyg, x, ei, seed=3)
    out_f, g_f = _outputs_and_grads(fused, x, ei, seed=3)
    torch.testing.assert_close(out_f, out_p, **TOL)
    assert g_f.keys() == g_p.keys()
    if arch == "gat":
        assert {"x", "lin.weight", "att_src", "att_dst", "bias"} <= g_f.keys()
    for name in g_p:
        torch.testing.assert_close(g_f[name], g_p[name], **TOL, msg=name)
    if arch == "gat" and train:  # attention dropout was really drawn, and drawn alike
        assert not torch.allclose(out_f, fused.eval()(x, ei))


def test_gat_dropout_follows_the_seed() -> None:
    conv = FusedGATConv(8, 4, heads=2, dropout=0.5).train()
    x, ei = torch.randn(40, 8), awkward_graph()
    torch.manual_seed(1)
    a = conv(x, ei)
    torch.manual_seed(1)
    b = conv(x, ei)
    torch.manual_seed(2)
    c = conv(x, ei)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_spmm_gradients_match_finite_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    ei = awkward_graph(12, 40)
    adj = Adjacency(ei[0], ei[1], 12)
    coef = torch.rand(ei.size(1), 2, dtype=torch.float64, generator=gen, requires_grad=True)
    x = torch.randn(12, 2 * 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, v: spmm(c, v, adj), (coef, x))
    # The same sum written out edge by edge.
    want = torch.zeros(12, 2, 3, dtype=torch.float64)
    want.index_add_(0, ei[1], coef.unsqueeze(-1) * x.view(12, 2, 3)[ei[0]])
    torch.testing.assert_close(spmm(coef, x, adj), want.view(12, 6))


def test_spmm_rejects_features_that_do_not_fit() -> None:
    ei = awkward_graph(12, 40)
    adj = Adjacency(ei[0], ei[1], 12)
    with pytest.raises(ValueError, match="does not fit"):
        spmm(torch.ones(ei.size(1), 2), torch.ones(12, 5), adj)


def test_adjacency_is_built_once_per_edge_index_and_rebuilt_after_a_change() -> None:
    ei = awkward_graph()
    calls = []

    def build(edge_index, n):
        calls.append(1)
        return Adjacency(edge_index[0], edge_index[1], n)

    a = adjacency(ei, 40, "test", build)
    assert adjacency(ei, 40, "test", build) is a and len(calls) == 1
    ei[0, 0] = 1  # in place: the cached structure no longer describes it
    assert adjacency(ei, 40, "test", build) is not a and len(calls) == 2
    assert adjacency(ei.clone(), 40, "test", build) is not None and len(calls) == 3


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage"])
def test_gnn_on_fused_layers_equals_pyg_twin(arch) -> None:
    cfg = ModelConfig(arch=arch, hidden_layers=3, hidden=4, heads=2, out_heads=2, residual=True,
                      dropout=0.3, attn_dropout=0.4)
    torch.manual_seed(0)
    # float64: three layers of float32 sums in another order differ by more than the tolerance.
    fused = GNN(12, 5, cfg, conv="fused").double()
    pyg = fused.with_conv("pyg")
    assert pyg.conv_impl == "pyg" and fused.conv_impl == "fused"
    x, ei = torch.randn(40, 12, dtype=torch.float64), awkward_graph()
    for train in (False, True):
        fused.train(train)
        pyg.train(train)
        torch.manual_seed(7)
        z_f, h_f = fused(x, ei)
        torch.manual_seed(7)
        z_p, h_p = pyg(x, ei)
        torch.testing.assert_close(z_f, z_p, **TOL)
        for a, b in zip(h_f, h_p):
            torch.testing.assert_close(a, b, **TOL)
        g_f = torch.autograd.grad(z_f.square().sum(), list(fused.parameters()))
        g_p = torch.autograd.grad(z_p.square().sum(), list(pyg.parameters()))
        for a, b in zip(g_f, g_p):
            torch.testing.assert_close(a, b, **TOL)


def test_fused_gnn_layerwise_and_batched_graphs_equal_its_forward() -> None:
    cfg = ModelConfig(arch="gat", hidden_layers=2, hidden=4, heads=2, out_heads=3, residual=True)
    model = GNN(12, 5, cfg, conv="fused").eval()
    x, ei = torch.randn(40, 12), awkward_graph()
    z, _ = model(x, ei)
    z_lw, _ = model.layerwise(x, ei, chunk_size=30)
    torch.testing.assert_close(z_lw, z, **TOL)
    # Two graphs in one batch (as PPI trains): each keeps its own output.
    x2, ei2 = torch.randn(25, 12), awkward_graph(25, 90, seed=1)
    zb, _ = model(torch.cat([x, x2]), torch.cat([ei, ei2 + 40], dim=1))
    torch.testing.assert_close(zb[:40], z, **TOL)
    torch.testing.assert_close(zb[40:], model(x2, ei2)[0], **TOL)


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage"])
def test_fused_sparse_input_equals_dense(arch) -> None:
    cfg = ModelConfig(arch=arch, hidden_layers=2, hidden=4, heads=2, dropout=0.0,
                      attn_dropout=0.0)
    model = GNN(12, 5, cfg, conv="fused").eval()
    x = torch.randn(40, 12) * (torch.rand(40, 12) < 0.2)
    ei = awkward_graph()
    torch.testing.assert_close(model(x.to_sparse(), ei)[0], model(x, ei)[0], **TOL)
    sparse = GNN(12, 5, dataclasses.replace(cfg, input_dropout="sparse"), conv="fused")
    sparse.load_state_dict(model.state_dict())
    torch.testing.assert_close(sparse.train()(x, ei)[0], model.train()(x, ei)[0], **TOL)


def test_make_conv_refuses_an_unknown_implementation() -> None:
    with pytest.raises(ValueError, match="unknown conv implementation 'dgl'"):
        make_conv("gat", 4, 4, 1, 0.0, "dgl")
    with pytest.raises(ValueError, match="unknown conv implementation"):
        GNN(4, 2, ModelConfig(), conv="dgl")


def _normalised_adjacency(ei: torch.Tensor, n: int) -> torch.Tensor:
    """GCN's ``D^-1/2 (A + I) D^-1/2`` as a dense matrix, from PyG's own normalisation."""
    ei2, w = gcn_norm(ei, None, n, add_self_loops=True)
    return torch.zeros(n, n).index_put_((ei2[1], ei2[0]), w, accumulate=True)


@pytest.mark.parametrize("hops", [1, 3])
def test_hop_linear_is_a_linear_layer_on_propagated_features(hops) -> None:
    # sum_k gamma_k * A^k (x W) + b equals [x, A x, ..., A^K x] times the stacked blocks
    # W diag(gamma_k): the SGC-style features, never formed.
    torch.manual_seed(0)
    conv = HopLinear(12, 5, hops)
    with torch.no_grad():
        conv.gamma.copy_(torch.randn_like(conv.gamma))
        conv.bias.copy_(torch.randn_like(conv.bias))
    x, ei = torch.randn(40, 12), awkward_graph()
    a = _normalised_adjacency(ei, 40)
    feats = [x]
    for _ in range(hops):
        feats.append(a @ feats[-1])
    w = conv.lin.weight.t()
    blocks = torch.cat([w * conv.gamma[k] for k in range(hops + 1)])
    want = torch.cat(feats, dim=1) @ blocks + conv.bias
    torch.testing.assert_close(conv(x, ei), want, **TOL)


def test_hop_linear_static_form_equals_the_fused_one_with_gradients() -> None:
    torch.manual_seed(0)
    fused = HopLinear(12, 6, 2)
    static = HopLinear(12, 6, 2, impl="pyg")
    static.load_state_dict(fused.state_dict())
    assert not fused.static and static.static
    x, ei = torch.randn(40, 12), awkward_graph()
    a, ga = _outputs_and_grads(fused, x, ei, 0)
    b, gb = _outputs_and_grads(static, x, ei, 0)
    torch.testing.assert_close(a, b, **TOL)
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], **TOL)


def test_mlp_with_hops_uses_the_edges_and_layerwise_equals_forward() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mlp", hidden_layers=2, hidden=4, heads=2, hops=2, residual=True)
    model = GNN(12, 3, cfg).eval()
    assert isinstance(model.convs[0], HopLinear) and not isinstance(model.convs[1], HopLinear)
    x, ei = torch.randn(40, 12), awkward_graph()
    z, hidden = model(x, ei)
    assert not torch.allclose(z, model(x, ei[:, :0])[0])
    lw, lw_hidden = model.layerwise(x, ei, chunk_size=9)
    torch.testing.assert_close(lw, z, **TOL)
    for u, v in zip(lw_hidden, hidden):
        torch.testing.assert_close(u, v, **TOL)
    torch.testing.assert_close(model.with_conv("pyg")(x, ei)[0], z, **TOL)


def test_hops_belong_to_the_mlp_student_only() -> None:
    with pytest.raises(ConfigError, match="option of the MLP student"):
        GNN(12, 3, ModelConfig(arch="gat", hops=2))
    with pytest.raises(ConfigError, match="hops must be in"):
        GNN(12, 3, ModelConfig(arch="mlp", hops=-1))
    # A config without the field (every checkpoint written before it) is the graph-free MLP.
    assert "hops" not in ModelConfig(arch="mlp").to_dict()
    assert ModelConfig(arch="mlp", hops=2).to_dict()["hops"] == 2
