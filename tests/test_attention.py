"""Tests for mskd.attention.teacher_weights."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from mskd.attention import MODES, teacher_weights

NUM_NODES, NUM_CLASSES = 6, 3


def _logits(seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(NUM_NODES, NUM_CLASSES, generator=gen, dtype=torch.float64)


def test_node_rows_sum_to_one() -> None:
    z_s = _logits(0)
    w = teacher_weights(z_s, [_logits(1), _logits(2), _logits(3)], mode="node", tau=0.5)
    assert w.shape == (NUM_NODES, 3)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(NUM_NODES, dtype=torch.float64))


def test_node_hand_computed() -> None:
    # Cosines 1 (same direction) and -1 (opposite): weights e^1 / (e^1 + e^-1) and the rest.
    z_s = torch.tensor([[1.0, 2.0]])
    w = teacher_weights(z_s, [3.0 * z_s, -z_s], mode="node", tau=1.0)
    first = torch.e / (torch.e + 1 / torch.e)
    torch.testing.assert_close(w, torch.tensor([[first, 1 - first]]))


def test_node_prefers_matching_teacher() -> None:
    z_s = _logits(4)
    teachers = [_logits(5), z_s.clone(), _logits(6)]
    w = teacher_weights(z_s, teachers, mode="node")
    assert (w[:, 1] > 1 / 3).all()
    assert (w.argmax(dim=1) == 1).all()


def test_smaller_tau_sharpens() -> None:
    z_s = _logits(7)
    teachers = [_logits(8), z_s.clone(), _logits(9)]
    soft = teacher_weights(z_s, teachers, tau=1.0)
    sharp = teacher_weights(z_s, teachers, tau=0.1)
    assert (sharp[:, 1] > soft[:, 1]).all()
    assert (sharp.max(dim=1).values > soft.max(dim=1).values).all()


def test_uniform() -> None:
    z_s = _logits(10)
    w = teacher_weights(z_s, [_logits(11), _logits(12), _logits(13), _logits(14)], mode="uniform")
    torch.testing.assert_close(w, torch.full((4,), 0.25, dtype=torch.float64))


def test_global_matches_authors_formula_and_sums_to_lam() -> None:
    z_s = _logits(15)
    teachers = [_logits(16) + 1.0, _logits(17) + 2.0, _logits(18) + 0.5]
    w = teacher_weights(z_s.abs(), [t.abs() for t in teachers], mode="global", lam=7.0)
    # The authors' code: mean(flatten(z_s^T @ z_tk)), divided by the sum, softmax, times lambda.
    scores = torch.stack([(z_s.abs().t() @ t.abs()).flatten().mean() for t in teachers])
    expected = 7.0 * torch.softmax(scores / scores.sum(), dim=0)
    torch.testing.assert_close(w, expected)
    assert w.sum().item() == pytest.approx(7.0)


def test_no_gradient_through_weights() -> None:
    z_s = _logits(19).requires_grad_()
    z_t = [_logits(20).requires_grad_(), _logits(21).requires_grad_()]
    for mode in MODES:
        w = teacher_weights(z_s, z_t, mode=mode)
        assert not w.requires_grad
    # Used as a multiplier, the weights leave the student's gradient to the weighted term alone.
    w = teacher_weights(z_s, z_t, mode="node")
    (w[:, 0] * z_s.sum(dim=1)).sum().backward()
    assert z_s.grad is not None
    torch.testing.assert_close(z_s.grad, w[:, :1].expand(-1, NUM_CLASSES))
    assert z_t[0].grad is None


def test_argument_errors() -> None:
    z_s = _logits(22)
    with pytest.raises(ValueError, match="unknown attention mode 'max'; valid: node, global"):
        teacher_weights(z_s, [z_s], mode="max")
    with pytest.raises(ValueError, match="K=0"):
        teacher_weights(z_s, [])
    with pytest.raises(ValueError, match="teacher 1"):
        teacher_weights(z_s, [z_s, z_s[:, :2]])
    with pytest.raises(ValueError, match="tau must be > 0"):
        teacher_weights(z_s, [z_s], tau=0.0)
    with pytest.raises(ValueError, match="sum to 0"):
        teacher_weights(torch.ones(2, 2), [torch.ones(2, 2), -torch.ones(2, 2)], mode="global")
