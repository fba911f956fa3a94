#!/usr/bin/env bash
# Multi-seed comparison of student methods with the dataset preset (resumable: a finished
# run directory is skipped, teachers are trained once per seed and shared by all methods).
# Usage: benchmarks/seeds.sh DATASET "0 1 2 3 4" "none kd mskd" [OUT_ROOT] [extra mskd args...]
set -euo pipefail
dataset=$1; seeds=$2; methods=$3; root=${4:-runs/seeds}; shift $(( $# < 4 ? $# : 4 ))
for seed in $seeds; do
  for method in $methods; do
    out=$root/$dataset/seed$seed/$method
    if [ -f "$out/results.json" ]; then echo "skip $out (finished)"; continue; fi
    echo "== $dataset seed $seed method $method ($(date +%H:%M:%S))"
    mskd distill --dataset "$dataset" --seed "$seed" --method "$method" --out "$out" \
      --teachers "$root/$dataset/seed$seed/teachers" --quiet "$@"
  done
done
python benchmarks/aggregate.py "$root/$dataset"
