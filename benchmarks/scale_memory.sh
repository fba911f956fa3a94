#!/usr/bin/env bash
# docs/scale.md, "Memory as the graph grows": Coauthor Physics at a fixed batch size, the graph
# halved (induced subgraph), whole, and replicated 2x and 4x (disjoint copies, same degrees).
# One fresh process per row; a row whose JSON exists is skipped (rerun to resume).
# Usage: MSKD_DATA_ROOT=../shared/data bash benchmarks/scale_memory.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/scale-memory}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
nb=(--sampler neighbor --fanout 5,3,2 --batch-size 256 --chunk-size 4096)
row() {
  local name=$1; shift
  [ -f "$out/$name.json" ] || python "$here/scale_memory.py" --method none --epochs 3 "$@" \
    --out "$out/$name.json"
}
row nb-half "${nb[@]}" --keep-nodes 0.5
row nb-x1 "${nb[@]}"
row nb-x2 "${nb[@]}" --replicate 2
row nb-x4 "${nb[@]}" --replicate 4
row full-half --sampler full --keep-nodes 0.5
row full-x1 --sampler full
row full-x2 --sampler full --replicate 2
row full-x4 --sampler full --replicate 4
