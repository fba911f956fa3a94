"""Peak memory and time of one student training, full-batch or neighbour-sampled (docs/scale.md).

Run each measurement in a fresh process. The peak reported is the resident-set high-water mark
*during training only*: it is reset (Linux ``/proc/self/clear_refs``) after the dataset, the
teachers and the model are loaded, so loading transients do not hide the training's own memory.
``rss_loaded`` is the resident set at that point (mostly the feature matrix).

    python benchmarks/scale_memory.py --dataset coauthor-physics --teachers DIR --method mskd \
        --sampler neighbor --fanout 10,5 --batch-size 1024 --epochs 20 --out result.json

``--keep-nodes F`` trains on the subgraph induced by the first F x N nodes (same features, a
smaller graph; inducing also lowers the mean degree). ``--replicate K`` trains on K disjoint
copies of the graph: K times the nodes and edges with the same degree distribution, the clean
case of "the graph grows" at a fixed batch size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch_geometric.utils import subgraph

from mskd.config import ScaleConfig, preset, with_depths
from mskd.context import RunContext
from mskd.data import _transductive, canonical_name, load_dataset, stratified_split
from mskd.distill import train_student
from mskd.teachers import train_or_load_teachers


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _shrink(data, keep: float, split_seed: int):
    g = data.splits["train"][0]
    n = int(g.num_nodes * keep)
    ei, _ = subgraph(torch.arange(n), g.edge_index, num_nodes=g.num_nodes)
    y = g.y[:n]
    masks = stratified_split(y, data.num_classes, seed=split_seed)
    return _transductive(f"{data.name}-first{n}", data.task, data.num_classes, g.x[:n].clone(),
                         ei, y, masks, dict(data.info))


def _replicate(data, copies: int, split_seed: int):
    g = data.splits["train"][0]
    n = g.num_nodes
    ei = torch.cat([g.edge_index + k * n for k in range(copies)], dim=1)
    y = g.y.repeat(copies)
    masks = stratified_split(y, data.num_classes, seed=split_seed)
    return _transductive(f"{data.name}-x{copies}", data.task, data.num_classes,
                         g.x.repeat(copies, 1), ei, y, masks, dict(data.info))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="coauthor-physics")
    p.add_argument("--teachers", default=None, help="teacher directory (trained if missing)")
    p.add_argument("--teacher-depths", default="1,2")
    p.add_argument("--method", default="mskd")
    p.add_argument("--sampler", default="full")
    p.add_argument("--fanout", default="10,5")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--teacher-epochs", type=int, default=30,
                   help="epochs (= patience) the teachers in --teachers were trained with")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-nodes", type=float, default=1.0)
    p.add_argument("--replicate", type=int, default=1)
    p.add_argument("--input-dropout", choices=("dense", "sparse"), default=None,
                   help="first-layer dropout of every model (default: the preset's)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = preset(canonical_name(a.dataset))
    train = dataclasses.replace(cfg.student_train, epochs=a.epochs, patience=a.epochs)
    teacher_train = dataclasses.replace(cfg.teacher_train, epochs=a.teacher_epochs,
                                        patience=a.teacher_epochs)
    teacher, student = cfg.teachers[0], cfg.student
    if a.input_dropout:
        teacher = dataclasses.replace(teacher, input_dropout=a.input_dropout)
        student = dataclasses.replace(student, input_dropout=a.input_dropout)
    cfg = dataclasses.replace(
        cfg, seed=a.seed, student_train=train, teacher_train=teacher_train, student=student,
        teachers=with_depths(teacher, tuple(int(d) for d in a.teacher_depths.split(","))),
        distill=dataclasses.replace(cfg.distill, method=a.method),
        scale=ScaleConfig(a.sampler, tuple(int(f) for f in a.fanout.split(",")), a.batch_size,
                          a.chunk_size),
    )
    data = load_dataset(a.dataset)
    if a.keep_nodes < 1.0:
        data = _shrink(data, a.keep_nodes, cfg.split_seed)
    if a.replicate > 1:
        data = _replicate(data, a.replicate, cfg.split_seed)
    out = Path(a.out)
    run_dir = out.with_suffix("")
    run_dir.mkdir(parents=True, exist_ok=True)
    cpu = torch.device("cpu")
    teachers = []
    if a.method != "none":
        teachers = train_or_load_teachers(cfg, data, Path(a.teachers or run_dir / "teachers"),
                                          RunContext(cpu, quiet=True))
    rss_loaded = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    t0 = time.perf_counter()
    student, details = train_student(cfg, data, teachers, run_dir,
                                     RunContext(cpu, quiet=True, fresh=True))
    wall = time.perf_counter() - t0
    g = data.splits["train"][0]
    rec = {
        "dataset": data.name, "nodes": int(g.num_nodes), "edges": int(g.edge_index.shape[1]),
        "method": a.method, "scale": dataclasses.asdict(cfg.scale), "epochs": a.epochs,
        "input_dropout": cfg.student.input_dropout,
        "threads": torch.get_num_threads(),
        "rss_loaded_mb": round(rss_loaded / 2**20, 1),
        "peak_training_mb": round(_status("VmHWM") / 2**20, 1),
        "train_s_per_epoch": round(student.train_s / len(details["history"]), 2),
        "student_wall_s": round(wall, 1),
        "teacher_cache_mb": round(details.get("scale", {}).get("teacher_cache_bytes", 0) / 2**20, 1),
        "best_epoch": student.best_epoch, "val": round(student.val, 4),
        "test": round(student.test, 4),
    }
    out.write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
