#!/usr/bin/env bash
# docs/scale.md, "1 vs 2 processes": the same neighbour-sampled student trained with one process
# and one thread, one process and two threads, and two processes (DDP, gloo) of one thread each.
# Teachers are trained once (few epochs: only the student's time is compared).
# Usage: MSKD_DATA_ROOT=../shared/data bash benchmarks/nproc_time.sh [OUT_DIR] [DATASET]
set -euo pipefail
out=${1:-runs/nproc-time}; ds=${2:-amazon-photo}
args=(--dataset "$ds" --method kd --epochs 10 --patience 10 --sampler neighbor --fanout 10,5
      --batch-size 512 --teachers "$out/teachers" --quiet)
run() {
  local name=$1 threads=$2; shift 2
  [ -f "$out/$name/results.json" ] || OMP_NUM_THREADS=$threads mskd distill "${args[@]}" \
    --out "$out/$name" "$@"
}
run p1-t1 1
run p1-t2 2
run p2-t1 1 --nproc 2
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
base = None
for name in ("p1-t1", "p1-t2", "p2-t1"):
    s = json.loads((out / name / "results.json").read_text())["student"]
    base = base or s["train_s"]
    print(f"{name}: train {s['train_s']:.1f} s ({base / s['train_s']:.2f}x of p1-t1), "
          f"val {s['val']:.4f}, test {s['test']:.4f}, processes {s['scale']['processes']}")
PY
