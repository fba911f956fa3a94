"""Tests for mskd.losses: invariants, hand-computed values, and dense reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mskd.losses import (
    KERNELS,
    KernelParams,
    at_loss,
    edge_kernel,
    fitnet_loss,
    kd_loss,
    local_structure,
    lsp_loss,
    lsp_target_loss,
    median_edge_distance,
    structure_kl,
    task_loss,
)

# 4-node toy graph: a directed cycle 0->1->2->3->0 plus the chord 0->2.
EDGE_INDEX = torch.tensor([[0, 1, 2, 3, 0], [1, 2, 3, 0, 2]])
NUM_NODES = 4

# Per-kernel log-scores written out independently of mskd, for the dense references below.
REFERENCE_SCORES = {
    "l1": lambda a, b: -(a - b).abs().sum() / 100.0,
    "l1_code": lambda a, b: math.exp(-(a - b).abs().sum().item() / 100.0),
    "rbf": lambda a, b: -(a - b).pow(2).sum() / 1.0,
    "linear": lambda a, b: a @ b,
    "poly": lambda a, b: (a @ b + 1.0) ** 2,
}


def _features(width: int, seed: int, scale: float = 1.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(NUM_NODES, width, generator=gen, dtype=torch.float64)


def _dense_lsp(h_s: Tensor, h_t: Tensor, edge_index: Tensor, kernel: str) -> Tensor:
    """Per-node KL(p_t || p_s) from a dense adjacency with self loops, one node at a time."""
    n = h_s.size(0)
    adj = torch.zeros(n, n, dtype=torch.bool)
    adj[edge_index[0], edge_index[1]] = True
    adj.fill_diagonal_(True)
    score = REFERENCE_SCORES[kernel]
    out = []
    for v in range(n):
        nbrs = adj[:, v].nonzero().flatten().tolist()
        log_p_s = torch.log_softmax(
            torch.stack([torch.as_tensor(score(h_s[u], h_s[v])) for u in nbrs]), dim=0
        )
        log_p_t = torch.log_softmax(
            torch.stack([torch.as_tensor(score(h_t[u], h_t[v])) for u in nbrs]), dim=0
        )
        out.append((log_p_t.exp() * (log_p_t - log_p_s)).sum())
    return torch.stack(out).to(h_s.dtype)


# --------------------------------------------------------------------------------------------
# lsp_loss


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_lsp_identical_inputs_is_zero(kernel: str) -> None:
    h = _features(5, seed=0)
    assert lsp_loss(h, h, EDGE_INDEX, kernel=kernel).item() == 0.0


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_lsp_nonnegative_on_random_inputs(kernel: str) -> None:
    # The L1 kernels divide distances by 100: spread the features so they see non-trivial scores.
    scale = 30.0 if kernel.startswith("l1") else 1.0
    for seed in range(5):
        h_s, h_t = _features(6, seed, scale), _features(6, seed + 100, scale)
        per_node = lsp_loss(h_s, h_t, EDGE_INDEX, kernel=kernel, reduction="none")
        assert (per_node >= -1e-12).all()
        assert per_node.sum() > 0


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_lsp_matches_dense_reference(kernel: str) -> None:
    scale = 20.0 if kernel.startswith("l1") else 1.0
    h_s, h_t = _features(3, seed=1, scale=scale), _features(3, seed=2, scale=scale)
    got = lsp_loss(h_s, h_t, EDGE_INDEX, kernel=kernel, reduction="none")
    torch.testing.assert_close(got, _dense_lsp(h_s, h_t, EDGE_INDEX, kernel))


def test_lsp_widths_may_differ() -> None:
    h_s, h_t = _features(3, seed=3, scale=40.0), _features(7, seed=4, scale=40.0)
    got = lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none")
    torch.testing.assert_close(got, _dense_lsp(h_s, h_t, EDGE_INDEX, "l1"))
    assert got.sum() > 0


def test_lsp_reductions_agree() -> None:
    h_s, h_t = _features(4, seed=5, scale=50.0), _features(4, seed=6, scale=50.0)
    per_node = lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none")
    assert per_node.shape == (NUM_NODES,)
    torch.testing.assert_close(lsp_loss(h_s, h_t, EDGE_INDEX, reduction="mean"), per_node.mean())
    torch.testing.assert_close(lsp_loss(h_s, h_t, EDGE_INDEX, reduction="sum"), per_node.sum())


def test_lsp_kl_direction_two_nodes() -> None:
    # One edge 0 -> 1. Node 0 only has its self loop (KL 0); node 1 has in-edges {0->1, 1->1}.
    # Teacher: L1 distance 100 -> logits (-1, 0); student: distance 300 -> logits (-3, 0).
    edge_index = torch.tensor([[0], [1]])
    h_t = torch.tensor([[0.0], [100.0]], dtype=torch.float64)
    h_s = torch.tensor([[0.0], [300.0]], dtype=torch.float64)
    p_t = [math.exp(-1) / (1 + math.exp(-1)), 1 / (1 + math.exp(-1))]
    p_s = [math.exp(-3) / (1 + math.exp(-3)), 1 / (1 + math.exp(-3))]
    kl_t_s = sum(a * math.log(a / b) for a, b in zip(p_t, p_s))
    kl_s_t = sum(b * math.log(b / a) for a, b in zip(p_t, p_s))

    got = lsp_loss(h_s, h_t, edge_index)
    assert got.item() == pytest.approx(kl_t_s / 2, rel=1e-12)
    swapped = lsp_loss(h_t, h_s, edge_index)
    assert swapped.item() == pytest.approx(kl_s_t / 2, rel=1e-12)
    assert abs(got.item() - swapped.item()) > 1e-3


def test_lsp_l1_code_kernel_two_nodes() -> None:
    # Authors' code: softmax over s = exp(-d/100) itself, logits (e^-1, 1) vs (e^-3, 1).
    edge_index = torch.tensor([[0], [1]])
    h_t = torch.tensor([[0.0], [100.0]], dtype=torch.float64)
    h_s = torch.tensor([[0.0], [300.0]], dtype=torch.float64)

    def probs(logit: float) -> list[float]:
        z = math.exp(logit) + math.e
        return [math.exp(logit) / z, math.e / z]

    p_t, p_s = probs(math.exp(-1)), probs(math.exp(-3))
    expected = sum(a * math.log(a / b) for a, b in zip(p_t, p_s)) / 2
    assert lsp_loss(h_s, h_t, edge_index, kernel="l1_code").item() == pytest.approx(expected)


def test_lsp_permutation_invariant() -> None:
    h_s, h_t = _features(5, seed=7, scale=50.0), _features(3, seed=8, scale=50.0)
    perm = torch.tensor([2, 0, 3, 1])  # new node i is old node perm[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(NUM_NODES)
    ei_perm = inv[EDGE_INDEX]

    before = lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none")
    after = lsp_loss(h_s[perm], h_t[perm], ei_perm, reduction="none")
    torch.testing.assert_close(after, before[perm])
    torch.testing.assert_close(after.mean(), before.mean())


def test_lsp_existing_self_loops_not_double_counted() -> None:
    h_s, h_t = _features(4, seed=9, scale=50.0), _features(4, seed=10, scale=50.0)
    loops = torch.arange(NUM_NODES).repeat(2, 1)
    with_loops = torch.cat([EDGE_INDEX, loops, loops[:, :2]], dim=1)  # nodes 0, 1 looped twice
    torch.testing.assert_close(
        lsp_loss(h_s, h_t, with_loops, reduction="none"),
        lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none"),
    )


def test_lsp_isolated_node_contributes_zero() -> None:
    h_s, h_t = _features(2, seed=11, scale=50.0), _features(2, seed=12, scale=50.0)
    edge_index = torch.tensor([[0, 1], [1, 0]])  # nodes 2 and 3 isolated
    per_node = lsp_loss(h_s, h_t, edge_index, reduction="none")
    assert per_node[2:].tolist() == [0.0, 0.0]
    assert per_node[:2].min() > 0


def test_lsp_gradient_reaches_student_only() -> None:
    h_s = _features(4, seed=13, scale=50.0).requires_grad_()
    h_t = _features(6, seed=14, scale=50.0).requires_grad_()
    lsp_loss(h_s, h_t, EDGE_INDEX).backward()
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0
    assert h_t.grad is None


def test_lsp_stable_with_large_logits() -> None:
    h_s, h_t = _features(4, seed=15, scale=100.0), _features(4, seed=16, scale=100.0)
    for kernel in ("linear", "poly"):
        loss = lsp_loss(h_s, h_t, EDGE_INDEX, kernel=kernel)
        assert torch.isfinite(loss)


def test_lsp_argument_errors() -> None:
    h = _features(3, seed=0)
    with pytest.raises(ValueError, match="unknown kernel 'cosine'; valid: l1, l1_code, rbf"):
        lsp_loss(h, h, EDGE_INDEX, kernel="cosine")
    with pytest.raises(ValueError, match="unknown reduction"):
        lsp_loss(h, h, EDGE_INDEX, reduction="avg")
    with pytest.raises(ValueError, match="same number of nodes"):
        lsp_loss(h, h[:3], EDGE_INDEX)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        lsp_loss(h, h, EDGE_INDEX.t())
    with pytest.raises(ValueError, match="outside"):
        lsp_loss(h, h, torch.tensor([[0], [4]]))
    with pytest.raises(ValueError, match="sigma"):
        lsp_loss(h, h, EDGE_INDEX, kernel="rbf", sigma=0.0)


def test_local_structure_is_a_distribution_per_node() -> None:
    h = _features(3, seed=17, scale=50.0)
    edge_index, log_p = local_structure(h, EDGE_INDEX, "rbf", sigma=100.0)
    assert edge_index.size(1) == EDGE_INDEX.size(1) + NUM_NODES
    per_node = torch.zeros(NUM_NODES, dtype=h.dtype).index_add_(0, edge_index[1], log_p.exp())
    torch.testing.assert_close(per_node, torch.ones(NUM_NODES, dtype=h.dtype))


def test_cached_teacher_structure_matches_lsp_loss() -> None:
    h_s = _features(3, seed=18, scale=50.0).requires_grad_()
    h_t = _features(8, seed=19, scale=50.0)
    with torch.no_grad():
        edge_index, log_p_t = local_structure(h_t, EDGE_INDEX)
    _, log_p_s = local_structure(h_s, EDGE_INDEX)
    cached = structure_kl(log_p_t, log_p_s, edge_index, NUM_NODES, reduction="none")
    torch.testing.assert_close(cached, lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none"))
    cached.sum().backward()
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same edges"):
        structure_kl(log_p_t, log_p_s[:-1], edge_index, NUM_NODES)


# --------------------------------------------------------------------------------------------
# kd_loss


@pytest.mark.parametrize("multilabel", [False, True])
def test_kd_identical_logits_is_zero(multilabel: bool) -> None:
    z = _features(5, seed=20, scale=3.0)
    assert kd_loss(z, z, T=2.0, multilabel=multilabel).item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("multilabel", [False, True])
def test_kd_nonnegative(multilabel: bool) -> None:
    for seed in range(5):
        z_s, z_t = _features(5, seed, scale=4.0), _features(5, seed + 50, scale=4.0)
        per_node = kd_loss(z_s, z_t, T=1.5, multilabel=multilabel, reduction="none")
        assert per_node.shape == (NUM_NODES,)
        assert (per_node > 0).all()


def test_kd_single_label_hand_computed_with_temperature() -> None:
    # z_t / T = (1, 0), z_s / T = (0, 0): KL = sum p log(2 p), times T^2 = 4.
    z_t = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    z_s = torch.zeros(1, 2, dtype=torch.float64)
    p = [math.e / (1 + math.e), 1 / (1 + math.e)]
    expected = 4.0 * sum(q * math.log(2 * q) for q in p)
    assert kd_loss(z_s, z_t, T=2.0).item() == pytest.approx(expected, rel=1e-12)


def test_kd_multilabel_hand_computed_mean_over_labels() -> None:
    # Label 0: z_t / T = 1 vs z_s / T = 0; label 1: identical (KL 0). Mean over 2 labels, * T^2.
    z_t = torch.tensor([[2.0, -6.0]], dtype=torch.float64)
    z_s = torch.tensor([[0.0, -6.0]], dtype=torch.float64)
    q = 1 / (1 + math.exp(-1))
    binary_kl = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    expected = 4.0 * binary_kl / 2
    got = kd_loss(z_s, z_t, T=2.0, multilabel=True)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_kd_matches_torch_kl_div() -> None:
    z_s, z_t = _features(6, seed=30, scale=2.0), _features(6, seed=31, scale=2.0)
    T = 3.0
    ref = (
        F.kl_div(F.log_softmax(z_s / T, dim=1), F.softmax(z_t / T, dim=1), reduction="batchmean")
        * T**2
    )
    torch.testing.assert_close(kd_loss(z_s, z_t, T=T), ref)
    torch.testing.assert_close(kd_loss(z_s, z_t, T=T, reduction="sum"), ref * NUM_NODES)


def test_kd_multilabel_stable_for_saturated_logits() -> None:
    z_t = torch.tensor([[200.0, -200.0]])
    z_s = torch.tensor([[-200.0, 200.0]], requires_grad=True)
    loss = kd_loss(z_s, z_t, multilabel=True)
    loss.backward()
    # Each label: p_t = 1, log q = logsigmoid(-200) = -200, so KL = 200; the mean is 200 too.
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0, rel=1e-4)
    assert z_s.grad is not None and torch.isfinite(z_s.grad).all()


def test_kd_teacher_detached_and_errors() -> None:
    z_s = _features(3, seed=32).requires_grad_()
    z_t = _features(3, seed=33).requires_grad_()
    kd_loss(z_s, z_t, T=2.0).backward()
    assert z_s.grad is not None and z_t.grad is None
    with pytest.raises(ValueError, match="T must be > 0"):
        kd_loss(z_s, z_t, T=0.0)
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(z_s, z_t[:, :2])
    with pytest.raises(ValueError, match="unknown reduction"):
        kd_loss(z_s, z_t, reduction="batchmean")


# --------------------------------------------------------------------------------------------
# task_loss


def test_task_loss_matches_torch() -> None:
    z = _features(3, seed=40)
    y = torch.tensor([0, 2, 1, 1])
    torch.testing.assert_close(task_loss(z, y, multilabel=False), F.cross_entropy(z, y))
    y_multi = (z > 0).double()
    y_multi[0] = 1 - y_multi[0]
    torch.testing.assert_close(
        task_loss(z, y_multi, multilabel=True), F.binary_cross_entropy_with_logits(z, y_multi)
    )
    # Hand value: one node, one label, logit 0, target 1 -> log 2.
    got = task_loss(torch.zeros(1, 1), torch.ones(1, 1), multilabel=True)
    assert got.item() == pytest.approx(math.log(2))


def test_task_loss_errors() -> None:
    z = _features(3, seed=41)
    with pytest.raises(ValueError, match="single-label targets"):
        task_loss(z, torch.zeros(4, 3, dtype=torch.long), multilabel=False)
    with pytest.raises(ValueError, match="multi-label targets"):
        task_loss(z, torch.zeros(4), multilabel=True)


# --------------------------------------------------------------------------------------------
# fitnet_loss and at_loss


def test_fitnet_zero_when_projection_matches() -> None:
    h_s = _features(3, seed=50)
    proj = torch.nn.Linear(3, 5).double()
    with torch.no_grad():
        h_t = proj(h_s)
    assert fitnet_loss(h_s, h_t, proj).item() == pytest.approx(0.0, abs=1e-15)


def test_fitnet_value_and_gradient() -> None:
    h_s = torch.zeros(NUM_NODES, 2, requires_grad=True)
    h_t = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0]], requires_grad=True)
    per_node = fitnet_loss(h_s, h_t, reduction="none")
    torch.testing.assert_close(per_node, torch.tensor([1.0, 2.0, 0.0, 4.5]))
    fitnet_loss(h_s, h_t).backward()
    assert h_s.grad is not None and h_t.grad is None
    with pytest.raises(ValueError, match="proj"):
        fitnet_loss(h_s, torch.zeros(NUM_NODES, 3))


def test_at_scale_invariant_and_positive_otherwise() -> None:
    h_t = _features(5, seed=60)
    assert at_loss(-3.0 * h_t, h_t).item() == pytest.approx(0.0, abs=1e-12)
    h_s = _features(2, seed=61)  # widths may differ
    per_node = at_loss(h_s, h_t, reduction="none")
    assert at_loss(h_s, h_t).item() > 0
    # mean of the per-node values is the squared L2 distance of the normalised maps
    a_s = h_s.pow(2).sum(1)
    a_t = h_t.pow(2).sum(1)
    expected = (a_s / a_s.norm() - a_t / a_t.norm()).pow(2).sum()
    torch.testing.assert_close(per_node.mean(), expected)


@pytest.mark.parametrize("kernel_scale", [100.0, 3.0, "auto"])
def test_lsp_target_loss_is_lsp_with_the_teacher_half_given(kernel_scale) -> None:
    h_s = _features(3, seed=80, scale=5.0)
    h_t = _features(5, seed=81, scale=5.0)
    edge_index, log_p_t = local_structure(h_t, EDGE_INDEX, "l1")
    per_node = lsp_target_loss(h_s, log_p_t, edge_index, "l1", kernel_scale, reduction="none")
    scale = median_edge_distance(h_s, edge_index) if kernel_scale == "auto" else kernel_scale
    expected = structure_kl(log_p_t, local_structure(h_s, EDGE_INDEX, "l1", scale=scale)[1],
                            edge_index, NUM_NODES, reduction="none")
    assert per_node.shape == (NUM_NODES,)
    torch.testing.assert_close(per_node, expected)
    if kernel_scale == 100.0:
        torch.testing.assert_close(per_node, lsp_loss(h_s, h_t, EDGE_INDEX, reduction="none"))


def test_lsp_target_loss_gives_nodes_without_in_edges_zero() -> None:
    # A sampled batch: the student has rows for the seeds' neighbours, the edges end at seeds.
    h_s = _features(3, seed=82)
    edge_index, log_p_t = local_structure(_features(3, seed=83), EDGE_INDEX, "rbf")
    seeds = edge_index[1] < 2
    per_node = lsp_target_loss(h_s, log_p_t[seeds], edge_index[:, seeds], "rbf", 1.0,
                               reduction="none")
    assert per_node.shape == (NUM_NODES,) and per_node[2:].eq(0).all()
    assert per_node[:2].gt(0).all()


@pytest.mark.parametrize("kernel", ["l1", "rbf", "poly"])
def test_lsp_gradcheck(kernel: str) -> None:
    scale = 20.0 if kernel == "l1" else 1.0
    h_s = _features(3, seed=70, scale=scale).requires_grad_()
    h_t = _features(3, seed=71, scale=scale)
    assert torch.autograd.gradcheck(lambda h: lsp_loss(h, h_t, EDGE_INDEX, kernel=kernel), (h_s,))


# --------------------------------------------------------------------------------------------
# edge_kernel: the chunked, recomputing per-edge kernel behind the student side of LSP


def _cosine_kernel(x_j: Tensor, x_i: Tensor, params: KernelParams) -> Tensor:
    return F.cosine_similarity(x_j, x_i, dim=-1)


# Every built-in kernel (each with its written-out gradient) and a user's callable (autograd).
@pytest.mark.parametrize("kernel", [*KERNELS, "user"])
def test_edge_kernel_equals_the_plain_gather(kernel: str) -> None:
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(30, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    src, dst = torch.randint(0, 30, (2, 200), generator=gen)
    params = KernelParams(scale=3.0, sigma=2.0, c=0.5, d=3)
    fn = _cosine_kernel if kernel == "user" else KERNELS[kernel]
    want = fn(h[src], h[dst], params)
    upstream = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    (want_grad,) = torch.autograd.grad(want, h, upstream)
    for chunk in (1, 17, 1000):  # one edge per chunk, a ragged last chunk, a single chunk
        got = edge_kernel(h, src, dst, fn, params, chunk=chunk)
        (got_grad,) = torch.autograd.grad(got, h, upstream)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_grad, want_grad)
    assert torch.autograd.gradcheck(lambda x: edge_kernel(x, src, dst, fn, params, chunk=13), (h,))


def test_lsp_keeps_no_per_edge_feature_tensor_for_backward() -> None:
    gen = torch.Generator().manual_seed(4)
    n, width, e = 50, 16, 400
    h_s = torch.randn(n, width, generator=gen, requires_grad=True)
    h_t = torch.randn(n, 5, generator=gen)
    ei = torch.randint(0, n, (2, e), generator=gen)
    saved: list[tuple[int, ...]] = []

    def keep(t: Tensor) -> Tensor:
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss = lsp_loss(h_s, h_t, ei)
    loss.backward()
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0
    # Saved for backward: node-sized tensors and per-edge scalars, never [E', width] rows.
    assert not [s for s in saved if len(s) == 2 and s[1] == width and s[0] != n]


def test_median_edge_distance_and_kernel_divisor() -> None:
    from mskd.losses import kernel_divisor, median_edge_distance

    h = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 3.0], [5.0, 5.0]])
    # Edges 0->1 (1), 1->2 (3), 2->3 (6) and a self loop 3->3 that must not count.
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 3]])
    assert median_edge_distance(h, ei) == 3.0
    assert kernel_divisor("auto", h, ei) == 3.0 and kernel_divisor(100.0, h, ei) == 100.0
    assert median_edge_distance(h, torch.tensor([[2], [2]])) == 1.0  # only self loops


def test_median_scale_keeps_neighbours_distinguishable_where_100_flattens_them() -> None:
    from mskd.losses import kernel_divisor, local_structure

    gen = torch.Generator().manual_seed(0)
    h = torch.randn(40, 16, generator=gen) * 0.1  # L1 distances around 1, as on Cora
    ei = torch.randint(0, 40, (2, 200), generator=gen)
    for scale, flat in ((100.0, True), (kernel_divisor("auto", h, ei), False)):
        loops, log_p = local_structure(h, ei, scale=scale)
        deg = torch.bincount(loops[1], minlength=40).float()
        # Largest gap between an edge's probability and the uniform 1/deg of its target node.
        gap = float((log_p.exp() - 1 / deg[loops[1]]).abs().max())
        assert (gap < 0.01) if flat else (gap > 0.05), (scale, gap)
