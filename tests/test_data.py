"""Tests for mskd.data: stratified splits, user .npz graphs and their errors, dataset names,
PPI's raw layout, the read-only data root, Cora from the shared data, fingerprints."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import tree_snapshot, write_ppi_raw

from mskd.data import (
    DATASETS,
    MULTI,
    SINGLE,
    DataError,
    canonical_name,
    load_dataset,
    load_npz,
    stratified_split,
)

# --- stratified split ----------------------------------------------------------------------------


def _labels(sizes: list[int], seed: int = 0) -> torch.Tensor:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def test_stratified_split_exact_counts_disjoint_and_covering() -> None:
    sizes = [51, 60, 75, 200]
    y = _labels(sizes)
    train, val, test = stratified_split(y, len(sizes), seed=3)
    for m in (train, val, test):
        assert m.dtype == torch.bool and m.shape == y.shape
    for c, n in enumerate(sizes):
        assert int((train & (y == c)).sum()) == 20
        assert int((val & (y == c)).sum()) == 30
        assert int((test & (y == c)).sum()) == n - 50
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    assert bool((train | val | test).all())


def test_stratified_split_custom_counts() -> None:
    y = _labels([10, 12])
    train, val, test = stratified_split(y, 2, train_per_class=3, val_per_class=5, seed=0)
    assert [int((train & (y == c)).sum()) for c in range(2)] == [3, 3]
    assert [int((val & (y == c)).sum()) for c in range(2)] == [5, 5]
    assert [int((test & (y == c)).sum()) for c in range(2)] == [2, 4]


def test_stratified_split_deterministic_per_seed_and_differs_across_seeds() -> None:
    y = _labels([80, 90, 100])
    a = stratified_split(y, 3, seed=7)
    b = stratified_split(y, 3, seed=7)
    c = stratified_split(y, 3, seed=8)
    for ma, mb in zip(a, b):
        assert torch.equal(ma, mb)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[1], c[1])


def test_stratified_split_too_small_class() -> None:
    y = _labels([60, 50, 60])  # class 1 has 50 = 20 + 30, no test node left
    with pytest.raises(DataError, match=r"class 1 has 50 nodes.*at least 51"):
        stratified_split(y, 3)


def test_stratified_split_empty_class() -> None:
    y = _labels([60, 60])
    with pytest.raises(DataError, match="class 2 has 0 nodes"):
        stratified_split(y, 3)


# --- npz: happy paths ----------------------------------------------------------------------------


def _masks(n: int, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    idx = np.arange(n)
    return {
        "train_mask": idx < n_train,
        "val_mask": (idx >= n_train) & (idx < n_train + n_val),
        "test_mask": idx >= n_train + n_val,
    }


def test_npz_without_masks_gets_stratified_split(tiny_graph, write_npz) -> None:
    path = write_npz(tiny_graph, "mygraph.npz")
    ds = load_npz(path, split_seed=5)
    g = ds.splits["train"][0]
    assert ds.name == "mygraph" and ds.task == SINGLE and not ds.multilabel
    assert ds.transductive
    assert (ds.num_features, ds.num_classes) == (16, 3)
    assert torch.equal(g.x, torch.from_numpy(tiny_graph["x"]))
    assert torch.equal(g.edge_index, torch.from_numpy(tiny_graph["edge_index"]))
    assert torch.equal(g.y, torch.from_numpy(tiny_graph["y"]))
    assert ds.info["split_seed"] == 5
    # Same graph, three masks: exactly the stratified split of that seed.
    expected = stratified_split(g.y, 3, seed=5)
    for split, m in zip(("train", "val", "test"), expected):
        assert len(ds.splits[split]) == 1
        assert torch.equal(ds.splits[split][0].mask, m)
    assert [int(ds.splits[s][0].mask.sum()) for s in ("train", "val", "test")] == [60, 90, 30]


def test_npz_with_masks_uses_them(tiny_graph, write_npz) -> None:
    n = tiny_graph["y"].shape[0]
    masks = _masks(n, 30, 50)
    masks["val_mask"] = masks["val_mask"].astype(np.int64)  # 0/1 integers are accepted too
    ds = load_npz(write_npz({**tiny_graph, **masks}))
    assert ds.info["split_seed"] is None
    for split, key in zip(("train", "val", "test"), ("train_mask", "val_mask", "test_mask")):
        assert torch.equal(ds.splits[split][0].mask, torch.from_numpy(masks[key].astype(bool)))
    assert [int(ds.splits[s][0].mask.sum()) for s in ("train", "val", "test")] == [30, 50, n - 80]


def test_npz_multilabel(tiny_graph, write_npz) -> None:
    rng = np.random.default_rng(1)
    n = tiny_graph["y"].shape[0]
    y = (rng.random((n, 5)) < 0.4).astype(np.int64)
    ds = load_npz(write_npz({**tiny_graph, "y": y}), split_seed=2)
    assert ds.task == MULTI and ds.multilabel and ds.num_classes == 5
    g = ds.splits["train"][0]
    assert g.y.dtype == torch.float32 and torch.equal(g.y, torch.from_numpy(y).float())
    counts = [int(ds.splits[s][0].mask.sum()) for s in ("train", "val", "test")]
    assert counts == [108, 36, 36]  # random 60/20/20 of 180 nodes
    union = sum(ds.splits[s][0].mask.int() for s in ("train", "val", "test"))
    assert bool((union == 1).all())


def test_npz_multilabel_with_masks(tiny_graph, write_npz) -> None:
    n = tiny_graph["y"].shape[0]
    y = np.zeros((n, 2), dtype=bool)
    y[::2, 0] = True
    y[1::3, 1] = True
    ds = load_npz(write_npz({**tiny_graph, "y": y, **_masks(n, 100, 40)}))
    assert ds.task == MULTI and ds.num_classes == 2
    assert int(ds.splits["test"][0].mask.sum()) == 40


# --- npz: errors ---------------------------------------------------------------------------------


def _err(path) -> str:
    with pytest.raises(DataError) as info:
        load_npz(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_npz_missing_keys(tiny_graph, write_npz) -> None:
    msg = _err(write_npz({"x": tiny_graph["x"]}))
    assert "missing key(s) edge_index, y" in msg and "required: x, edge_index, y" in msg


def test_npz_extra_keys(tiny_graph, write_npz) -> None:
    msg = _err(write_npz({**tiny_graph, "weights": np.ones(3)}))
    assert "unexpected key(s) weights" in msg and "allowed:" in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("x", np.array([["a"] * 4] * 180), "x must be numeric"),
        ("edge_index", np.zeros((2, 5), dtype=np.float32), "edge_index must be an integer array"),
        ("y", np.zeros(180, dtype=np.float32), "single-label y must be integer class ids"),
        ("y", np.full((180, 2), 0.5), "multi-label y must contain only 0 and 1"),
        ("train_mask", np.full(180, 0.5), "train_mask must be boolean"),
    ],
)
def test_npz_wrong_dtypes(tiny_graph, write_npz, key, value, expected) -> None:
    arrays = {**tiny_graph, **_masks(180, 60, 60)} if key == "train_mask" else dict(tiny_graph)
    arrays[key] = value
    assert expected in _err(write_npz(arrays))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("x", np.zeros(180, dtype=np.float32), "x must have shape [N, F]"),
        ("edge_index", np.zeros((3, 4), dtype=np.int64), "edge_index must have shape [2, E]"),
        ("y", np.zeros(179, dtype=np.int64), "y has 179 rows but x has 180 nodes"),
        ("y", np.zeros((180, 2, 2), dtype=np.int64), "y must have shape [N] or [N, C]"),
        ("y", np.int64(3), "y must have shape [N] or [N, C] with C > 0, got []"),
        ("y", np.zeros((180, 0), dtype=np.int64), "with C > 0, got [180, 0]"),
        ("y", np.zeros(180, dtype=np.int64), "y has a single class"),
    ],
)
def test_npz_wrong_shapes(tiny_graph, write_npz, key, value, expected) -> None:
    assert expected in _err(write_npz({**tiny_graph, key: value}))


def test_npz_x_with_nan(tiny_graph, write_npz) -> None:
    x = tiny_graph["x"].copy()
    x[3, 2] = np.nan
    assert "x contains NaN or infinite values" in _err(write_npz({**tiny_graph, "x": x}))


@pytest.mark.parametrize(("bad", "shown"), [(180, "180"), (-1, "-1")])
def test_npz_edge_index_out_of_range(tiny_graph, write_npz, bad, shown) -> None:
    ei = tiny_graph["edge_index"].copy()
    ei[1, 7] = bad
    msg = _err(write_npz({**tiny_graph, "edge_index": ei}))
    assert f"edge_index refers to node {shown}, outside 0..179" in msg


def test_npz_negative_labels(tiny_graph, write_npz) -> None:
    y = tiny_graph["y"].copy()
    y[0] = -2
    assert "labels out of range: found -2" in _err(write_npz({**tiny_graph, "y": y}))


def test_npz_labels_with_gaps(tiny_graph, write_npz) -> None:
    # A stray huge class id would otherwise build a model with that many outputs.
    y = tiny_graph["y"].copy()
    y[0] = 10**9
    msg = _err(write_npz({**tiny_graph, "y": y}))
    assert "labels out of range" in msg and "max label 1000000000" in msg


def test_npz_mask_wrong_length(tiny_graph, write_npz) -> None:
    masks = _masks(180, 60, 60)
    masks["test_mask"] = masks["test_mask"][:-1]
    msg = _err(write_npz({**tiny_graph, **masks}))
    assert "test_mask must have shape [180], got [179]" in msg


def test_npz_overlapping_masks(tiny_graph, write_npz) -> None:
    masks = _masks(180, 60, 60)
    masks["val_mask"][0] = True  # node 0 is also in train
    assert "masks overlap" in _err(write_npz({**tiny_graph, **masks}))


def test_npz_empty_train_mask(tiny_graph, write_npz) -> None:
    masks = _masks(180, 60, 60)
    masks["train_mask"][:] = False
    assert "train_mask selects no nodes" in _err(write_npz({**tiny_graph, **masks}))


def test_npz_only_some_masks(tiny_graph, write_npz) -> None:
    masks = _masks(180, 60, 60)
    del masks["val_mask"]
    msg = _err(write_npz({**tiny_graph, **masks}))
    assert "give all three masks or none" in msg and "train_mask, test_mask" in msg


def test_npz_not_a_zip(tmp_path) -> None:
    path = tmp_path / "graph.npz"
    path.write_text("x,edge_index,y\n1,2,3\n")
    msg = _err(path)
    assert str(path) in msg and "not a readable .npz file" in msg


def test_npz_file_missing(tmp_path) -> None:
    path = tmp_path / "nowhere.npz"
    assert f"graph file not found: {path}" in _err(path)


def test_load_dataset_dispatches_npz(tiny_npz) -> None:
    ds = load_dataset(str(tiny_npz))
    assert ds.name == "tiny" and ds.num_classes == 3


# --- names ---------------------------------------------------------------------------------------


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("imagenet")
    msg = str(info.value)
    assert "unknown dataset 'imagenet'" in msg
    for name in (*DATASETS, "PATH.npz"):
        assert name in msg


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Cora", "cora"), ("CITESEER", "citeseer"), ("pubmed", "pubmed"), ("PPI", "ppi"),
        ("computers", "amazon-computers"), ("Photo", "amazon-photo"),
        ("amazon_photo", "amazon-photo"), ("CS", "coauthor-cs"), ("physics", "coauthor-physics"),
        ("coauthor_physics", "coauthor-physics"), ("my/graph.NPZ", "npz"),
    ],
)
def test_canonical_name(given, canonical) -> None:
    assert canonical_name(given) == canonical


# --- PPI raw layout ------------------------------------------------------------------------------


def test_ppi_from_raw_layout(ppi_root, cache_dir) -> None:
    root, written = ppi_root
    before = tree_snapshot(root)
    ds = load_dataset("ppi", root)
    assert ds.name == "ppi" and ds.task == MULTI and ds.multilabel and not ds.transductive
    assert (ds.num_features, ds.num_classes) == (50, 121)
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [20, 2, 2]
    for split, raw_split in (("train", "train"), ("val", "valid"), ("test", "test")):
        for g, w in zip(ds.splits[split], written[raw_split]):
            assert g.num_nodes == w["nodes"]
            assert g.edge_index.shape[1] == w["edges"]  # self-loops dropped, both directions
            assert int(g.edge_index.min()) == 0 and int(g.edge_index.max()) == w["nodes"] - 1
            assert g.mask.dtype == torch.bool and bool(g.mask.all())
            assert torch.equal(g.x, torch.from_numpy(w["x"]).float())
            assert torch.equal(g.y, torch.from_numpy(w["y"]).float())
    # The data root is read, never written; processing happened in the cache.
    assert tree_snapshot(root) == before
    assert not list(root.rglob("processed"))
    assert list(cache_dir.glob("processed/*/PPI/processed/train.pt"))


def test_ppi_changed_raw_files_are_reprocessed(tmp_path) -> None:
    root = tmp_path / "root"
    write_ppi_raw(root, seed=0)
    first = load_dataset("ppi", root)
    written = write_ppi_raw(root, seed=1)  # other graph sizes, features and labels
    second = load_dataset("ppi", root)
    assert [g.num_nodes for g in second.splits["train"]] == [w["nodes"] for w in written["train"]]
    assert torch.equal(second.splits["train"][0].x, torch.from_numpy(written["train"][0]["x"]).float())
    assert first.fingerprint() != second.fingerprint()


def test_ppi_changed_raw_file_of_same_size_is_reprocessed(tmp_path) -> None:
    root = tmp_path / "root"
    write_ppi_raw(root, seed=0)
    load_dataset("ppi", root)
    feats = root / "PPI" / "raw" / "test_feats.npy"
    new = np.load(feats) + 1.0  # same shape and dtype: same file size
    np.save(feats, new)
    ds = load_dataset("ppi", root)
    n0 = ds.splits["test"][0].num_nodes
    assert torch.equal(ds.splits["test"][0].x, torch.from_numpy(new[:n0]).float())


@pytest.mark.parametrize(
    ("name", "folder", "first_file"),
    [("ppi", "PPI/raw", "train_graph.json"), ("pubmed", "Planetoid/PubMed/raw", "ind.pubmed.x")],
)
def test_missing_dataset_names_path_searched(tmp_path, name, folder, first_file) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(name, root)
    msg = str(info.value)
    assert "\n" not in msg
    assert "not found" in msg and f"missing {first_file} in {root / folder}" in msg
    assert list(root.iterdir()) == []  # nothing downloaded or created


def test_default_data_root_is_the_test_env(hermetic_env) -> None:
    with pytest.raises(DataError, match=re.escape(str(hermetic_env["data_root"] / "Planetoid"))):
        load_dataset("cora")


# --- Cora from the shared data -------------------------------------------------------------------


def test_cora_public_split_without_writing_shared(shared_data) -> None:
    before = tree_snapshot(shared_data / "Planetoid")
    ds = load_dataset("Cora", shared_data)
    assert tree_snapshot(shared_data / "Planetoid") == before
    g = ds.splits["train"][0]
    assert ds.name == "cora" and ds.task == SINGLE and ds.transductive
    assert (g.num_nodes, ds.num_features, ds.num_classes) == (2708, 1433, 7)
    assert g.edge_index.shape[1] == 10556
    assert [int(ds.splits[s][0].mask.sum()) for s in ("train", "val", "test")] == [140, 500, 1000]
    # Public split: 20 training nodes per class.
    assert torch.bincount(g.y[ds.splits["train"][0].mask], minlength=7).tolist() == [20] * 7
    # Row-normalised bag-of-words features.
    torch.testing.assert_close(g.x.sum(dim=1), torch.ones(2708))
    assert ds.info["split_seed"] is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "nodes", "edges", "features", "classes"),
    [
        ("citeseer", 3327, 9104, 3703, 6),
        ("amazon-computers", 13752, 491722, 767, 10),
        ("amazon-photo", 7650, 238162, 745, 8),
        ("coauthor-cs", 18333, 163788, 6805, 15),
        ("coauthor-physics", 34493, 495924, 8415, 5),
    ],
)
def test_every_offline_dataset_loads(shared_data, name, nodes, edges, features, classes) -> None:
    # Statistics from shared/data/README.md (equal to PyG's documentation).
    folder = shared_data / ("Planetoid" if name == "citeseer" else name.split("-")[0].capitalize())
    before = tree_snapshot(folder)
    ds = load_dataset(name, shared_data, split_seed=3)
    assert tree_snapshot(folder) == before
    g = ds.splits["train"][0]
    assert (g.num_nodes, g.edge_index.shape[1], ds.num_features, ds.num_classes) == (
        nodes, edges, features, classes)
    if name != "citeseer":
        per_class = [torch.bincount(g.y[ds.splits[s][0].mask], minlength=classes).tolist()
                     for s in ("train", "val")]
        assert per_class == [[20] * classes, [30] * classes]
        assert ds.info["split_seed"] == 3


# --- fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_stable_and_split_seed_sensitive(tiny_npz) -> None:
    a = load_npz(tiny_npz, split_seed=0).fingerprint()
    assert load_npz(tiny_npz, split_seed=0).fingerprint() == a
    assert load_npz(tiny_npz, split_seed=1).fingerprint() != a


def test_fingerprint_sensitive_to_labels_and_edges(tiny_graph, write_npz) -> None:
    base = load_npz(write_npz(tiny_graph, "g.npz")).fingerprint()
    ei = tiny_graph["edge_index"][:, :-2]
    assert load_npz(write_npz({**tiny_graph, "edge_index": ei}, "g.npz")).fingerprint() != base
    x = tiny_graph["x"] * 2
    assert load_npz(write_npz({**tiny_graph, "x": x}, "g.npz")).fingerprint() != base


def test_second_loader_waits_while_a_dataset_is_being_prepared(ppi_root, cache_dir, capfd) -> None:
    # Two runs launched together used to process the same raw files at once, and one read the
    # other's half-written processed file. Now the second waits for the first.
    import hashlib
    import threading

    from mskd.data import DATASETS, _dataset_lock

    root, written = ppi_root
    loaded = {}
    with _dataset_lock(root, DATASETS["ppi"]):
        t = threading.Thread(target=lambda: loaded.setdefault("ds", load_dataset("ppi", root)))
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive(), "load_dataset did not wait for the lock"
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
        assert not (cache_dir / "processed" / key / "PPI" / "processed").exists()
    t.join(timeout=120)
    assert not t.is_alive()
    assert [g.num_nodes for g in loaded["ds"].splits["train"]] == [w["nodes"] for w in written["train"]]
    assert "waiting for another mskd process preparing" in capfd.readouterr().err


def test_fingerprint_ignores_the_thread_count_and_sees_one_ulp(tiny_graph, write_npz) -> None:
    # It used to include a float32 matrix-product checksum of the features, whose last bits (and
    # so the fingerprint) changed with torch's thread count: Amazon Computers had two of them.
    big = {**tiny_graph, "x": np.random.default_rng(0).normal(
        size=(tiny_graph["x"].shape[0], 4096)).astype(np.float32)}
    threads = torch.get_num_threads()
    try:
        prints = set()
        for t in (1, 2, 4):
            torch.set_num_threads(t)
            prints.add(load_npz(write_npz(big, "g.npz")).fingerprint())
    finally:
        torch.set_num_threads(threads)
    assert len(prints) == 1
    x = big["x"].copy()
    x[3, 7] = np.nextafter(x[3, 7], np.float32(np.inf))
    assert load_npz(write_npz({**big, "x": x}, "g.npz")).fingerprint() not in prints
