"""Shared fixtures: a hermetic environment, tiny synthetic graphs, and writers for user ``.npz``
graphs and for a tiny dataset in PPI's raw layout.

Nothing a test does may write outside pytest's temporary directories: the cache and the default
data root point into a session temporary directory, downloads are disabled (``MSKD_OFFLINE=1``),
and every test runs with a temporary working directory (``runs/`` defaults land there).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

# The shared, read-only data folder: $MSKD_DATA_ROOT as the README's test command sets it, else a
# sibling of the clone (../shared/data), here and in CI. Read once at import, before
# hermetic_env points MSKD_DATA_ROOT at an empty folder for the code under test.
SHARED_DATA = Path(os.environ.get("MSKD_DATA_ROOT") or
                   Path(__file__).resolve().parents[2] / "shared" / "data").resolve()

PPI_SPLITS = {"train": range(1, 21), "valid": range(21, 23), "test": range(23, 25)}
PPI_FEATURES, PPI_LABELS = 50, 121


@pytest.fixture(scope="session", autouse=True)
def hermetic_env(tmp_path_factory: pytest.TempPathFactory):
    """Cache, XDG cache and default data root inside a temporary directory; no downloads."""
    base = tmp_path_factory.mktemp("mskd-env")
    cache, empty_root = base / "cache", base / "no-data"
    empty_root.mkdir()
    # The graphs here are tiny: extra threads only add synchronisation, and on a busy machine an
    # OpenMP pool spinning for a core it cannot get makes each small op ~1000x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # subprocesses too
        mp.setenv("MSKD_CACHE_DIR", str(cache))
        mp.setenv("XDG_CACHE_HOME", str(base / "xdg"))
        mp.setenv("MSKD_OFFLINE", "1")
        # An empty folder: a test that forgets --data-root gets a "not found" error, never a
        # download and never someone's real data.
        mp.setenv("MSKD_DATA_ROOT", str(empty_root))
        yield {"cache": cache, "data_root": empty_root}
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative defaults (``runs/<dataset>/<stamp>``) land in the test's temporary directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cache_dir(hermetic_env) -> Path:
    return hermetic_env["cache"]


@pytest.fixture
def shared_data() -> Path:
    """The offline datasets ($MSKD_DATA_ROOT, else ../shared/data); skips the test without them."""
    if not (SHARED_DATA / "Planetoid" / "Cora" / "raw").is_dir():
        pytest.skip(f"shared data folder with Planetoid/Cora/raw not found at {SHARED_DATA} "
                    "(set MSKD_DATA_ROOT)")
    return SHARED_DATA


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (size, mtime_ns): equal snapshots = nothing written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``mskd.cli.main(argv)``, expect exit code 2 and exactly one ``mskd: error:`` line on
    stderr (no traceback, no warning); return that line."""
    from mskd.cli import main

    with warnings.catch_warnings(record=True) as caught:
        # Outside pytest, Python prints these on stderr, above the one error line.
        warnings.simplefilter("always")
        code = main(argv)
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    captured = capsys.readouterr()
    assert not shown, [f"{w.category.__name__}: {w.message}" for w in shown]
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mskd: error: ")
    return lines[0]


# --- synthetic graphs --------------------------------------------------------------------------


def make_graph(
    num_classes: int = 3, per_class: int = 60, num_features: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    """A homophilous graph whose features carry the class: a GNN learns it in a few epochs.

    Node v of class c has features ``onehot-ish centroid of c + noise``; each node links to 4
    random nodes of its own class and 1 random node anywhere (edges stored in both directions).
    """
    rng = np.random.default_rng(seed)
    n = num_classes * per_class
    y = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(y)
    centroids = rng.normal(0.0, 1.0, size=(num_classes, num_features))
    x = centroids[y] + rng.normal(0.0, 0.8, size=(n, num_features))
    src, dst = [], []
    for v in range(n):
        same = np.flatnonzero(y == y[v])
        for u in rng.choice(same[same != v], size=4, replace=False):
            src.append(v)
            dst.append(int(u))
        u = int(rng.integers(n))
        if u != v:
            src.append(v)
            dst.append(u)
    ei = np.array([src + dst, dst + src], dtype=np.int64)
    ei = np.unique(ei, axis=1)
    return {"x": x.astype(np.float32), "edge_index": ei, "y": y.astype(np.int64)}


@pytest.fixture
def tiny_graph() -> dict[str, np.ndarray]:
    """3 classes x 60 nodes, 16 features, class-correlated; no masks."""
    return make_graph()


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """``write_npz(arrays, name="graph.npz") -> path``: save arrays as a user's ``.npz`` graph."""

    def write(arrays: dict[str, np.ndarray], name: str = "graph.npz") -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write


@pytest.fixture
def tiny_npz(tiny_graph, write_npz) -> Path:
    return write_npz(tiny_graph, "tiny.npz")


# --- PPI raw layout ------------------------------------------------------------------------------


def write_ppi_raw(root: Path, seed: int = 0) -> dict[str, list[dict]]:
    """A tiny dataset in the exact raw layout of PPI (``ROOT/PPI/raw``), 20/2/2 graphs.

    Per split: ``{split}_graph.json`` (networkx node-link JSON, edge key ``links``, node ids
    0..n_split-1, each undirected edge once, a self-loop on every node as in ``ppi.zip``),
    ``{split}_feats.npy`` float64 [n, 50], ``{split}_labels.npy`` int64 [n, 121] 0/1,
    ``{split}_graph_id.npy`` int64 [n], global and 1-based (train 1..20, valid 21..22,
    test 23..24), each graph one contiguous id range.

    Returns per split the graphs written: ``nodes``, ``edges`` (directed, without self-loops,
    i.e. what PyG keeps), ``x`` and ``y``.
    """
    rng = np.random.default_rng(seed)
    raw = root / "PPI" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    expected: dict[str, list[dict]] = {}
    for split, gids in PPI_SPLITS.items():
        links, graph_id, offset, graphs = [], [], 0, []
        for gid in gids:
            n = int(rng.integers(4, 9))
            nodes = range(offset, offset + n)
            ring = [(offset + i, offset + (i + 1) % n) for i in range(n)]
            links += [{"source": v, "target": v} for v in nodes]
            links += [{"source": u, "target": v} for u, v in ring]
            graph_id += [gid] * n
            graphs.append({"nodes": n, "edges": 2 * len(ring)})
            offset += n
        x = rng.random((offset, PPI_FEATURES))  # float64
        y = (rng.random((offset, PPI_LABELS)) < 0.3).astype(np.int64)
        start = 0
        for g in graphs:
            g["x"], g["y"] = x[start : start + g["nodes"]], y[start : start + g["nodes"]]
            start += g["nodes"]
        doc = {
            "directed": False, "multigraph": False, "graph": {},
            "nodes": [{"id": i} for i in range(offset)], "links": links,
        }
        (raw / f"{split}_graph.json").write_text(json.dumps(doc))
        np.save(raw / f"{split}_feats.npy", x)
        np.save(raw / f"{split}_labels.npy", y)
        np.save(raw / f"{split}_graph_id.npy", np.array(graph_id, dtype=np.int64))
        expected[split] = graphs
    return expected


@pytest.fixture
def ppi_root(tmp_path: Path) -> tuple[Path, dict[str, list[dict]]]:
    """A data root holding only the tiny PPI-layout dataset, and what was written."""
    root = tmp_path / "ppi-root"
    return root, write_ppi_raw(root)
