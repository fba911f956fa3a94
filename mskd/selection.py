"""Teacher selection from the frozen teachers' side: per-node weights over K teachers that do not
depend on the student, so they are computed once (``docs/method.md``, "Teacher selection").

The student-side attention of the paper (:mod:`mskd.attention`, ``node``) compares the student's
logits with each teacher's and, at a useful temperature, stays close to uniform. The modes here
look at what the teachers themselves offer instead:

- ``confidence``: each teacher's certainty on the node (one minus its normalised entropy),
  ``a[v, k] = softmax_k(c_k(v) / tau)``. Needs no labels.
- ``degree``: per in-degree bucket, ``softmax_k(mean log-likelihood of teacher k on labelled
  validation nodes of the bucket / tau)``.
- ``gate``: a linear gate over per-node teacher-side features (:func:`gate_features`) whose
  softmax weights the teachers' probabilities; trained to maximise the likelihood of the
  weighted ensemble on labelled validation nodes.

The two fitted modes use validation labels, so they are **cross-fitted** to keep model selection
honest: the validation nodes are split in two folds by a seeded permutation, each fold fits its
own weights, a validation node gets the weights fitted on the *other* fold, and every other node
the mean of the two fits. No validation node's weights ever come from its own label.

Also here: the ensembles of the headroom analysis (:func:`ensemble`, :func:`oracle`,
:func:`calibrated_uniform`), which score what the teachers alone could give a student.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .evaluate import in_degree, quantile_buckets

MODES = ("confidence", "degree", "gate")
FITTED = ("degree", "gate")
# Not a weighting: uniform weights over teachers whose logits are first divided by their own
# fitted temperatures (calibration_temperatures), fitted on validation labels like FITTED.
CALIBRATED = "calibrated"
DEGREE_BUCKETS = 4
GATE_STEPS = 200
GATE_LR = 0.05
GATE_WEIGHT_DECAY = 1e-3
_EPS = 1e-6


def probabilities(z: Tensor, multilabel: bool) -> Tensor:
    """Class (softmax) or label (sigmoid) probabilities of logits ``z`` ([..., C])."""
    return torch.sigmoid(z) if multilabel else torch.softmax(z, dim=-1)


def certainty(z_teachers: Tensor, multilabel: bool) -> Tensor:
    """One minus the normalised entropy of each teacher's prediction, in [0, 1].

    Single-label: ``1 - H(p) / log C``; multi-label: one minus the mean binary entropy over labels
    divided by ``log 2``.

    Shapes:
        z_teachers: [K, N, C] -> [N, K]
    """
    p = probabilities(z_teachers, multilabel).clamp(_EPS, 1 - _EPS)
    if multilabel:
        h = -(p * p.log() + (1 - p) * (1 - p).log()).mean(dim=-1) / math.log(2)
    else:
        h = -(p * p.log()).sum(dim=-1) / math.log(max(2, z_teachers.shape[-1]))
    return (1 - h).t()


def confidence_weights(z_teachers: Tensor, tau: float, multilabel: bool) -> Tensor:
    """``softmax_k(certainty_k(v) / tau)``.

    Shapes:
        z_teachers: [K, N, C] -> [N, K] (rows sum to 1)
    """
    return torch.softmax(certainty(z_teachers, multilabel) / tau, dim=1)


def log_likelihood(z_teachers: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    """Each teacher's log-probability of the true label(s) (mean over labels for multi-label).

    Shapes:
        z_teachers: [K, M, C], y: [M] (class ids) or [M, C] (0/1) -> [M, K]
    """
    if multilabel:
        yk = y.to(z_teachers.dtype).expand_as(z_teachers)
        return -F.binary_cross_entropy_with_logits(z_teachers, yk, reduction="none").mean(-1).t()
    logp = torch.log_softmax(z_teachers, dim=-1)
    return logp.gather(-1, y.view(1, -1, 1).expand(z_teachers.shape[0], -1, 1)).squeeze(-1).t()


def ensemble(z_teachers: Tensor, weights: Tensor, multilabel: bool) -> Tensor:
    """Logits of the weighted average of the teachers' probabilities (what a student distilled
    with these weights is pulled towards). For single-label tasks the log of the mixture, for
    multi-label its per-label log-odds, so that :func:`mskd.evaluate.score` applies.

    Shapes:
        z_teachers: [K, N, C], weights: [N, K] or [K] -> [N, C]
    """
    w = weights if weights.ndim == 2 else weights.expand(z_teachers.shape[1], -1)
    p = (w.t().unsqueeze(-1) * probabilities(z_teachers, multilabel)).sum(dim=0)
    p = p.clamp(_EPS, 1 - _EPS)
    return (p.log() - (1 - p).log()) if multilabel else p.log()


def oracle(z_teachers: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    """Logits of an oracle that, per node (per node and label for multi-label), takes a teacher
    that is right when any is: the ceiling of per-node teacher selection.

    Shapes:
        z_teachers: [K, N, C], y: [N] or [N, C] -> [N, C]
    """
    if multilabel:
        right = (z_teachers > 0) == y.bool().unsqueeze(0)  # [K, N, C]
        pick = right.to(torch.int8).argmax(dim=0)  # the first right teacher, else teacher 0
        return z_teachers.gather(0, pick.unsqueeze(0)).squeeze(0)
    right = z_teachers.argmax(dim=-1) == y.unsqueeze(0)  # [K, N]
    pick = right.to(torch.int8).argmax(dim=0)
    return z_teachers[pick, torch.arange(z_teachers.shape[1], device=z_teachers.device)]


# --- fitted modes --------------------------------------------------------------------------------


def folds(n: int, seed: int) -> Tensor:
    """Fold (0 or 1) of each of ``n`` labelled nodes, from a seeded permutation (halves)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fold = torch.zeros(n, dtype=torch.long)
    fold[perm[n // 2:]] = 1
    return fold


def degree_cuts(val_degrees: Tensor, n_buckets: int = DEGREE_BUCKETS) -> Tensor:
    """Lower degree bounds of buckets 1..B-1 from quantiles of the validation nodes' degrees
    (:func:`mskd.evaluate.quantile_buckets`); bucket of degree d = number of cuts <= d."""
    _, bounds = quantile_buckets(val_degrees, n_buckets)
    return torch.tensor([lo for lo, _ in bounds[1:]], dtype=torch.long)


def fit_degree(ll: Tensor, bucket: Tensor, n_buckets: int, tau: float
               ) -> Callable[[Tensor], Tensor]:
    """Per-bucket weights ``softmax_k(mean ll[:, k] over the bucket / tau)``; an empty bucket
    gets uniform weights. Returns ``bucket ids [N] -> [N, K]``.

    Shapes:
        ll: [M, K] log-likelihoods of the fitting nodes, bucket: [M]
    """
    k = ll.shape[1]
    table = torch.zeros(n_buckets, k, dtype=ll.dtype)
    for b in range(n_buckets):
        sel = bucket == b
        if bool(sel.any()):
            table[b] = ll[sel].mean(dim=0) / tau
    table = torch.softmax(table, dim=1)
    return lambda buckets: table[buckets]


def gate_features(z_teachers: Tensor, edge_index: Tensor, y: Tensor, labelled: Tensor,
                  multilabel: bool) -> Tensor:
    """Per-node features a gate can see without the node's own label.

    Columns: ``log(1 + in-degree)``; per teacher, its certainty (:func:`certainty`); per
    teacher, the share of the other teachers that agree with its prediction; per teacher, the
    share of the node's in-neighbours with a known label (``labelled``, the training nodes) whose
    label equals that teacher's prediction for the node (0 without such neighbours); and whether
    the node has such a neighbour.

    Shapes:
        z_teachers: [K, N, C], edge_index: [2, E], y: [N] or [N, C], labelled: [N] bool
        -> [N, 1 + 3K + 1]
    """
    k, n, _ = z_teachers.shape
    src, dst = edge_index.cpu()
    keep = (src != dst) & labelled.cpu()[src]
    src, dst = src[keep], dst[keep]
    has = torch.zeros(n).index_add_(0, dst, torch.ones(dst.numel())).clamp(max=1)
    count = torch.zeros(n).index_add_(0, dst, torch.ones(dst.numel())).clamp(min=1)
    if multilabel:
        pred = (z_teachers > 0).cpu()  # [K, N, C]
        agree = torch.stack([(pred[i].unsqueeze(0) == pred).float().mean(-1).sum(0) - 1
                             for i in range(k)])
        nb = torch.stack([torch.zeros(n).index_add_(
            0, dst, (pred[i][dst] == y.cpu()[src].bool()).float().mean(-1)) / count
            for i in range(k)])
    else:
        pred = z_teachers.argmax(-1).cpu()  # [K, N]
        agree = torch.stack([(pred[i].unsqueeze(0) == pred).float().sum(0) - 1 for i in range(k)])
        nb = torch.stack([torch.zeros(n).index_add_(
            0, dst, (pred[i][dst] == y.cpu()[src]).float()) / count for i in range(k)])
    agree = agree / max(1, k - 1)
    deg = in_degree(edge_index, n).float().log1p()
    cert = certainty(z_teachers, multilabel).cpu()
    return torch.cat([deg[:, None], cert, agree.t(), nb.t(), has[:, None]], dim=1)


def fit_gate(features: Tensor, z_teachers: Tensor, y: Tensor, multilabel: bool, seed: int
             ) -> Callable[[Tensor], Tensor]:
    """A linear gate ``softmax(W standardise(f) + b)`` over teachers, fitted by full-batch Adam
    (:data:`GATE_STEPS` steps, lr :data:`GATE_LR`, weight decay :data:`GATE_WEIGHT_DECAY`) to
    minimise the negative log-likelihood of the gated ensemble on the fitting nodes. Starts at
    uniform weights (W = 0, b = 0). Returns ``features [N, F] -> [N, K]``.

    Shapes:
        features: [M, F], z_teachers: [K, M, C], y: [M] or [M, C]
    """
    k = z_teachers.shape[0]
    mu, sd = features.mean(0), features.std(0, unbiased=False).clamp(min=1e-3)
    x = (features - mu) / sd
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = torch.nn.Linear(x.shape[1], k)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.Adam(lin.parameters(), lr=GATE_LR, weight_decay=GATE_WEIGHT_DECAY)
    p = probabilities(z_teachers.detach().cpu(), multilabel)  # [K, M, C]
    yc = y.cpu()
    with torch.enable_grad():  # callers compute the rest of the weights under no_grad
        for _ in range(GATE_STEPS):
            w = torch.softmax(lin(x), dim=1)  # [M, K]
            mix = (w.t().unsqueeze(-1) * p).sum(0).clamp(_EPS, 1 - _EPS)
            if multilabel:
                loss = F.binary_cross_entropy(mix, yc.to(mix.dtype))
            else:
                loss = F.nll_loss(mix.log(), yc)
            opt.zero_grad()
            loss.backward()
            opt.step()
    lin.requires_grad_(False)
    return lambda f: torch.softmax(lin((f - mu) / sd), dim=1)


def cross_fit(fit: Callable[[Tensor], Callable[[Tensor], Tensor]], side: Tensor, val: Tensor,
              seed: int) -> Tensor:
    """Cross-fitted weights for every node (module docstring).

    ``fit(idx)`` fits on the validation nodes ``val[idx]`` and returns ``side -> weights``;
    ``side`` is what that function reads per node ([N] bucket ids or [N, F] features).

    Shapes:
        side: [N, ...], val: [M] node ids -> [N, K]
    """
    fold = folds(val.numel(), seed)
    fitted = [fit((fold == f).nonzero().view(-1)) for f in (0, 1)]
    w0, w1 = fitted[0](side), fitted[1](side)
    out = (w0 + w1) / 2
    out[val[fold == 0]] = w1[val[fold == 0]]
    out[val[fold == 1]] = w0[val[fold == 1]]
    return out


# Temperatures tried per teacher by :func:`fit_temperature`: the citation-graph GAT teachers
# (dropout 0.6) are under-confident, so the grid reaches well below 1.
TEMPERATURES = torch.logspace(-2, 1, 61)


def fit_temperature(z: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    """The temperature T of :data:`TEMPERATURES` under which ``z / T`` gives the labels ``y``
    the highest mean log-likelihood: one teacher's temperature scaling (Guo et al., ICML 2017).

    Shapes:
        z: [M, C], y: [M] or [M, C] -> [] (a scalar tensor)
    """
    ll = torch.stack([log_likelihood((z / t).unsqueeze(0), y, multilabel).mean()
                      for t in TEMPERATURES])
    return TEMPERATURES[int(ll.argmax())]


def teacher_temperatures(z_teachers: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    """Each teacher's temperature (:func:`fit_temperature`) on the labelled nodes given.

    Shapes:
        z_teachers: [K, M, C], y: [M] or [M, C] -> [K]
    """
    return torch.stack([fit_temperature(zk, y, multilabel) for zk in z_teachers])


def calibration_temperatures(z_teachers: Tensor, y: Tensor, val_mask: Tensor, multilabel: bool,
                             seed: int) -> Tensor:
    """Each teacher's temperature (:func:`fit_temperature`) for every node, cross-fitted on the
    validation nodes as the fitted modes are (module docstring): a validation node gets the
    temperatures fitted on the other fold, every other node the mean of the two folds' fits.

    Shapes:
        z_teachers: [K, N, C], y: [N] or [N, C], val_mask: [N] bool -> [N, K]
    """
    z = z_teachers.detach().cpu().float()
    k, n = z.shape[:2]
    val = val_mask.cpu().nonzero().view(-1)
    if val.numel() < 2:
        raise ValueError(f"calibration needs at least 2 validation nodes, got {val.numel()}")
    yc = y.cpu()

    def fit(idx: Tensor) -> Callable[[Tensor], Tensor]:
        t = teacher_temperatures(z[:, val[idx]], yc[val[idx]], multilabel)
        return lambda side: t.expand(side.shape[0], k)

    return cross_fit(fit, torch.zeros(n), val, seed)


def calibrated_uniform(z_teachers: Tensor, y: Tensor, val_mask: Tensor, multilabel: bool,
                       seed: int) -> Tensor:
    """Logits of the uniform average of the teachers' probabilities after dividing each
    teacher's logits by its own temperature (:func:`calibration_temperatures`): whether averaging
    calibrated teachers beats averaging them as they are (the ``calibrated`` method's target).

    Shapes:
        z_teachers: [K, N, C], y: [N] or [N, C], val_mask: [N] bool -> [N, C]
    """
    z = z_teachers.detach().cpu().float()
    temps = calibration_temperatures(z, y, val_mask, multilabel, seed)
    k = z.shape[0]
    return ensemble(z / temps.t().unsqueeze(-1), torch.full((k,), 1.0 / k), multilabel)


def selection_weights(mode: str, z_teachers: Tensor, edge_index: Tensor, y: Tensor,
                      train_mask: Tensor, val_mask: Tensor, tau: float, multilabel: bool,
                      seed: int) -> Tensor:
    """Weights of ``mode`` (:data:`MODES`) for every node of one graph whose validation nodes
    (``val_mask``) are the labelled nodes the fitted modes learn from (cross-fitted).

    Shapes:
        z_teachers: [K, N, C], edge_index: [2, E], y: [N] or [N, C], masks: [N] bool -> [N, K]
    """
    z = z_teachers.detach().cpu().float()
    if mode == "confidence":
        return confidence_weights(z, tau, multilabel)
    if mode not in FITTED:
        raise ValueError(f"unknown selection mode {mode!r}; valid: {', '.join(MODES)}")
    val = val_mask.cpu().nonzero().view(-1)
    if val.numel() < 2:
        raise ValueError(f"{mode} selection needs at least 2 validation nodes, got {val.numel()}")
    yc = y.cpu()
    if mode == "degree":
        deg = in_degree(edge_index, z.shape[1])
        cuts = degree_cuts(deg[val])
        bucket = torch.searchsorted(cuts, deg, right=True)
        ll = log_likelihood(z[:, val], yc[val], multilabel)
        return cross_fit(lambda idx: fit_degree(ll[idx], bucket[val][idx], len(cuts) + 1, tau),
                         bucket, val, seed)
    feats = gate_features(z, edge_index, yc, train_mask, multilabel)
    return cross_fit(lambda idx: fit_gate(feats[val][idx], z[:, val[idx]], yc[val[idx]],
                                          multilabel, seed), feats, val, seed)
