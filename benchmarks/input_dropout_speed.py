"""Time of one full-batch training step (forward, backward, Adam) with dense against sparse input
dropout, for the student and every teacher of a preset. Steps of the two modes are interleaved in
one process, so compare the ratios. The weights are freshly initialised (a step costs the same).

    MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/input_dropout_speed.py \
        --dataset coauthor-cs --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from mskd.config import preset
from mskd.data import canonical_name, load_dataset
from mskd.models import GNN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="coauthor-cs")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model and mode")
    a = p.parse_args()
    import torch
    import torch.nn.functional as F

    cfg = preset(canonical_name(a.dataset))
    data = load_dataset(a.dataset)
    g = data.splits["train"][0]
    density = float((g.x != 0).float().mean())
    models = [("student", cfg.student)] + [(f"teacher-{t.hidden_layers}", t) for t in cfg.teachers]
    rows = {}
    for name, mcfg in models:
        steps = {}
        for mode in ("dense", "sparse"):
            torch.manual_seed(0)
            model = GNN(data.num_features, data.num_classes,
                        dataclasses.replace(mcfg, input_dropout=mode)).train()
            steps[mode] = (model, torch.optim.Adam(model.parameters(), lr=0.005))

        def step(model, opt) -> None:
            opt.zero_grad()
            logits, _ = model(g.x, g.edge_index)
            F.cross_entropy(logits[g.mask], g.y[g.mask]).backward()
            opt.step()

        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        for mode in ("dense", "sparse"):
            step(*steps[mode])  # warm-up; also finds the non-zeros once, as training's first step
        for _ in range(a.repeats):
            for mode in ("dense", "sparse"):
                t0 = time.perf_counter()
                step(*steps[mode])
                times[mode].append(time.perf_counter() - t0)
        dense_s, sparse_s = (statistics.median(times[m]) for m in ("dense", "sparse"))
        rows[name] = {"dense_step_s": round(dense_s, 3), "sparse_step_s": round(sparse_s, 3),
                      "speedup": round(dense_s / sparse_s, 2)}
        print(name, rows[name], flush=True)
    print(json.dumps({"dataset": data.name, "nodes": int(g.num_nodes),
                      "edges": int(g.edge_index.shape[1]), "features": data.num_features,
                      "feature_density": round(density, 4), "threads": torch.get_num_threads(),
                      "repeats": a.repeats, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
