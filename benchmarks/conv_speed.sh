#!/usr/bin/env bash
# docs/performance.md, "Fused message passing": PyG's layers against mskd's fused ones.
#   1. mskd bench --conv pyg,fused on PPI-like data (ppi preset) and on Coauthor Physics;
#   2. a neighbour-sampled mskd student epoch on Physics with each implementation (2-epoch
#      teachers trained once, shared; --epochs applies to them too), timed from the run's own train_s, peak RSS from time -v.
# Every step writes its own file under OUT and is skipped when that file exists (rerun to resume).
# Usage: MSKD_DATA_ROOT=../shared/data [PHYSICS_ROUNDS=3] bash benchmarks/conv_speed.sh [OUT_DIR] [THREADS]
set -euo pipefail
out=${1:-runs/conv-speed}
threads=${2:-2}
mkdir -p "$out"
export OMP_NUM_THREADS=$threads
root=${MSKD_DATA_ROOT:-../shared/data}

if [ ! -d "$out/ppilike/PPI/raw" ]; then
  python ../shared/tools/ppi_like.py "$out/ppilike/PPI/raw" --seed 0 > /dev/null
fi
[ -f "$out/ppi.json" ] || mskd bench --dataset ppi --data-root "$out/ppilike" --conv pyg,fused \
  --rounds 3 --epochs 2 --teacher-epochs 1 --repeats 5 --warmup 1 --json "$out/ppi.json" \
  | tee "$out/ppi.txt"
[ -f "$out/physics.json" ] || mskd bench --dataset coauthor-physics --data-root "$root" \
  --conv pyg,fused --rounds "${PHYSICS_ROUNDS:-3}" --epochs 3 --teacher-epochs 1 --repeats 5 --warmup 1 \
  --json "$out/physics.json" | tee "$out/physics.txt"

sampled=(--sampler neighbor --fanout 10,5 --batch-size 1024 --chunk-size 4096)
[ -f "$out/pt/teachers/teacher-3.pt" ] || mskd teachers --dataset coauthor-physics \
  --data-root "$root" --epochs 2 --patience 5 --out "$out/pt" --quiet "${sampled[@]}"
for conv in pyg fused; do
  [ -f "$out/sampled-$conv/results.json" ] || /usr/bin/time -v -o "$out/sampled-$conv.time" \
    mskd distill --dataset coauthor-physics --data-root "$root" --method mskd --epochs 2 \
    --patience 5 --teachers "$out/pt/teachers" --out "$out/sampled-$conv" --conv "$conv" \
    --quiet "${sampled[@]}"
  python - "$out/sampled-$conv" <<'EOF'
import json, re, sys
from pathlib import Path
d = Path(sys.argv[1])
rec = json.loads((d / "results.json").read_text())["student"]
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", (d.parent / f"{d.name}.time").read_text())
print(f"{d.name}: {rec['train_s'] / 2:.1f} s per sampled epoch (2 epochs), "
      f"peak RSS {int(rss.group(1)) / 1024:.0f} MB")
EOF
done
