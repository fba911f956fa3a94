"""Tests for mskd.evaluate: score on hand-computed cases and its shape checks; the one scoring
path (prediction rule, eval-mode logits of a split) against the code it replaced."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_distill import SMALL, _dataset

from mskd.data import MULTI, SINGLE
from mskd.evaluate import (
    evaluate_split,
    in_degree,
    metric_name,
    model_logits,
    predict_labels,
    score,
    split_in_degrees,
    split_logits,
)
from mskd.losses import task_loss
from mskd.models import GNN


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


# --- the one scoring path equals the five it replaced --------------------------------------------


def _old_score(y_true, logits, task):
    """mskd.evaluate.score before predict_labels existed (commit ed58915)."""
    if task == SINGLE:
        return (logits.argmax(dim=1) == y_true).float().mean().item()
    pred, truth = logits >= 0, y_true > 0.5
    tp = (pred & truth).sum().item()
    fp = (pred & ~truth).sum().item()
    fn = (~pred & truth).sum().item()
    return 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


@torch.no_grad()
def _old_predict_split(model, graphs):
    """mskd.train.predict_split (full batch), which training and `mskd evaluate` scored with."""
    was = model.training
    model.eval()
    logits, ys = [], []
    for g in graphs:
        z, _ = model(g.x, g.edge_index)
        logits.append(z[g.mask])
        ys.append(g.y[g.mask])
    model.train(was)
    return torch.cat(logits), torch.cat(ys)


def _old_scale_evaluate(model, data, split, chunk_size):
    """mskd.scale.evaluate with --sampler neighbor: layer-wise logits of the split's one graph."""
    g = data.splits[split][0]
    with torch.no_grad():
        logits, _ = model.layerwise(g.x, g.edge_index, chunk_size, keep_hidden=False)
    z, y = logits[g.mask], g.y[g.mask]
    return _old_score(y, z, data.task), task_loss(z, y, data.multilabel).item()


@torch.no_grad()
def _old_test_logits(model, data):
    """mskd.comparison._test_batch/_test_logits: the degree analysis' test logits and degrees."""
    model.eval()
    zs, ys, degs = [], [], []
    for g in data.splits["test"]:
        nodes = g.mask.nonzero().flatten()
        z, _ = model(g.x, g.edge_index)
        zs.append(z[nodes])
        ys.append(g.y[nodes])
        degs.append(in_degree(g.edge_index, g.num_nodes)[nodes.cpu()])
    return torch.cat(zs), torch.cat(ys), torch.cat(degs)


def _old_csv_preds(logits, multilabel):
    """mskd.deploy.predictions_csv's prediction columns."""
    return (logits >= 0).to(torch.int64) if multilabel else logits.argmax(dim=1, keepdim=True)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("graphs", [1, 3])
def test_one_scoring_path_equals_the_old_ones(multilabel, graphs) -> None:
    data = _dataset(multilabel=multilabel, graphs=graphs)
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, dropout=0.5)  # eval mode must be switched on to match
    model = GNN(data.num_features, data.num_classes, cfg).train()
    for split in ("train", "val", "test"):
        z_old, y_old = _old_predict_split(model, data.splits[split])
        z, y = split_logits(model, data.splits[split])
        assert torch.equal(z, z_old) and torch.equal(y, y_old)
        old = (_old_score(y_old, z_old, data.task),
               task_loss(z_old, y_old, data.multilabel).item())
        assert evaluate_split(model, data, split) == old
        assert score(y, z, data.task) == old[0]
        if graphs == 1:
            # Exactly the same code path as before, so exactly equal, not merely close.
            assert evaluate_split(model, data, split, chunk_size=7) == _old_scale_evaluate(
                model, data, split, 7)
    assert model.training  # restored
    z_old, y_old, d_old = _old_test_logits(model, data)
    z, y = split_logits(model, data.splits["test"])
    assert torch.equal(z, z_old) and torch.equal(y, y_old)
    assert torch.equal(split_in_degrees(data.splits["test"]), d_old)
    for g in data.splits["test"]:
        logits = model_logits(model, g.x, g.edge_index)
        assert torch.equal(logits, model.predict(g.x, g.edge_index))
        got = predict_labels(logits, data.task).to(torch.int64).view(logits.shape[0], -1)
        assert torch.equal(got, _old_csv_preds(logits, multilabel))


def test_predict_labels_rule() -> None:
    logits = torch.tensor([[0.0, -1e-6, 2.0], [3.0, 1.0, -4.0]])
    assert predict_labels(logits, SINGLE).tolist() == [2, 0]
    # sigmoid(0) = 0.5 is positive, just below 0 is not
    assert predict_labels(logits, MULTI).tolist() == [[True, False, True], [True, True, False]]
    with pytest.raises(ValueError, match="unknown task 'regression'"):
        predict_labels(logits, "regression")
    with pytest.raises(ValueError, match=r"logits must have shape \[N, C\]"):
        predict_labels(torch.zeros(3), SINGLE)
