"""Where neighbour-sampled training's memory goes, phase by phase (docs/scale.md).

Builds the sampler, runs three epochs of plain sampled training steps of the coauthor preset's
student on Coauthor Physics (replicated ``--replicate K`` times), then ``--passes`` layer-wise passes
over all nodes, and prints each phase's resident-set peak above the memory held when it started, and
what stays resident after it, and the sampled batches' sizes in nodes. Run once per graph size;
compare the rows.

    MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/scale_memory_phases.py \
        --replicate 2
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

# isort: off
import mskd  # noqa: F401 - sets torch's allocator options before torch is imported
import torch
import torch.nn.functional as F
from scale_memory import _replicate, _status
# isort: on

from mskd.config import preset
from mskd.data import load_dataset
from mskd.models import GNN
from mskd.sampling import SeedBatches


def _mb(field: str) -> int:
    return round(_status(field) / 2**20)


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _mb("VmRSS")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicate", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--passes", type=int, default=3, help="layer-wise passes to run")
    a = p.parse_args()
    data = load_dataset("coauthor-physics")
    if a.replicate > 1:
        data = _replicate(data, a.replicate, 0)
    g = data.splits["train"][0]
    model = GNN(data.num_features, data.num_classes, preset("coauthor-physics").student)
    opt = torch.optim.Adam(model.parameters())
    gc.collect()
    base = _reset_peak()
    rec = {"nodes": int(g.num_nodes), "edges": int(g.edge_index.shape[1])}
    batches = SeedBatches(g, g.mask.nonzero().view(-1), [5, 3, 2], 256, seed=0)
    rec["sampler_peak_mb"] = _mb("VmHWM") - base
    start = _reset_peak()
    model.train()
    sizes = []
    for epoch in range(3):
        for b in batches(epoch):
            sizes.append(int(b.num_nodes))
            opt.zero_grad()
            z, _ = model(b.x, b.edge_index)
            F.cross_entropy(z[: b.batch_size], b.y[: b.batch_size]).backward()
            opt.step()
    rec["train_steps_peak_mb"] = _mb("VmHWM") - start
    rec["batch_nodes_mean"] = round(sum(sizes) / len(sizes))
    rec["batch_nodes_max"] = max(sizes)
    rec["resident_after_training_mb"] = _mb("VmRSS") - base
    start = _reset_peak()
    for _ in range(a.passes):
        model.layerwise(g.x, g.edge_index, a.chunk_size, keep_hidden=False)
    rec["layerwise_peak_mb"] = _mb("VmHWM") - start
    rec["resident_after_layerwise_mb"] = _mb("VmRSS") - base
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
