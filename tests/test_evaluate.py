"""Tests for mskd.evaluate.score on hand-computed cases, and its shape checks."""

from __future__ import annotations

import pytest
import torch

from mskd.data import MULTI, SINGLE
from mskd.evaluate import metric_name, score


def test_metric_names() -> None:
    assert metric_name(SINGLE) == "accuracy"
    assert metric_name(MULTI) == "micro-f1"
    with pytest.raises(ValueError, match="unknown task 'regression'"):
        metric_name("regression")


def test_accuracy_hand_computed() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
    y = torch.tensor([0, 1, 2, 2])  # argmax 0, 1, 0, 2: three of four right
    assert score(y, logits, SINGLE) == pytest.approx(0.75)
    assert score(torch.tensor([0, 0, 0, 0]), logits, SINGLE) == pytest.approx(0.5)
    assert score(torch.tensor([1, 0, 1, 0]), logits, SINGLE) == 0.0
    assert score(torch.tensor([0, 1, 0, 2]), logits, SINGLE) == 1.0


def test_accuracy_ignores_scale_of_logits() -> None:
    logits = torch.tensor([[-5.0, -1.0], [10.0, 9.0], [0.1, 0.2]])
    y = torch.tensor([1, 0, 0])
    assert score(y, logits, SINGLE) == pytest.approx(2 / 3)
    assert score(y, 100 * logits, SINGLE) == pytest.approx(2 / 3)


def test_micro_f1_hand_computed() -> None:
    logits = torch.tensor([[1.0, -1.0, 0.0], [-2.0, 3.0, -0.5]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # predicted positive where logit >= 0 (sigmoid >= 0.5), the exact 0 included:
    # [[1, 0, 1], [0, 1, 0]] -> tp = 2, fp = 1, fn = 1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3
    assert score(y, logits, MULTI) == pytest.approx(2 / 3)


def test_micro_f1_logit_zero_is_positive() -> None:
    # sigmoid(0) = 0.5 -> positive: right when the label is 1, a false positive when it is 0.
    assert score(torch.tensor([[1.0]]), torch.tensor([[0.0]]), MULTI) == 1.0
    assert score(torch.tensor([[0.0]]), torch.tensor([[0.0]]), MULTI) == 0.0
    # Just below 0 is negative.
    assert score(torch.tensor([[1.0]]), torch.tensor([[-1e-6]]), MULTI) == 0.0


def test_micro_f1_pools_over_labels() -> None:
    # Micro, not macro: label 0 has tp = 3, label 1 has fn = 1 -> 2*3 / (2*3 + 0 + 1) = 6/7
    # (a macro average would be (1 + 0) / 2).
    logits = torch.tensor([[1.0, -1.0], [2.0, -1.0], [3.0, -3.0]])
    y = torch.tensor([[1, 0], [1, 0], [1, 1]])
    assert score(y, logits, MULTI) == pytest.approx(6 / 7)


def test_micro_f1_no_positives_anywhere_is_perfect() -> None:
    assert score(torch.zeros(3, 2), -torch.ones(3, 2), MULTI) == 1.0
    # All wrong: no true positive -> 0.
    assert score(torch.ones(3, 2), -torch.ones(3, 2), MULTI) == 0.0


@pytest.mark.parametrize(
    ("y", "logits", "task", "message"),
    [
        (torch.tensor([0, 1]), torch.zeros(2), SINGLE, r"logits must have shape \[N, C\], got \[2\]"),
        (torch.tensor([0, 1, 2]), torch.zeros(2, 3), SINGLE,
         r"single-label y_true must have shape \[2\], got \[3\]"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), SINGLE,
         r"single-label y_true must have shape \[2\], got \[2, 3\]"),
        (torch.tensor([0, 3]), torch.zeros(2, 3), SINGLE, r"labels must lie in \[0, 3\), got 0..3"),
        (torch.tensor([-1, 0]), torch.zeros(2, 3), SINGLE, r"labels must lie in \[0, 3\), got -1..0"),
        (torch.zeros(2, 4), torch.zeros(2, 3), MULTI,
         r"multi-label y_true must have shape \[2, 3\], got \[2, 4\]"),
        (torch.zeros(2), torch.zeros(2, 3), MULTI,
         r"multi-label y_true must have shape \[2, 3\], got \[2\]"),
        (torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), SINGLE, "cannot score an empty set"),
        (torch.zeros(0, 3), torch.zeros(0, 3), MULTI, "cannot score an empty set"),
        (torch.tensor([0]), torch.zeros(1, 2), "regression", "unknown task 'regression'"),
    ],
)
def test_shape_checks(y, logits, task, message) -> None:
    with pytest.raises(ValueError, match=message):
        score(y, logits, task)
