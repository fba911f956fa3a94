"""The student loop: methods, teacher cache, frozen teachers, layer matching, schedules."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from mskd.config import DistillConfig, ModelConfig, TrainConfig
from mskd.data import MULTI, SINGLE, GraphDataset
from mskd.distill import METHODS, Method, Objective, Term, faithful, matched_layers
from mskd.losses import _check_reduction, _reduce, task_loss
from mskd.models import GNN, count_parameters
from mskd.selection import calibration_temperatures
from mskd.targets import TeacherView
from mskd.teachers import TrainedModel
from mskd.train import Step, fit, seed_everything

SMALL = ModelConfig(arch="gat", hidden=4, heads=2, dropout=0.0, attn_dropout=0.0, residual=True)


def _graph(n: int = 40, classes: int = 3, feats: int = 6, seed: int = 0, multilabel=False):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, feats, generator=gen) + torch.nn.functional.one_hot(y, feats).float() * 2
    src = torch.randint(0, n, (3 * n,), generator=gen)
    dst = torch.where(torch.rand(3 * n, generator=gen) < 0.7, src, torch.randint(0, n, (3 * n,),
                                                                                 generator=gen))
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    if multilabel:
        y = torch.nn.functional.one_hot(y, classes).float()
    return x, ei, y


def _dataset(multilabel: bool = False, graphs: int = 1) -> GraphDataset:
    if graphs == 1:
        x, ei, y = _graph(multilabel=multilabel)
        n = x.shape[0]
        masks = [torch.arange(n) % 5 < 3, torch.arange(n) % 5 == 3, torch.arange(n) % 5 == 4]
        splits = {s: [Data(x=x, edge_index=ei, y=y, mask=m, gid=0)]
                  for s, m in zip(("train", "val", "test"), masks)}
        return GraphDataset("toy", MULTI if multilabel else SINGLE, x.shape[1], 3, splits, True)
    splits = {}
    for s, count in (("train", graphs), ("val", 1), ("test", 1)):
        gs = []
        for i in range(count):
            x, ei, y = _graph(n=20 + 3 * i, seed=10 * i + len(s), multilabel=multilabel)
            gs.append(Data(x=x, edge_index=ei, y=y, mask=torch.ones(x.shape[0], dtype=torch.bool),
                           gid=i))
        splits[s] = gs
    return GraphDataset("toy-ind", MULTI if multilabel else SINGLE, 6, 3, splits, False)


def _teachers(data: GraphDataset, depths=(1, 2, 3)) -> list[TrainedModel]:
    out = []
    for d in depths:
        seed_everything(d)
        cfg = dataclasses.replace(SMALL, hidden_layers=d)
        m = GNN(data.num_features, data.num_classes, cfg).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        out.append(TrainedModel(f"teacher-{d}", m, cfg, count_parameters(m), 0.0, 0.0, 0, 0.0))
    return out


def _student(data: GraphDataset, layers: int = 2) -> GNN:
    seed_everything(0)
    return GNN(data.num_features, data.num_classes, dataclasses.replace(SMALL, hidden_layers=layers))


@torch.no_grad()
def _objective(obj: Objective, student: GNN, data: GraphDataset, g, epoch: int) -> float:
    """What fit minimises at ``epoch``: the task loss on the training nodes plus every term at
    its weight."""
    logits, hidden = student(g.x, g.edge_index)
    step = Step(logits, hidden, g, epoch)
    total = task_loss(logits[g.mask], g.y[g.mask], data.multilabel).item()
    return total + sum(t.weight_at(epoch) * t.fn(step).item() for t in obj.terms())


def _loss_values(obj: Objective, student: GNN, g, epoch: int = 1) -> dict[str, float]:
    logits, hidden = student(g.x, g.edge_index)
    step = Step(logits, hidden, g, epoch)
    return {t.name: t.fn(step).item() for t in obj.terms()}


def test_matched_layers_spread_deeper_teachers_to_deeper_layers():
    assert matched_layers(4, 3) == [1, 2, 3]
    assert matched_layers(2, 3) == [0, 1, 1]
    assert matched_layers(1, 3) == [0, 0, 0]
    assert matched_layers(4, 3, (2,)) == [2, 2, 2]
    assert matched_layers(4, 3, (0, 1, 3)) == [0, 1, 3]


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("graphs", [1, 3])
def test_teacher_cache_gives_identical_losses(multilabel, graphs):
    data = _dataset(multilabel, graphs)
    teachers = _teachers(data)
    cfg = DistillConfig(method="mskd", beta=1.0, gamma=1.0)
    student = _student(data)
    cached = Objective(cfg, data, teachers, student, teacher_cache=True)
    fresh = Objective(cfg, data, teachers, student, teacher_cache=False)
    if graphs == 1:
        g = data.splits["train"][0]
    else:
        from torch_geometric.data import Batch
        g = Batch.from_data_list([data.splits["train"][2], data.splits["train"][0]])
    a, b = _loss_values(cached, student, g), _loss_values(fresh, student, g)
    assert set(a) == {"lsp", "kd"}
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-8)
        assert a[k] > 0


def test_gradients_reach_only_the_student():
    data = _dataset()
    teachers = _teachers(data)
    before = [{k: v.clone() for k, v in t.model.state_dict().items()} for t in teachers]
    student = _student(data)
    obj = Objective(DistillConfig(method="mskd"), data, teachers, student)
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    fit(student, data, TrainConfig(epochs=3, patience=10), terms=obj.terms(), quiet=True)
    for t, b in zip(teachers, before):
        for k, v in t.model.state_dict().items():
            assert torch.equal(v, b[k]), f"{t.name}.{k} changed"
        assert all(p.grad is None for p in t.model.parameters())
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, s_before[k])]
    assert changed, "the student did not train"


def test_single_teacher_methods_pick_the_requested_teacher():
    data = _dataset()
    teachers = _teachers(data)
    student = _student(data, layers=3)
    obj = Objective(DistillConfig(method="lsp", teacher_layers=2), data, teachers, student)
    assert [t.layers for t in obj.teachers] == [2]
    assert obj.layers == [matched_layers(3, 3)[1]]
    deepest = Objective(DistillConfig(method="kd"), data, teachers, student)
    assert [t.layers for t in deepest.teachers] == [3]
    none = Objective(DistillConfig(method="none"), data, teachers, student)
    assert none.teachers == [] and none.terms() == []


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_builds_its_terms_and_trains(method):
    data = _dataset()
    teachers = _teachers(data)
    student = _student(data)
    obj = Objective(DistillConfig(method=method), data, teachers, student)
    names = {t.name for t in obj.terms()}
    expected = {t.name for t in METHODS[method].terms}
    assert names == expected
    epochs = 15
    g = data.splits["train"][0]
    untrained = _objective(obj, student, data, g, epochs)
    res = fit(student, data, TrainConfig(epochs=epochs, patience=epochs), terms=obj.terms(),
              extra_modules=obj.extra_modules, quiet=True, seed=0)
    assert {h["epoch"] for h in res.history} == set(range(1, epochs + 1))
    assert all(name in res.history[-1] for name in expected)
    # The kept (best-validation) weights have a clearly lower objective than the untrained
    # student's, weighed alike: the terms reach the weights and the loop descends on them.
    trained = _objective(obj, student, data, g, epochs)
    assert trained < 0.95 * untrained, (untrained, trained)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registered_term_is_a_documented_loss_of_mskd_losses(method):
    settings = {f.name for f in dataclasses.fields(DistillConfig)} | {"multilabel"}
    for term in METHODS[method].terms:
        assert term.loss.__module__ == "mskd.losses" and "Shapes:" in term.loss.__doc__
        params = inspect.signature(term.loss).parameters
        assert "reduction" in params and set(term.options) <= set(params)
        assert set(term.options.values()) <= settings and term.weight in settings
        assert term.student in ("logits", "hidden")
        assert term.teacher in ("logits", "hidden", "structure")
        assert term.extra is None or "proj" in params


def test_objective_takes_its_teacher_targets_and_module_wrapper_from_the_caller():
    data = _dataset()
    teachers = _teachers(data)
    served, wrapped = [], []

    def targets(used, kernel):
        served.append(([t.name for t in used], kernel))

        def serve(g):
            views = []
            for t in used:
                z, hidden = t.model(g.x, g.edge_index)
                views.append(TeacherView(z, hidden[-1]))
            return views
        return serve

    def wrap(module):
        wrapped.append(module)
        return module

    obj = Objective(DistillConfig(method="fitnet", teacher_layers=2), data, teachers,
                    _student(data), targets=targets, wrap=wrap)
    assert served == [(["teacher-2"], None)]
    assert wrapped == obj.extra_modules and len(wrapped) == 1
    assert isinstance(wrapped[0], nn.Linear) and wrapped[0].out_features == teachers[1].cfg.width
    g = data.splits["train"][0]
    assert _loss_values(obj, _student(data), g)["fitnet"] > 0
    lsp = Objective(DistillConfig(method="mskd", kernel="rbf"), data, teachers, _student(data),
                    targets=targets)
    assert served[-1] == (["teacher-1", "teacher-2", "teacher-3"], "rbf")
    assert lsp.extra_modules == []


# The worked example of docs/method.md, "Adding a method", as written there: a cosine hint
# through a learned projection. Its loss would go to mskd/losses.py, its entry to METHODS.
def cosine_hint_loss(h_student: Tensor, h_teacher: Tensor,
                     proj: Callable[[Tensor], Tensor] | None = None,
                     reduction: str = "mean") -> Tensor:
    """Cosine hint: ``1 - cos(proj(h_s)[v], h_t[v])`` per node.

    Shapes:
        h_student: [N, Fs], h_teacher: [N, Ft] -> scalar, or [N] for ``reduction="none"``
    """
    _check_reduction(reduction)
    hint = h_student if proj is None else proj(h_student)
    per_node = 1 - F.cosine_similarity(hint, h_teacher.detach(), dim=1)
    return _reduce(per_node, reduction)


COSINE = Term("cosine", cosine_hint_loss, student="hidden", teacher="hidden", weight="beta",
              warmup_only=True, extra=nn.Linear)


@pytest.mark.parametrize("entry", [Method("one", (COSINE,)),
                                   Method("all", (COSINE, METHODS["mskd"].terms[1]))])
def test_a_new_method_is_one_registry_entry(entry, monkeypatch):
    monkeypatch.setitem(METHODS, "cosine", entry)
    data = _dataset()
    teachers = _teachers(data)
    student = _student(data)
    obj = Objective(DistillConfig(method="cosine"), data, teachers, student)
    assert [t.name for t in obj.terms()] == [t.name for t in entry.terms]
    assert [(m.in_features, m.out_features) for m in obj.extra_modules] == [
        (student.cfg.width, t.cfg.width) for t in obj.teachers]
    g = data.splits["train"][0]
    untrained = _objective(obj, student, data, g, 10)
    projections = [m.weight.detach().clone() for m in obj.extra_modules]
    fit(student, data, TrainConfig(epochs=10, patience=10), terms=obj.terms(),
        extra_modules=obj.extra_modules, quiet=True)
    assert _objective(obj, student, data, g, 10) < 0.95 * untrained
    # The projections train with the student.
    assert all(not torch.equal(m.weight, p) for m, p in zip(obj.extra_modules, projections))


def test_uniform_method_weights_every_teacher_equally():
    data = _dataset()
    obj = Objective(DistillConfig(method="uniform"), data, _teachers(data), _student(data))
    g = data.splits["train"][0]
    _loss_values(obj, _student(data), g)
    assert obj.mean_attention() == pytest.approx([1 / 3] * 3)


def test_sequential_schedule_uses_one_teacher_per_phase_and_lsp_only_in_warmup():
    data = _dataset()
    cfg = DistillConfig(method="mskd", schedule="sequential", phase_epochs=4, lsp_warmup=2)
    student = _student(data)
    obj = Objective(cfg, data, _teachers(data), student)
    assert obj.train_config(TrainConfig(epochs=1, patience=1)).epochs == 12
    lsp = next(t for t in obj.terms() if t.name == "lsp")
    assert [lsp.weight_at(e) for e in range(1, 9)] == [1, 1, 0, 0, 1, 1, 0, 0]
    g = data.splits["train"][0]
    for epoch, teacher in ((1, 0), (5, 1), (9, 2), (12, 2)):
        obj.attention_log.clear()
        _loss_values(obj, student, g, epoch)
        expected = [0.0, 0.0, 0.0]
        expected[teacher] = 1.0
        assert obj.mean_attention() == pytest.approx(expected)


def test_faithful_preset_is_the_authors_code():
    f = faithful(DistillConfig())
    assert (f.schedule, f.attention, f.gamma, f.kernel, f.faithful) == (
        "sequential", "global", 0.0, "l1_code", True)
    data = _dataset()
    student = _student(data)
    obj = Objective(f, data, _teachers(data), student)
    assert [t.name for t in obj.terms()] == ["lsp"]  # logit KD never reaches the loss
    g = data.splits["train"][0]
    _loss_values(obj, student, g, 1)
    frozen = obj._frozen_weights.clone()
    # Global weights are computed once (untrained student) and then kept.
    _loss_values(obj, _student(data, layers=2), g, 2)
    assert torch.equal(obj._frozen_weights, frozen)
    assert float(frozen.sum()) == pytest.approx(f.lam, rel=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_an_mlp_student_trains_with_every_method(method):
    # The graph-free student: the structure terms still reach its weights through the edges.
    data = _dataset()
    seed_everything(0)
    student = GNN(data.num_features, data.num_classes,
                  dataclasses.replace(SMALL, arch="mlp", hidden_layers=2))
    obj = Objective(DistillConfig(method=method), data, _teachers(data), student)
    g = data.splits["train"][0]
    logits, hidden = student(g.x, g.edge_index)
    step = Step(logits, hidden, g, 1)
    for term in obj.terms():
        student.zero_grad()
        term.fn(step).backward(retain_graph=True)
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert grads and any(gr.abs().sum() > 0 for gr in grads), term.name
    before = {k: v.clone() for k, v in student.state_dict().items()}
    fit(student, data, TrainConfig(epochs=2, patience=5), terms=obj.terms(),
        extra_modules=obj.extra_modules, quiet=True)
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_an_mlp_student_ignores_the_edges_at_inference():
    data = _dataset()
    g = data.splits["train"][0]
    student = GNN(data.num_features, data.num_classes,
                  dataclasses.replace(SMALL, arch="mlp", residual=True)).eval()
    z, hidden = student(g.x, g.edge_index)
    z_none, _ = student(g.x, g.edge_index[:, :0])
    assert torch.equal(z, z_none)
    assert [h.shape[1] for h in hidden] == [SMALL.hidden * SMALL.heads] * SMALL.hidden_layers
    torch.testing.assert_close(student.layerwise(g.x, g.edge_index, chunk_size=7)[0], z)


def test_calibrated_method_averages_teachers_divided_by_their_own_temperatures():
    data = _dataset()
    teachers = _teachers(data)
    student = _student(data)
    obj = Objective(DistillConfig(method="calibrated"), data, teachers, student, seed=4)
    g = data.splits["train"][0]
    logits, hidden = student(g.x, g.edge_index)
    outs, w = obj._shared(Step(logits, hidden, g, 1))
    z = torch.stack([t.model(g.x, g.edge_index)[0] for t in teachers])
    temps = calibration_temperatures(z, g.y, data.splits["val"][0].mask, False, seed=4)
    for k, o in enumerate(outs):
        torch.testing.assert_close(o.logits, z[k] / temps[:, k:k + 1])
    torch.testing.assert_close(w, torch.full_like(w, 1 / 3))
    # A term's gradient reaches the student through the calibrated targets.
    for term in obj.terms():
        student.zero_grad()
        term.fn(Step(*student(g.x, g.edge_index), g, 1)).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
