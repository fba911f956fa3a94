"""Tests for mskd.models: output shapes, hidden lists, paper parameter counts, dropout modes and
the residual layout."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mskd.config import ModelConfig, preset
from mskd.models import GNN, build_model, count_parameters


@pytest.fixture
def graph(tiny_graph):
    return torch.from_numpy(tiny_graph["x"]), torch.from_numpy(tiny_graph["edge_index"])


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage"])
@pytest.mark.parametrize("layers", [1, 3])
def test_shapes_and_hidden_list(graph, arch, layers) -> None:
    x, ei = graph
    cfg = ModelConfig(arch=arch, hidden_layers=layers, hidden=5, heads=3, out_heads=2,
                      residual=True, dropout=0.5, attn_dropout=0.5)
    torch.manual_seed(0)
    model = build_model(16, 4, cfg)
    logits, hidden = model(x, ei)
    assert logits.shape == (180, 4)
    assert len(hidden) == layers
    for h in hidden:
        assert h.shape == (180, 15)  # hidden * heads, also for GCN/SAGE
    assert torch.isfinite(logits).all()
    # Only GAT has output heads.
    assert model.out_heads == (2 if arch == "gat" else 1)


def test_hidden_is_pre_activation(graph) -> None:
    # relu after each hidden layer: the hidden list must still show negative values.
    x, ei = graph
    cfg = ModelConfig(arch="gcn", hidden_layers=2, hidden=8, heads=1, dropout=0.0,
                      activation="relu")
    torch.manual_seed(0)
    _, hidden = GNN(16, 3, cfg).eval()(x, ei)
    assert all((h < 0).any() for h in hidden)


@pytest.mark.parametrize(
    ("layers", "expected"), [(1, 1_543_298), (2, 2_594_946), (3, 3_646_594)]
)
def test_ppi_teacher_parameter_counts_match_paper(layers, expected) -> None:
    # Paper: 1.54M / 2.59M / 3.65M; exact values from the authors' DGL layout.
    cfg = preset("ppi").teacher(layers)
    assert count_parameters(GNN(50, 121, cfg)) == expected


def test_ppi_student_parameter_count_matches_paper() -> None:
    assert count_parameters(GNN(50, 121, preset("ppi").student)) == 130_470


def test_count_parameters_includes_frozen() -> None:
    model = GNN(16, 3, ModelConfig(hidden=4, heads=2))
    n = count_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == n == sum(p.numel() for p in model.state_dict().values())


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage"])
def test_eval_deterministic_train_with_dropout_not(graph, arch) -> None:
    x, ei = graph
    cfg = ModelConfig(arch=arch, hidden_layers=2, hidden=8, heads=2, dropout=0.5,
                      attn_dropout=0.5)
    torch.manual_seed(0)
    model = GNN(16, 3, cfg)
    model.eval()
    a, ha = model(x, ei)
    b, hb = model(x, ei)
    assert torch.equal(a, b) and all(torch.equal(u, v) for u, v in zip(ha, hb))
    # predict() is the eval-mode forward and restores the training flag.
    model.train()
    assert torch.equal(model.predict(x, ei), a)
    assert model.training
    c, _ = model(x, ei)
    d, _ = model(x, ei)
    assert not torch.equal(c, d)
    assert not torch.equal(c, a)


def test_train_without_dropout_is_deterministic(graph) -> None:
    x, ei = graph
    cfg = ModelConfig(hidden_layers=2, hidden=8, heads=2, dropout=0.0, attn_dropout=0.0)
    model = GNN(16, 3, cfg).train()
    assert torch.equal(model(x, ei)[0], model(x, ei)[0])


def test_residual_layout_identity_and_linear() -> None:
    cfg = ModelConfig(arch="gat", hidden_layers=3, hidden=4, heads=2, out_heads=3, residual=True)
    model = GNN(16, 5, cfg)
    # No shortcut into the first layer, identity where the width (8) is unchanged ...
    assert model.res[0] is None
    assert isinstance(model.res[1], nn.Identity) and isinstance(model.res[2], nn.Identity)
    # ... and a bias-free projection onto the output heads (8 -> 5 classes x 3 heads).
    assert isinstance(model.out_res, nn.Linear) and model.out_res.bias is None
    assert tuple(model.out_res.weight.shape) == (15, 8)
    # The residual adds exactly that projection's parameters.
    plain = GNN(16, 5, dataclasses.replace(cfg, residual=False))
    assert all(r is None for r in plain.res) and plain.out_res is None
    assert count_parameters(model) - count_parameters(plain) == 15 * 8


def test_output_shortcut_is_identity_when_widths_match() -> None:
    cfg = ModelConfig(arch="gcn", hidden_layers=1, hidden=4, heads=2, residual=True)
    model = GNN(16, 8, cfg)  # width 8 == 8 classes x 1 head
    assert isinstance(model.out_res, nn.Identity)


def test_residual_forward_adds_shortcuts(graph) -> None:
    x, ei = graph
    cfg = ModelConfig(arch="gat", hidden_layers=2, hidden=4, heads=2, out_heads=3, residual=True,
                      dropout=0.0, attn_dropout=0.0)
    torch.manual_seed(0)
    model = GNN(16, 5, cfg).eval()
    logits, (h0, h1) = model(x, ei)
    with torch.no_grad():
        torch.testing.assert_close(h0, model.convs[0](x, ei))
        a0 = F.elu(h0)
        torch.testing.assert_close(h1, model.convs[1](a0, ei) + a0)
        a1 = F.elu(h1)
        z = model.out_conv(a1, ei) + model.out_res(a1)
        torch.testing.assert_close(logits, z.view(180, 3, 5).mean(dim=1))


def test_invalid_config_rejected() -> None:
    from mskd.config import ConfigError

    with pytest.raises(ConfigError, match="unknown architecture 'gin'"):
        GNN(16, 3, ModelConfig(arch="gin"))
    with pytest.raises(ConfigError, match="hidden_layers must be >= 1"):
        GNN(16, 3, ModelConfig(hidden_layers=0))


def _sparse_features(x: torch.Tensor) -> torch.Tensor:
    """``x`` with about 80 % of its entries zeroed, like a bag-of-words matrix."""
    g = torch.Generator().manual_seed(1)
    return x * (torch.rand(x.shape, generator=g) < 0.2)


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage", "mlp", "mlp-hops"])
def test_sparse_input_dropout_without_dropout_equals_dense(graph, arch) -> None:
    # With p = 0 the sparse first layer must compute exactly what the dense one does, gradients
    # included: only the way the product is formed differs.
    x, ei = graph
    x = _sparse_features(x)
    cfg = ModelConfig(arch=arch.split("-")[0], hidden_layers=2, hidden=4, heads=2, residual=True,
                      dropout=0.0, attn_dropout=0.0, hops=2 if arch == "mlp-hops" else 0)
    torch.manual_seed(0)
    dense = GNN(16, 3, cfg).train()
    sparse = GNN(16, 3, dataclasses.replace(cfg, input_dropout="sparse")).train()
    sparse.load_state_dict(dense.state_dict())
    # The features as a sparse COO tensor (a sampled batch's rows) go the same way.
    outs = []
    for model, inp in ((dense, x), (sparse, x), (sparse, x.to_sparse())):
        model.zero_grad()
        logits, hidden = model(inp, ei)
        (logits.square().sum() + sum(h.sum() for h in hidden)).backward()
        outs.append((logits, hidden, [p.grad.clone() for p in model.parameters()]))
    a, ha, ga = outs[0]
    for b, hb, gb in outs[1:]:
        torch.testing.assert_close(b, a)
        for u, v in zip(hb, ha):
            torch.testing.assert_close(u, v)
        for u, v in zip(gb, ga):
            torch.testing.assert_close(u, v)
    with torch.no_grad():
        torch.testing.assert_close(sparse.eval()(x.to_sparse(), ei)[0], dense.eval()(x, ei)[0])


def test_sparse_dropout_keeps_zeros_and_scales_survivors() -> None:
    from mskd.models import sparse_dropout

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 300, generator=g) < 0.1) * torch.rand(200, 300, generator=g)
    torch.manual_seed(0)
    idx, values = sparse_dropout(x, 0.3)
    # The indices are exactly x's non-zeros, and each value is dropped or scaled by 1 / (1 - p).
    assert torch.equal(idx, x.nonzero().t())
    orig = x[idx[0], idx[1]]
    kept = values != 0
    torch.testing.assert_close(values[kept], orig[kept] / 0.7)
    # ~6,000 draws at p = 0.3: the dropped share is within 5 standard deviations (0.03) of p.
    dropped = 1 - kept.float().mean().item()
    assert abs(dropped - 0.3) < 0.03


@pytest.mark.parametrize("arch", ["gat", "gcn"])
def test_sparse_first_layer_is_the_conv_of_the_dropped_out_input(graph, arch) -> None:
    from mskd.models import sparse_dropout, sparse_dropout_conv

    x, ei = graph
    x = _sparse_features(x)
    cfg = ModelConfig(arch=arch, hidden_layers=1, hidden=4, heads=2, attn_dropout=0.0)
    conv = GNN(16, 3, cfg).convs[0]
    torch.manual_seed(3)
    out = sparse_dropout_conv(conv, x, ei, 0.5)
    torch.manual_seed(3)
    idx, values = sparse_dropout(x, 0.5)
    dropped = torch.zeros_like(x)
    dropped[idx[0], idx[1]] = values
    torch.testing.assert_close(out, conv(dropped, ei))
    assert 0 < (values == 0).sum() < values.numel()  # something was dropped, not everything


def test_sparse_input_dropout_sees_an_input_changed_in_place(graph) -> None:
    # The non-zero positions are remembered between calls with the same tensor; changing that
    # tensor in place must not reuse them.
    x, ei = graph
    x = _sparse_features(x)
    cfg = ModelConfig(hidden_layers=1, hidden=4, heads=2, dropout=0.0, attn_dropout=0.0)
    torch.manual_seed(0)
    dense = GNN(16, 3, cfg).train()
    sparse = GNN(16, 3, dataclasses.replace(cfg, input_dropout="sparse")).train()
    sparse.load_state_dict(dense.state_dict())
    sparse(x, ei)
    x[:, :8] = 0.0
    x[:5, 8:] = 1.0
    torch.testing.assert_close(sparse(x, ei)[0], dense(x, ei)[0])


def test_sparse_input_dropout_does_not_change_eval() -> None:
    cfg = ModelConfig(hidden_layers=2, hidden=4, heads=2)
    x = _sparse_features(torch.randn(30, 16))
    ei = torch.randint(0, 30, (2, 90))
    torch.manual_seed(0)
    dense = GNN(16, 3, cfg).eval()
    sparse = GNN(16, 3, dataclasses.replace(cfg, input_dropout="sparse")).eval()
    sparse.load_state_dict(dense.state_dict())
    assert torch.equal(sparse(x, ei)[0], dense(x, ei)[0])


def test_model_config_dict_leaves_out_later_fields_at_their_default() -> None:
    # Checkpoints written before input_dropout existed store no such key; a dense config must
    # still produce exactly their dict, a sparse one must not.
    from mskd.config import ConfigError

    dense = ModelConfig()
    assert "input_dropout" not in dense.to_dict()
    assert ModelConfig(**dense.to_dict()) == dense
    sparse = ModelConfig(input_dropout="sparse")
    assert sparse.to_dict()["input_dropout"] == "sparse"
    assert ModelConfig(**sparse.to_dict()) == sparse
    with pytest.raises(ConfigError, match="unknown input_dropout 'lazy'"):
        ModelConfig(input_dropout="lazy").validate()


def test_presets_use_sparse_input_dropout_on_coauthor_only() -> None:
    for name in ("coauthor-cs", "coauthor-physics"):
        run = preset(name)
        assert {m.input_dropout for m in (*run.teachers, run.student)} == {"sparse"}
    for name in ("cora", "citeseer", "amazon-photo", "amazon-computers", "ppi"):
        run = preset(name)
        assert {m.input_dropout for m in (*run.teachers, run.student)} == {"dense"}
