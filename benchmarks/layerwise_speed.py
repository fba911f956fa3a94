"""Time of one layer-wise inference pass, projecting each node once (the default) against
gathering the layer's input per chunk (the earlier way), and against one whole-graph forward.
All three run in one process, so compare ratios; the outputs are checked to agree.

    MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/layerwise_speed.py \
        --dataset coauthor-physics --chunk-size 4096 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from unittest import mock

import mskd.inference
from mskd.config import preset
from mskd.data import canonical_name, load_dataset
from mskd.models import GNN


def _median_s(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _logits(model, g, chunk_size: int):
    return model.layerwise(g.x, g.edge_index, chunk_size, keep_hidden=False)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="coauthor-physics")
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    import torch

    torch.manual_seed(0)
    cfg = preset(canonical_name(a.dataset))
    data = load_dataset(a.dataset)
    g = data.splits["train"][0]
    rows = {}
    for name, mcfg in (("student", cfg.student), (f"teacher-{cfg.teachers[-1].hidden_layers}",
                                                   cfg.teachers[-1])):
        model = GNN(data.num_features, data.num_classes, mcfg).eval()
        whole_s, whole = _median_s(partial(model.predict, g.x, g.edge_index), a.repeats)
        layerwise = partial(_logits, model, g, a.chunk_size)
        proj_s, proj = _median_s(layerwise, a.repeats)
        with mock.patch.object(mskd.inference, "linear_first", lambda conv: None):
            gath_s, gath = _median_s(layerwise, a.repeats)
        rows[name] = {
            "whole_graph_s": round(whole_s, 3), "layerwise_projected_s": round(proj_s, 3),
            "layerwise_gathered_s": round(gath_s, 3),
            "gathered_over_projected": round(gath_s / proj_s, 2),
            "max_abs_diff_vs_whole": float(max((proj - whole).abs().max(),
                                               (gath - whole).abs().max())),
        }
    print(json.dumps({"dataset": data.name, "nodes": int(g.num_nodes),
                      "edges": int(g.edge_index.shape[1]), "chunk_size": a.chunk_size,
                      "threads": torch.get_num_threads(), "repeats": a.repeats, "models": rows},
                     indent=1))


if __name__ == "__main__":
    main()
