"""ogbn-arxiv and ogbn-products through the ``ogb`` package (``pip install ogb``).

OGB's loader downloads and processes the data under ``<data root>/OGB/`` (the root must be
writable for these datasets) and its official split is used as is: arxiv by publication year,
products by sales rank. Both are single-label, so our accuracy is the metric OGB's ``Evaluator``
reports for them (``acc``); :func:`ogb_accuracy` computes it with OGB's Evaluator when ``ogb`` is
installed, for a cross-check. ogbn-arxiv's citation edges are directed; like OGB's own examples
we add the reverse edges.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.utils import to_undirected

from .errors import DataError

OGB_DATASETS = ("ogbn-arxiv", "ogbn-products")


def _folder(root: Path, name: str) -> Path:
    return root / "OGB" / name.replace("-", "_")


def _import_ogb():
    try:
        from ogb.nodeproppred import PygNodePropPredDataset
    except ImportError:
        return None
    return PygNodePropPredDataset


def load_ogb(name: str, root: Path, offline: bool):
    """(x, edge_index, y, (train, val, test) masks, info) of an OGB node-property dataset.

    Raises:
        DataError: ``ogb`` not installed, or the dataset missing while offline.
    """
    folder = _folder(root, name)
    present = (folder / "processed").is_dir() or (folder / "raw").is_dir()
    if offline and not present:
        raise DataError(
            f"dataset {name} not found: missing {folder}; run once with internet access "
            "(OGB downloads it there) or copy the folder from a machine that has it "
            "(MSKD_OFFLINE is set)"
        )
    cls = _import_ogb()
    if cls is None:
        raise DataError(f"{name} needs the ogb package: pip install ogb")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            ds = cls(name=name, root=str(root / "OGB"))
    except Exception as e:  # noqa: BLE001 - download/parse failures all mean "data unusable"
        raise DataError(f"could not load {name} into {folder}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    g = ds[0]
    split = ds.get_idx_split()
    n = g.num_nodes
    masks = []
    for key in ("train", "valid", "test"):
        m = torch.zeros(n, dtype=torch.bool)
        m[split[key]] = True
        masks.append(m)
    edge_index = to_undirected(g.edge_index, num_nodes=n) if name == "ogbn-arxiv" else g.edge_index
    info = {"source": str(folder), "split_seed": None, "split": "OGB official"}
    return g.x.float(), edge_index, g.y.view(-1).long(), tuple(masks), info


def ogb_accuracy(name: str, y_true: Tensor, logits: Tensor) -> float:
    """Accuracy by OGB's own Evaluator (requires ``ogb``)."""
    from ogb.nodeproppred import Evaluator

    pred = logits.argmax(dim=-1, keepdim=True)
    return float(Evaluator(name).eval({"y_true": y_true.view(-1, 1), "y_pred": pred})["acc"])
