"""Tests for mskd.selection: teacher-side selection weights and the headroom ensembles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mskd.evaluate import score
from mskd.selection import (
    TEMPERATURES,
    calibrated_uniform,
    certainty,
    confidence_weights,
    cross_fit,
    ensemble,
    fit_degree,
    fit_temperature,
    folds,
    gate_features,
    log_likelihood,
    oracle,
    selection_weights,
)


def test_certainty_is_one_for_a_sure_teacher_and_zero_for_a_uniform_one() -> None:
    z = torch.tensor([[[50.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])  # [K=2, N=1, C=3]
    c = certainty(z, multilabel=False)
    assert c.shape == (1, 2)
    assert c[0, 0] == pytest.approx(1.0, abs=1e-4) and c[0, 1] == pytest.approx(0.0, abs=1e-6)
    cm = certainty(torch.tensor([[[30.0, -30.0]], [[0.0, 0.0]]]), multilabel=True)
    assert cm[0, 0] == pytest.approx(1.0, abs=1e-4) and cm[0, 1] == pytest.approx(0.0, abs=1e-6)


def test_confidence_weights_favour_the_certain_teacher_and_sharpen_with_tau() -> None:
    z = torch.tensor([[[4.0, 0.0]], [[0.5, 0.0]]])
    soft = confidence_weights(z, tau=1.0, multilabel=False)
    sharp = confidence_weights(z, tau=0.1, multilabel=False)
    torch.testing.assert_close(soft.sum(1), torch.ones(1))
    assert soft[0, 0] > 0.5 and sharp[0, 0] > soft[0, 0]
    c = certainty(z, multilabel=False)[0]
    assert soft[0, 0] == pytest.approx(1 / (1 + math.exp(float(c[1] - c[0]))))


def test_ensemble_uniform_is_the_mean_of_probabilities() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, generator=gen)
    out = ensemble(z, torch.full((3,), 1 / 3), multilabel=False)
    torch.testing.assert_close(out.exp(), torch.softmax(z, -1).mean(0))
    per_node = torch.zeros(5, 3)
    per_node[:, 1] = 1.0  # all weight on teacher 1: its predictions exactly
    assert torch.equal(ensemble(z, per_node, False).argmax(-1), z[1].argmax(-1))
    ml = ensemble(z, torch.full((3,), 1 / 3), multilabel=True)
    torch.testing.assert_close(torch.sigmoid(ml), torch.sigmoid(z).mean(0), atol=1e-5, rtol=0)


def test_oracle_is_right_wherever_any_teacher_is() -> None:
    y = torch.tensor([0, 1, 2, 1])
    z = torch.full((2, 4, 3), -5.0)
    z[0, torch.arange(4), torch.tensor([0, 0, 0, 0])] = 5.0  # right on node 0
    z[1, torch.arange(4), torch.tensor([2, 1, 0, 0])] = 5.0  # right on node 1
    assert score(y, oracle(z, y, False), "single-label") == pytest.approx(0.5)
    ym = torch.tensor([[1, 0], [0, 1]])
    zm = torch.tensor([[[1.0, 1.0], [-1.0, -1.0]], [[-1.0, -1.0], [-1.0, 1.0]]])
    # Per label: node 0 label 0 from teacher 0, label 1 from teacher 1; node 1 both from teacher 1.
    assert torch.equal(oracle(zm, ym, True) > 0, ym.bool())


def test_log_likelihood_matches_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(1)
    z, y = torch.randn(2, 6, 3, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2])
    ll = log_likelihood(z, y, False)
    for k in range(2):
        torch.testing.assert_close(-ll[:, k], torch.nn.functional.cross_entropy(
            z[k], y, reduction="none"))


def test_fit_degree_picks_the_better_teacher_per_bucket() -> None:
    # Bucket 0: teacher 0 better; bucket 1: teacher 1 better; bucket 2 empty -> uniform.
    ll = torch.tensor([[-0.1, -2.0], [-0.2, -1.5], [-3.0, -0.1], [-2.0, -0.3]])
    fn = fit_degree(ll, torch.tensor([0, 0, 1, 1]), 3, tau=0.1)
    w = fn(torch.tensor([0, 1, 2]))
    assert w[0, 0] > 0.99 and w[1, 1] > 0.99
    torch.testing.assert_close(w[2], torch.tensor([0.5, 0.5]))


def test_cross_fit_never_uses_a_validation_nodes_own_fold() -> None:
    val = torch.arange(10, 20)
    fold = folds(10, seed=3)
    seen: list[torch.Tensor] = []

    def fit(idx: torch.Tensor):
        seen.append(idx)
        tag = float(len(seen))  # 1.0 for the fold-0 fit, 2.0 for the fold-1 fit
        return lambda side: torch.full((side.shape[0], 2), tag)

    w = cross_fit(fit, torch.zeros(25), val, seed=3)
    assert torch.equal(seen[0], (fold == 0).nonzero().view(-1))
    assert (w[val[fold == 0]] == 2.0).all() and (w[val[fold == 1]] == 1.0).all()
    assert (w[:10] == 1.5).all() and (w[20:] == 1.5).all()


def _graph(n: int = 60, c: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=gen)
    src = torch.randint(0, n, (4 * n,), generator=gen)
    dst = torch.randint(0, n, (4 * n,), generator=gen)
    ei = torch.stack([src, dst])
    train = torch.zeros(n, dtype=torch.bool)
    train[:20] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[20:40] = True
    good = torch.nn.functional.one_hot(y, c).float() * 3  # teacher 0 knows the labels
    z = torch.stack([good, torch.randn(n, c, generator=gen)])
    return z, ei, y, train, val


@pytest.mark.parametrize("mode", ["confidence", "degree", "gate"])
def test_selection_weights_prefer_the_teacher_that_knows(mode: str) -> None:
    z, ei, y, train, val = _graph()
    w = selection_weights(mode, z, ei, y, train, val, tau=0.1, multilabel=False, seed=0)
    assert w.shape == (60, 2)
    torch.testing.assert_close(w.sum(1), torch.ones(60))
    assert w[:, 0].mean() > 0.6


def test_gate_features_columns() -> None:
    z, ei, y, train, _ = _graph()
    f = gate_features(z, ei, y, train, multilabel=False)
    assert f.shape == (60, 1 + 3 * 2 + 1)
    assert torch.isfinite(f).all()
    # Column 5: teacher 0's prediction (the true label) against the labels of the node's
    # labelled in-neighbours, i.e. the share of those neighbours in the node's own class.
    has = f[:, -1] == 1
    assert has.any()
    assert torch.equal(f[:, 5][has], torch.tensor([
        float((y[ei[0][(ei[1] == v) & train[ei[0]] & (ei[0] != v)]] == y[v]).float().mean())
        for v in has.nonzero().view(-1).tolist()]))


def test_fitted_modes_need_validation_nodes() -> None:
    z, ei, y, train, val = _graph()
    with pytest.raises(ValueError, match="validation nodes"):
        selection_weights("degree", z, ei, y, train, torch.zeros_like(val), 0.1, False, 0)


def test_gradient_shares_sum_to_one_and_follow_the_weights() -> None:
    from mskd.train import gradient_shares

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    a = (w ** 2).sum()  # gradient 2w = (2, 4), norm sqrt(20)
    b = 3.0 * w.sum()  # gradient (3, 3), norm sqrt(18)
    s = gradient_shares({"task": a, "lsp": b}, [w])
    assert s["task"] + s["lsp"] == pytest.approx(1.0)
    assert s["task"] == pytest.approx(math.sqrt(20) / (math.sqrt(20) + math.sqrt(18)))
    (a + b).backward()  # the graph was kept for the real update
    torch.testing.assert_close(w.grad, torch.tensor([5.0, 7.0]))


def test_fit_temperature_undoes_a_known_scaling() -> None:
    # Labels drawn from softmax(z): the calibrated temperature of z / 0.25 is 0.25 (on the grid).
    gen = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(20000, 4, generator=gen)
    y = torch.multinomial(torch.softmax(z, -1), 1, generator=gen).view(-1)
    t = float(fit_temperature(z * 4, y, multilabel=False))
    assert t == pytest.approx(4.0, rel=0.13)  # grid step: a factor of 10 ** 0.05 = 1.12
    assert float(fit_temperature(z, y, multilabel=False)) == pytest.approx(1.0, rel=0.13)
    assert float(TEMPERATURES.min()) < 0.1 and float(TEMPERATURES.max()) >= 10 * 0.9999


def test_calibrated_uniform_is_cross_fitted_and_rescues_an_under_confident_teacher() -> None:
    # Teacher 0 is right everywhere but nearly flat; teacher 1 is confidently wrong on a third of
    # the nodes. Plain averaging follows teacher 1 there; calibrated, teacher 0 wins.
    n, c = 300, 3
    y = torch.arange(n) % c
    right = F.one_hot(y, c).float()
    wrong = F.one_hot((y + 1) % c, c).float()
    z0 = 0.05 * right
    z1 = torch.where((torch.arange(n) % 3 == 0).unsqueeze(1), 2.0 * wrong, 2.0 * right)
    z = torch.stack([z0, z1])
    val = torch.zeros(n, dtype=torch.bool)
    val[::2] = True
    plain = ensemble(z, torch.full((2,), 0.5), multilabel=False).argmax(-1)
    cal = calibrated_uniform(z, y, val, multilabel=False, seed=0).argmax(-1)
    assert (plain == y).float().mean() < 0.7 and bool((cal == y).all())


def test_calibrated_uniform_gives_validation_nodes_the_other_folds_temperatures() -> None:
    gen = torch.Generator().manual_seed(1)
    n, k = 120, 2
    z = torch.randn(k, n, 4, generator=gen) * torch.tensor([0.3, 3.0]).view(k, 1, 1)
    y = torch.randint(0, 4, (n,), generator=gen)
    val_mask = torch.zeros(n, dtype=torch.bool)
    val_mask[:60] = True
    got = calibrated_uniform(z, y, val_mask, multilabel=False, seed=3)
    val = val_mask.nonzero().view(-1)
    fold = folds(val.numel(), 3)
    temps = [torch.stack([fit_temperature(z[j, val[fold == f]], y[val[fold == f]], False)
                          for j in range(k)]) for f in (0, 1)]
    for f in (0, 1):
        nodes = val[fold == f]
        want = ensemble(z[:, nodes] / temps[1 - f].view(k, 1, 1), torch.full((k,), 0.5), False)
        torch.testing.assert_close(got[nodes], want)
    rest = torch.arange(60, n)  # not validation: the two folds' temperatures averaged
    mean_t = (temps[0] + temps[1]) / 2
    want = ensemble(z[:, rest] / mean_t.view(k, 1, 1), torch.full((k,), 0.5), False)
    torch.testing.assert_close(got[rest], want)
