"""Large graphs: layer-wise inference, neighbour sampling, sampled training of every method."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_distill import SMALL, _dataset, _teachers

from mskd.cli import main
from mskd.config import ConfigError, DistillConfig, ModelConfig, RunConfig, ScaleConfig, TrainConfig
from mskd.context import RunContext
from mskd.distill import METHODS, train_student
from mskd.evaluate import evaluate_split
from mskd.inference import _Chunks
from mskd.losses import local_structure
from mskd.models import GNN
from mskd.sampling import SeedBatches, SparseRows, sample_hops
from mskd.scale import CachedTeacherOutputs, check_supported, n_layers

CPU = torch.device("cpu")
QUIET = RunContext(CPU, quiet=True)


@pytest.mark.parametrize("arch", ["gat", "gcn", "sage"])
@pytest.mark.parametrize("residual", [False, True])
def test_layerwise_equals_forward(arch, residual):
    data = _dataset()
    g = data.splits["train"][0]
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden_layers=2, hidden=4, heads=2, out_heads=2,
                      residual=residual)
    model = GNN(data.num_features, data.num_classes, cfg).eval()
    z, hidden = model(g.x, g.edge_index)
    for chunk in (1, 7, 1000):
        z2, hidden2 = model.layerwise(g.x, g.edge_index, chunk_size=chunk)
        torch.testing.assert_close(z2, z, atol=1e-5, rtol=1e-5)
        for a, b in zip(hidden2, hidden):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert model.layerwise(g.x, g.edge_index, keep_hidden=False)[1] == []


def test_chunks_bound_gathered_rows_not_targets():
    # Node 0 is a hub with 9 in-edges; nodes 1..9 have one in-edge each.
    src = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9] + [0] * 9)
    dst = torch.tensor([0] * 9 + [1, 2, 3, 4, 5, 6, 7, 8, 9])
    chunks = _Chunks(torch.stack([src, dst]), 10)
    bounds = chunks.bounds(4)
    assert bounds[0] == (0, 1)  # the hub alone: 10 rows > budget, never split
    assert bounds[1:] == [(1, 3), (3, 5), (5, 7), (7, 9), (9, 10)]  # 2 targets + 2 edges each
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(10))
    for a, b in bounds:
        nodes, ei, _ = chunks.chunk(a, b)
        assert b - a == 1 or (b - a) + ei.shape[1] <= 4
        assert nodes[: b - a].tolist() == list(range(a, b))
    # Doubling every node's in-degree halves the targets per chunk: memory follows the budget.
    dense = torch.cat([torch.stack([src, dst]), torch.stack([(src + 1) % 10, dst])], dim=1)
    sizes = [b - a for a, b in _Chunks(dense, 10).bounds(12)[1:-1]]
    assert sizes and max(sizes) <= 4


def test_layerwise_leaves_the_model_unchanged(monkeypatch):
    # PyG's GAT layers run on pre-projected input by swapping in an identity map for the call
    # only (the fused layers take it directly: forward_projected).
    data = _dataset()
    g = data.splits["train"][0]
    model = GNN(data.num_features, data.num_classes, SMALL, conv="pyg").eval()
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    lins = [conv.lin for conv in model.convs]
    model.layerwise(g.x, g.edge_index, chunk_size=5)
    assert [conv.lin for conv in model.convs] == lins
    assert model.state_dict().keys() == keys.keys()
    assert all(torch.equal(v, keys[k]) for k, v in model.state_dict().items())
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.convs[0], "propagate", boom)
    with pytest.raises(RuntimeError, match="boom"):  # a failing layer still gets its map back
        model.layerwise(g.x, g.edge_index, chunk_size=5)
    assert [conv.lin for conv in model.convs] == lins


def test_layerwise_restores_training_mode():
    data = _dataset()
    g = data.splits["train"][0]
    model = GNN(data.num_features, data.num_classes, SMALL).train()
    model.layerwise(g.x, g.edge_index)
    assert model.training


def _csc(n: int, edge_index: torch.Tensor):
    order = torch.argsort(edge_index[1], stable=True)
    counts = torch.bincount(edge_index[1], minlength=n)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]), edge_index[0][order]


def test_sample_hops_keeps_fanout_real_edges_and_seeds_first():
    data = _dataset()
    g = data.splits["train"][0]
    n = g.num_nodes
    colptr, row = _csc(n, g.edge_index)
    local = torch.full((n,), -1)
    seed = torch.tensor([3, 17, 5])
    gen = torch.Generator().manual_seed(0)
    node, r, c, _ = sample_hops(colptr, row, seed, [2, 2], local, gen)
    assert torch.equal(node[:3], seed)
    assert node.unique().numel() == node.numel()
    assert bool((local == -1).all())  # scratch handed back clean
    edges = set(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist()))
    assert all((int(node[a]), int(node[b])) in edges for a, b in zip(r, c))
    indeg = torch.bincount(c[c < 3], minlength=3)
    full = torch.bincount(g.edge_index[1], minlength=n)[seed]
    assert torch.equal(indeg, full.clamp(max=2))
    # fanout -1 takes every in-edge
    node, r, c, _ = sample_hops(colptr, row, seed, [-1], local, gen)
    assert torch.equal(torch.bincount(c, minlength=3)[:3], full)


def test_seed_batches_shard_an_epoch_across_ranks():
    data = _dataset()
    g = data.splits["train"][0]
    seeds = torch.arange(g.num_nodes - 1)  # 39: one seed is cut so ranks stay in step
    shards = [SeedBatches(g, seeds, [3], 8, seed=1, rank=r, world=2) for r in range(2)]
    got = [[b.n_id[: b.batch_size] for b in s(1)] for s in shards]
    assert len(got[0]) == len(got[1]) == shards[0].steps_per_epoch()
    ids = [torch.cat(x) for x in got]
    assert ids[0].numel() == ids[1].numel() == 19
    assert set(ids[0].tolist()).isdisjoint(ids[1].tolist())
    single = SeedBatches(g, seeds, [3], 16, seed=1)
    first = next(iter(single(1)))
    # Step k of 2 ranks x 8 seeds covers the seeds of step k of 1 process x 16.
    assert set(first.n_id[:16].tolist()) == set(got[0][0].tolist()) | set(got[1][0].tolist())


def test_cached_teacher_structure_on_full_neighbourhoods_equals_full_graph():
    data = _dataset()
    g = data.splits["train"][0]
    teachers = _teachers(data, depths=(2,))
    cache = CachedTeacherOutputs(teachers, g, chunk_size=9, kernel="l1")
    assert cache.nbytes == 4 * g.num_nodes * (data.num_classes + SMALL.width)
    batch = next(iter(SeedBatches(g, torch.arange(g.num_nodes), [-1, -1, -1], 10, seed=0)(1)))
    (view,) = cache(batch)
    z, h = teachers[0].model(g.x, g.edge_index)
    seeds = batch.n_id[:10]
    torch.testing.assert_close(view.logits, z[seeds], atol=1e-5, rtol=1e-5)
    ei, log_p = local_structure(h[-1], g.edge_index, "l1")
    want = {(int(u), int(v)): float(p) for (u, v), p in zip(ei.t(), log_p)}
    for (a, b), p in zip(view.edge_index.t(), view.log_p):
        u, v = int(batch.n_id[a]), int(batch.n_id[b])
        assert v in seeds.tolist()
        assert abs(want[(u, v)] - float(p)) < 1e-5


def _run(method: str, scale: ScaleConfig, epochs: int = 2) -> RunConfig:
    return RunConfig(
        dataset="toy", teachers=tuple(dataclasses.replace(SMALL, hidden_layers=d) for d in (1, 2)),
        student=SMALL, student_train=TrainConfig(epochs=epochs, patience=10),
        distill=DistillConfig(method=method), scale=scale,
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_one_batch_of_all_nodes_with_full_fanout_is_the_full_batch_objective(method, tmp_path):
    """Sampling with fanout -1 and a batch of every node sees the whole graph: its loss terms
    must be the full-batch ones (node order differs, so up to float rounding)."""
    data = _dataset()
    teachers = _teachers(data, depths=(1, 2))
    full = _run(method, ScaleConfig())
    sampled = _run(method, ScaleConfig("neighbor", (-1,), batch_size=1000, chunk_size=7))
    _, d_full = train_student(full, data, teachers, tmp_path / "f", QUIET)
    _, d_sampled = train_student(sampled, data, teachers, tmp_path / "s", QUIET)
    for a, b in zip(d_full["history"], d_sampled["history"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (k, a, b)
    assert d_sampled["scale"]["teacher_cache_bytes"] > 0 or method == "none"


@pytest.mark.parametrize("method,input_dropout", [
    *((m, "dense") for m in METHODS),
    # Sparse input dropout feeds each batch's features as sparse rows (SparseRows).
    ("none", "sparse"), ("mskd", "sparse"),
])
def test_sampled_distillation_learns_with_every_method(method, input_dropout, tmp_path):
    data = _dataset()
    teachers = _teachers(data, depths=(1, 2))
    run = _run(method, ScaleConfig("neighbor", (3, 2), batch_size=8), epochs=4)
    run = dataclasses.replace(run, student=dataclasses.replace(run.student,
                                                               input_dropout=input_dropout))
    student, details = train_student(run, data, teachers, tmp_path, QUIET)
    hist = details["history"]
    assert all(torch.isfinite(torch.tensor(list(h.values()), dtype=torch.float64)).all()
               for h in hist)
    assert hist[-1]["task"] < hist[0]["task"]
    # The reported test score is the kept student's, by layer-wise inference.
    assert student.test == evaluate_split(student.model, data, "test", run.scale.chunk_size)[0]
    assert (tmp_path / f"student-{method}.pt").exists()


def test_sparse_rows_gather_the_dense_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 12, generator=g) * (torch.rand(30, 12, generator=g) < 0.2)
    x[[3, 7]] = 0.0  # rows without any non-zero
    rows = SparseRows(x)
    for n_id in (torch.tensor([7, 0, 3, 29, 0, 12]), torch.arange(30), torch.tensor([3]),
                 torch.tensor([], dtype=torch.long)):
        got = rows.rows(n_id)
        assert got.is_sparse and got.is_coalesced() and got.shape == (n_id.numel(), 12)
        assert torch.equal(got.to_dense(), x[n_id])


def test_seed_batches_with_sparse_features_carry_the_same_rows():
    g = _dataset().splits["train"][0]
    seeds = torch.arange(g.num_nodes)
    dense = list(SeedBatches(g, seeds, [3, 2], 8, seed=2)(0))
    sparse = list(SeedBatches(g, seeds, [3, 2], 8, seed=2, sparse_features=True)(0))
    assert len(dense) == len(sparse)
    for a, b in zip(dense, sparse):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
        assert b.x.is_sparse and torch.equal(b.x.to_dense(), a.x)


def test_sampled_training_needs_one_transductive_graph():
    with pytest.raises(ConfigError, match="one transductive graph"):
        check_supported(_dataset(graphs=3), ScaleConfig("neighbor"))


@pytest.mark.parametrize("bad", [{"sampler": "cluster"}, {"fanout": (0,)}, {"fanout": ()},
                                 {"batch_size": 0}, {"chunk_size": 0}])
def test_scale_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        dataclasses.replace(ScaleConfig(), **bad).validate()


def test_scale_hops_repeat_the_last_fanout():
    assert ScaleConfig(fanout=(15, 10)).hops(4) == [15, 10, 10, 10]
    assert ScaleConfig(fanout=(5, 4, 3)).hops(2) == [5, 4]


def test_old_configs_without_scale_load_as_full_batch():
    d = _run("mskd", ScaleConfig("neighbor", (4, 3))).to_dict()
    assert RunConfig.from_dict(json.loads(json.dumps(d))).scale == ScaleConfig("neighbor", (4, 3))
    del d["scale"]
    assert RunConfig.from_dict(d).scale == ScaleConfig()


def test_cli_sampled_run_end_to_end(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["distill", "--dataset", str(tiny_npz), "--teacher-depths", "1", "--epochs", "2",
                 "--sampler", "neighbor", "--fanout", "4,3", "--batch-size", "64",
                 "--chunk-size", "50", "--quiet", "--out", str(out)])
    assert code == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["config"]["scale"]["sampler"] == "neighbor"
    assert rec["student"]["scale"]["teacher_cache_bytes"] > 0
    assert rec["student"]["scale"]["processes"] == 1


@pytest.mark.parametrize("argv,msg", [
    (["--fanout", "0"], "fanout"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--nproc", "2"], "--sampler neighbor"),
])
def test_cli_scale_errors_are_one_line(tiny_npz, capsys, argv, msg):
    code = main(["distill", "--dataset", str(tiny_npz), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and err.startswith("mskd: error:") and err.count("\n") == 1


def test_sampled_training_of_an_mlp_with_hops_samples_them_and_learns(tmp_path):
    # The first layer propagates over K hops, so each batch needs the seeds' K-hop neighbours on
    # top of the layers' own; validation runs layer-wise on the whole graph.
    data = _dataset()
    run = _run("kd", ScaleConfig("neighbor", (3, 2), batch_size=8), epochs=4)
    run = dataclasses.replace(run, student=dataclasses.replace(run.student, arch="mlp", hops=2))
    student, details = train_student(run, data, _teachers(data, depths=(1,)), tmp_path, QUIET)
    assert n_layers(student.model) == run.student.hidden_layers + 3
    hist = details["history"]
    assert hist[-1]["task"] < hist[0]["task"]
    assert student.test == evaluate_split(student.model, data, "test", run.scale.chunk_size)[0]
