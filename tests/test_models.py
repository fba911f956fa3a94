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
