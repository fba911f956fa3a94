"""Datasets: one registry, one container, one way to get node splits.

Every dataset becomes a :class:`GraphDataset` whose ``splits`` map ``train``/``val``/``test`` to
lists of PyG ``Data`` graphs, each carrying a boolean ``mask`` of the nodes scored in that split.
Transductive datasets (Cora, Amazon, ...) hold the same graph three times with different masks
(tensors are shared, not copied); inductive PPI holds 20/2/2 separate graphs with all-true masks.
Training and evaluation code therefore never branches on the dataset kind.

Data root: ``--data-root``, else ``$MSKD_DATA_ROOT``, else ``<cache>/data``. PyG writes a
``processed/`` folder next to ``raw/``; a data root we do not own (e.g. a read-only shared folder)
is never written to: its raw files are copied into ``<cache>/processed`` and processed there.
``$MSKD_OFFLINE=1`` turns a missing dataset into an immediate error instead of a download.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from .errors import DataError
from .runs import RunLock

SINGLE = "single-label"
MULTI = "multi-label"


@dataclass(frozen=True)
class DatasetSpec:
    family: str  # PyG class and folder under the data root: Planetoid, Amazon, Coauthor, PPI
    name: str  # PyG's name argument ("" for PPI)
    raw_files: tuple[str, ...]
    task: str = SINGLE
    transductive: bool = True
    official_split: bool = True


def _planetoid(name: str) -> DatasetSpec:
    low = name.lower()
    parts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    return DatasetSpec("Planetoid", name, tuple(f"ind.{low}.{p}" for p in parts))


_PPI_FILES = tuple(
    f"{split}_{kind}"
    for split in ("train", "valid", "test")
    for kind in ("graph.json", "feats.npy", "labels.npy", "graph_id.npy")
)

DATASETS: dict[str, DatasetSpec] = {
    "cora": _planetoid("Cora"),
    "citeseer": _planetoid("CiteSeer"),
    "pubmed": _planetoid("PubMed"),
    "ppi": DatasetSpec("PPI", "", _PPI_FILES, task=MULTI, transductive=False),
    "amazon-computers": DatasetSpec(
        "Amazon", "Computers", ("amazon_electronics_computers.npz",), official_split=False
    ),
    "amazon-photo": DatasetSpec(
        "Amazon", "Photo", ("amazon_electronics_photo.npz",), official_split=False
    ),
    "coauthor-cs": DatasetSpec("Coauthor", "CS", ("ms_academic_cs.npz",), official_split=False),
    "coauthor-physics": DatasetSpec(
        "Coauthor", "Physics", ("ms_academic_phy.npz",), official_split=False
    ),
    # Loaded by the ogb package (mskd/ogb_data.py), not by PyG's dataset classes.
    "ogbn-arxiv": DatasetSpec("OGB", "ogbn-arxiv", ()),
    "ogbn-products": DatasetSpec("OGB", "ogbn-products", ()),
}

_ALIASES = {
    "computers": "amazon-computers",
    "photo": "amazon-photo",
    "cs": "coauthor-cs",
    "physics": "coauthor-physics",
}


def canonical_name(dataset: str) -> str:
    """``"Cora"`` -> ``"cora"``, ``"photo"`` -> ``"amazon-photo"``, ``x.npz`` -> ``"npz"``."""
    if dataset.lower().endswith(".npz"):
        return "npz"
    key = dataset.lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        valid = ", ".join([*DATASETS, "PATH.npz"])
        raise DataError(f"unknown dataset {dataset!r}; valid: {valid}")
    return key


def _tensor_digest(x: Tensor) -> bytes:
    """sha256 of a tensor's values (and, sparse, its indices), read in place when possible."""
    h = hashlib.sha256()
    x = x.detach().cpu()
    if x.layout != torch.strided:
        x = x.to_sparse_coo().coalesce()
        h.update(x.indices().contiguous().numpy())
        x = x.values()
    h.update(x.contiguous().numpy())
    return h.digest()


@dataclass
class GraphDataset:
    """A dataset ready for training: graphs per split, each with the ``mask`` of scored nodes."""

    name: str
    task: str
    num_features: int
    num_classes: int
    splits: dict[str, list[Data]]
    transductive: bool
    info: dict = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def multilabel(self) -> bool:
        return self.task == MULTI

    def fingerprint(self) -> str:
        """Identity of the graphs, node order, labels and splits (computed once per dataset)."""
        if self._fingerprint is None:
            h = hashlib.sha256(
                f"{self.name}|{self.task}|{self.num_features}|{self.num_classes}".encode()
            )
            digests: dict[int, bytes] = {}
            for split in ("train", "val", "test"):
                for g in self.splits[split]:
                    h.update(f"{split}|{g.num_nodes}|{tuple(g.x.shape)}|".encode())
                    for t in (g.edge_index, g.y, g.mask):
                        h.update(t.detach().cpu().contiguous().numpy().tobytes())
                    # The features' own bytes, not a floating-point checksum of them: a sum's
                    # last bits depend on the thread count and CPU, and so did the fingerprint.
                    # Transductive splits share x, so it is hashed once per tensor.
                    if id(g.x) not in digests:
                        digests[id(g.x)] = _tensor_digest(g.x)
                    h.update(digests[id(g.x)])
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def to(self, device: torch.device | str) -> GraphDataset:
        moved: dict[int, Tensor] = {}

        def move(t: Tensor) -> Tensor:
            # Transductive splits share x/edge_index/y: move each tensor once.
            if id(t) not in moved:
                moved[id(t)] = t.to(device)
            return moved[id(t)]

        splits = {
            split: [
                Data(x=move(g.x), edge_index=move(g.edge_index), y=move(g.y),
                     mask=g.mask.to(device), gid=g.gid)
                for g in graphs
            ]
            for split, graphs in self.splits.items()
        }
        # The fingerprint is of the data, not of where it lives: carry it over unchanged.
        return GraphDataset(
            self.name, self.task, self.num_features, self.num_classes, splits,
            self.transductive, dict(self.info), self.fingerprint(),
        )

    def summary(self) -> str:
        g = self.splits["train"][0]
        counts = {s: int(sum(int(x.mask.sum()) for x in gs)) for s, gs in self.splits.items()}
        graphs = "" if self.transductive else f", graphs {[len(v) for v in self.splits.values()]}"
        return (
            f"{self.name}: {self.task}, {self.num_features} features, {self.num_classes} classes, "
            f"nodes train/val/test {counts['train']}/{counts['val']}/{counts['test']}"
            f"{graphs}, edges {g.edge_index.shape[1]} (first graph)"
        )


# --- locations -------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Per-user cache: ``$MSKD_CACHE_DIR``, else ``$XDG_CACHE_HOME/mskd``, else ``~/.cache/mskd``."""
    if os.environ.get("MSKD_CACHE_DIR"):
        return Path(os.environ["MSKD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mskd"


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get("MSKD_DATA_ROOT"):
        return Path(os.environ["MSKD_DATA_ROOT"]).expanduser()
    return cache_dir() / "data"


def _offline() -> bool:
    return os.environ.get("MSKD_OFFLINE", "").lower() not in ("", "0", "false", "no")


def _dataset_dir(root: Path, spec: DatasetSpec) -> Path:
    return root / spec.family / spec.name if spec.name else root / spec.family


def _working_root(data_root: Path, spec: DatasetSpec) -> Path:
    """The root to hand to PyG: the data root itself if we own it, else a cached copy of raw/."""
    raw = _dataset_dir(data_root, spec) / "raw"
    missing = [f for f in spec.raw_files if not (raw / f).is_file()]
    own_root = data_root.resolve() == (cache_dir() / "data").resolve()
    if missing:
        hint = (
            f"put PyG's raw files ({', '.join(spec.raw_files[:3])}"
            f"{', ...' if len(spec.raw_files) > 3 else ''}) in {raw}, or run once with internet "
            "access (PyG downloads them)"
        )
        if _offline():
            raise DataError(
                f"dataset {spec.family}{'/' + spec.name if spec.name else ''} not found: "
                f"missing {missing[0]} in {raw}; {hint} (MSKD_OFFLINE is set)"
            )
        # Downloads go into the data root the user chose (PyG's usual behaviour).
        return data_root
    if own_root:
        return data_root
    # Never write into a data root we do not own: process a copy of the raw files in the cache.
    key = hashlib.sha1(str(data_root.resolve()).encode()).hexdigest()[:12]
    work = cache_dir() / "processed" / key
    dst = _dataset_dir(work, spec) / "raw"
    dst.mkdir(parents=True, exist_ok=True)
    copied = False
    for f in spec.raw_files:
        src, out = raw / f, dst / f
        s = src.stat()
        if not out.is_file() or (out.stat().st_size, out.stat().st_mtime_ns) != (
            s.st_size, s.st_mtime_ns
        ):
            tmp = out.with_suffix(out.suffix + ".tmp")
            shutil.copyfile(src, tmp)
            os.utime(tmp, ns=(s.st_atime_ns, s.st_mtime_ns))  # the copy records its source
            os.replace(tmp, out)
            copied = True
    if copied:
        # PyG reuses processed/ whenever it exists: new raw files must not meet stale results.
        shutil.rmtree(_dataset_dir(work, spec) / "processed", ignore_errors=True)
    return work


def _dataset_lock(data_root: Path, spec: DatasetSpec) -> RunLock:
    """A lock on one dataset of one data root while it is prepared and loaded; a second process
    waits for it. Its file lives in the cache, never in the data root, which may be read-only.
    """
    key = hashlib.sha1(str(_dataset_dir(data_root.resolve(), spec)).encode()).hexdigest()[:16]
    return RunLock(
        cache_dir() / "locks" / key, log=lambda m: print(m, file=sys.stderr, flush=True),
        waiting=f"waiting for another mskd process preparing {_dataset_dir(data_root, spec)}",
    )


def _load_pyg(spec: DatasetSpec, root: Path):
    from torch_geometric import datasets as D

    family_root = str(root / spec.family)
    if spec.family == "Planetoid":
        return [D.Planetoid(family_root, spec.name, split="public")]
    if spec.family == "Amazon":
        return [D.Amazon(family_root, spec.name)]
    if spec.family == "Coauthor":
        return [D.Coauthor(family_root, spec.name)]
    if spec.family == "PPI":
        return [D.PPI(family_root, split=s) for s in ("train", "val", "test")]
    raise AssertionError(spec.family)


# --- splits ----------------------------------------------------------------------------------


def stratified_split(
    y: Tensor, num_classes: int, train_per_class: int = 20, val_per_class: int = 30, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Random per-class split: ``train_per_class`` and ``val_per_class`` nodes of every class,
    all remaining nodes in test (Shchur et al., 2018). Deterministic given ``seed``.

    Shapes:
        y: [N] class ids. Returns three disjoint boolean masks of shape [N].
    """
    gen = torch.Generator().manual_seed(seed)
    n = y.shape[0]
    train, val = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = (y == c).nonzero().view(-1)
        if idx.numel() < train_per_class + val_per_class + 1:
            raise DataError(
                f"class {c} has {idx.numel()} nodes; a stratified split needs at least "
                f"{train_per_class + val_per_class + 1} ({train_per_class} train + "
                f"{val_per_class} val + 1 test); give explicit masks instead"
            )
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train[idx[:train_per_class]] = True
        val[idx[train_per_class : train_per_class + val_per_class]] = True
    return train, val, ~(train | val)


def random_split(
    n: int, fractions: tuple[float, float] = (0.6, 0.2), seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Random node split for multi-label graphs, where per-class stratification is undefined."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][perm[:n_train]] = True
    masks[1][perm[n_train : n_train + n_val]] = True
    masks[2][perm[n_train + n_val :]] = True
    return masks[0], masks[1], masks[2]


def _transductive(
    name: str, task: str, num_classes: int, x: Tensor, edge_index: Tensor, y: Tensor,
    masks: tuple[Tensor, Tensor, Tensor], info: dict,
) -> GraphDataset:
    splits = {
        s: [Data(x=x, edge_index=edge_index, y=y, mask=m, gid=0)]
        for s, m in zip(("train", "val", "test"), masks)
    }
    return GraphDataset(name, task, x.shape[1], num_classes, splits, True, info)


# --- loading ---------------------------------------------------------------------------------


def load_dataset(
    dataset: str, data_root: str | os.PathLike | None = None, split_seed: int = 0
) -> GraphDataset:
    """Load a dataset by name (see ``DATASETS``) or from a ``.npz`` file of the user's.

    Raises:
        DataError: unknown name, missing files (naming the path searched) or malformed input.
    """
    if dataset.lower().endswith(".npz"):
        return load_npz(dataset, split_seed=split_seed)
    key = canonical_name(dataset)
    spec = DATASETS[key]
    root = resolve_data_root(data_root)
    if spec.family == "OGB":
        from .ogb_data import load_ogb

        with _dataset_lock(root, spec):
            x, ei, y, masks, info = load_ogb(key, root, _offline())
        return _transductive(key, SINGLE, int(y.max()) + 1, x, ei, y, masks, info)
    try:
        # Two runs started together (one per core) must not copy, process or read a half-written
        # processed/ file of the same dataset at once: whoever comes second waits.
        with _dataset_lock(root, spec):
            work = _working_root(root, spec)
            # PyG announces processing on stdout; stdout is reserved for mskd's tables.
            with contextlib.redirect_stdout(sys.stderr):
                parts = _load_pyg(spec, work)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - download/parse failures all mean "data unusable"
        raw = _dataset_dir(root, spec) / "raw"
        raise DataError(
            f"could not load {key} from {raw}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            " (without internet, place PyG's raw files there; see the README's Datasets section)"
        ) from None
    info = {"source": str(_dataset_dir(root, spec)), "split_seed": None}
    if spec.family == "PPI":
        splits = {}
        for s, part in zip(("train", "val", "test"), parts):
            graphs = []
            for i, g in enumerate(part):
                graphs.append(
                    Data(x=g.x, edge_index=g.edge_index, y=g.y.float(),
                         mask=torch.ones(g.num_nodes, dtype=torch.bool), gid=i)
                )
            splits[s] = graphs
        first = splits["train"][0]
        return GraphDataset(key, MULTI, first.x.shape[1], first.y.shape[1], splits, False, info)
    ds = parts[0]
    g = ds[0]
    x = g.x.float()
    if spec.family == "Planetoid":
        # Row-normalised bag-of-words, as in the GCN and GAT papers' Planetoid experiments.
        x = x / x.sum(dim=1, keepdim=True).clamp(min=1)
    num_classes = int(ds.num_classes)
    if spec.official_split:
        masks = (g.train_mask, g.val_mask, g.test_mask)
    else:
        masks = stratified_split(g.y, num_classes, seed=split_seed)
        info["split_seed"] = split_seed
        info["split"] = "stratified 20 train / 30 val per class, rest test"
    return _transductive(key, SINGLE, num_classes, x, g.edge_index, g.y, masks, info)


_NPZ_REQUIRED = ("x", "edge_index", "y")
_NPZ_MASKS = ("train_mask", "val_mask", "test_mask")

# numpy dtype kinds: b bool, i signed int, u unsigned int, f float. Checked by kind rather than
# np.issubdtype, which counts timedelta64 as an integer and lets complex or void slip into np.isin.
_INT = "iu"
_NUMERIC = "biuf"


def _key_name(key: str) -> str:
    # Key names come from the user's file: quote odd ones so a control character cannot break
    # the one-line error message.
    return key if key.isidentifier() else repr(key)


def _reason(e: BaseException) -> str:
    """``Type: first line of the message``, short enough for a one-line error."""
    text = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# What a .npz (a zip archive: local file header, or the end record of an empty one) and a .npy
# start with. np.load unpickles anything else, so a text file would get its allow_pickle hint:
# advice to load unsafely.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    try:
        # Our own handle: np.load leaks the one it opens when the zip directory is unreadable.
        with open(p, "rb") as fh:
            head = fh.read(6)
            if not head.startswith(_ZIP_MAGIC) and not head.startswith(_NPY_MAGIC):
                raise DataError(
                    f"{p} is not a readable .npz file (not a zip archive of arrays: it starts "
                    f"with {head[:4]!r}); save the graph with np.savez(path, x=..., "
                    "edge_index=..., y=...)"
                )
            fh.seek(0)
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise DataError(
                    f"{p} holds a single array (.npy), not a .npz archive of named arrays; "
                    "save it with np.savez(path, x=..., edge_index=..., y=...)"
                )
            with loaded as z:
                arrays = {k: z[k] for k in z.files}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zip/pickle/format errors all mean "not a valid npz"
        raise DataError(f"{p} is not a readable .npz file ({_reason(e)})") from None
    # A zip member that is not in .npy format comes back as raw bytes, not as an array.
    raw = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if raw:
        raise DataError(
            f"{p}: member(s) {', '.join(map(_key_name, raw))} are not .npy arrays; "
            "write the file with np.savez"
        )
    return arrays


def _features(p: Path, x: np.ndarray) -> Tensor:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{p}: x must have shape [N, F] with N, F > 0, got {list(x.shape)}")
    if x.dtype.kind not in _NUMERIC:
        raise DataError(f"{p}: x must be numeric (bool, int or float), got dtype {x.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        # Training runs in float32: a float64 feature beyond its range would become inf there.
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{p}: x contains NaN or infinite values")
        raise DataError(
            f"{p}: x has values beyond float32's range (|x| > {np.finfo(np.float32).max:.3g}); "
            "rescale the features"
        )
    return torch.from_numpy(x32)


def _edges(p: Path, ei: np.ndarray, n: int) -> Tensor:
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise DataError(f"{p}: edge_index must have shape [2, E], got {list(ei.shape)}")
    if ei.dtype.kind not in _INT:
        raise DataError(f"{p}: edge_index must be an integer array, got dtype {ei.dtype}")
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise DataError(
            f"{p}: edge_index refers to node {int(ei.max() if ei.max() >= n else ei.min())}, "
            f"outside 0..{n - 1}"
        )
    return torch.from_numpy(ei.astype(np.int64))


def _labels(p: Path, y: np.ndarray, n: int) -> tuple[str, int, Tensor]:
    """(task, number of classes, targets) from ``y`` [N] class ids or [N, C] 0/1."""
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise DataError(f"{p}: y must have shape [N] or [N, C] with C > 0, got {list(y.shape)}")
    if y.shape[0] != n:
        raise DataError(f"{p}: y has {y.shape[0]} rows but x has {n} nodes")
    if y.ndim == 2:
        if y.dtype.kind not in _NUMERIC or not np.isin(y, (0, 1)).all():
            raise DataError(f"{p}: multi-label y must contain only 0 and 1 (got dtype {y.dtype})")
        return MULTI, y.shape[1], torch.from_numpy(y.astype(np.float32))
    if y.dtype.kind not in _INT:
        raise DataError(f"{p}: single-label y must be integer class ids, got dtype {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{p}: labels out of range: found {int(y.min())}, must be >= 0")
    num_classes = int(y.max()) + 1
    present = np.unique(y)
    if present.size < num_classes:
        # Gaps would silently become classes no node has (and a stray huge id a huge model).
        # ``present`` is sorted: the first gap is the first position whose value differs.
        gap = int(np.flatnonzero(present != np.arange(present.size))[0])
        raise DataError(
            f"{p}: labels out of range: classes must be numbered 0..C-1 without gaps; "
            f"max label {num_classes - 1} but no node has class {gap}"
        )
    if num_classes < 2:
        raise DataError(f"{p}: y has a single class; at least 2 are needed")
    return SINGLE, num_classes, torch.from_numpy(y.astype(np.int64))


def _given_masks(p: Path, arrays: dict[str, np.ndarray], n: int) -> tuple[Tensor, ...]:
    masks = []
    for k in _NPZ_MASKS:
        m = arrays[k]
        if m.shape != (n,):
            raise DataError(f"{p}: {k} must have shape [{n}], got {list(m.shape)}")
        if m.dtype != np.bool_ and not (m.dtype.kind in _INT and np.isin(m, (0, 1)).all()):
            raise DataError(f"{p}: {k} must be boolean (or 0/1), got dtype {m.dtype}")
        masks.append(torch.from_numpy(m.astype(bool)))
    if (masks[0] & masks[1]).any() or (masks[0] & masks[2]).any() or (masks[1] & masks[2]).any():
        raise DataError(f"{p}: train/val/test masks overlap")
    for k, m in zip(_NPZ_MASKS, masks):
        if not m.any():
            raise DataError(f"{p}: {k} selects no nodes")
    return tuple(masks)


def load_npz(path: str | os.PathLike, split_seed: int = 0) -> GraphDataset:
    """Load a user's graph from ``.npz``; every inconsistency is a :class:`DataError`.

    Keys: ``x`` [N, F] float, ``edge_index`` [2, E] int (row 0 source, row 1 target), ``y`` [N]
    int class ids or [N, C] 0/1 multi-label targets, optional ``train_mask``/``val_mask``/
    ``test_mask`` [N] bool. Without masks: stratified 20/30 per class (single-label) or a random
    60/20/20 split (multi-label), both from ``split_seed``. Any other key is an error (a typo such
    as ``trian_mask`` must not silently fall back to a random split). The file is read without
    unpickling: object arrays are refused, never executed.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"{p} is a directory, not a .npz graph file")
    if not p.is_file():
        raise DataError(f"graph file not found: {p}")
    arrays = _read_npz(p)
    missing = [k for k in _NPZ_REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"{p}: missing key(s) {', '.join(missing)}; required: x, edge_index, y")
    extra = sorted(set(arrays) - set(_NPZ_REQUIRED) - set(_NPZ_MASKS))
    if extra:
        raise DataError(
            f"{p}: unexpected key(s) {', '.join(map(_key_name, extra))}; allowed: "
            f"{', '.join(_NPZ_REQUIRED + _NPZ_MASKS)}"
        )
    xt = _features(p, arrays["x"])
    n = xt.shape[0]
    eit = _edges(p, arrays["edge_index"], n)
    task, num_classes, yt = _labels(p, arrays["y"], n)
    present = [k for k in _NPZ_MASKS if k in arrays]
    if present and len(present) != 3:
        raise DataError(f"{p}: give all three masks or none; found only {', '.join(present)}")
    info: dict = {"source": str(p.resolve()), "split_seed": None}
    if present:
        masks = _given_masks(p, arrays, n)
    elif task == SINGLE:
        masks = stratified_split(yt, num_classes, seed=split_seed)
        info["split_seed"] = split_seed
        info["split"] = "stratified 20 train / 30 val per class, rest test"
    else:
        masks = random_split(n, seed=split_seed)
        if not all(m.any() for m in masks):
            raise DataError(
                f"{p}: {n} nodes are too few for a random 60/20/20 split (a split would be "
                "empty); give train_mask, val_mask and test_mask"
            )
        info["split_seed"] = split_seed
        info["split"] = "random 60/20/20"
    return _transductive(p.stem, task, num_classes, xt, eit, yt, masks, info)
