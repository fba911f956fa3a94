#!/usr/bin/env bash
# Regenerate docs/results.md's tables and figures: for each dataset, the 5-seed comparison of the
# teachers and all seven student methods, then the accuracy-by-degree analysis of the same runs.
# Resumable: rerun the same command after an interruption and finished cells are kept.
#
# Usage: benchmarks/reproduce.sh [OUT_ROOT] DATASET...
#   e.g. MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 bash benchmarks/reproduce.sh runs/results cora
# Amazon and Coauthor run with --patience 50 (their cost is dominated by the GAT teachers).
set -euo pipefail
root=${1:?usage: reproduce.sh OUT_ROOT DATASET...}; shift
for ds in "$@"; do
  extra=()
  case $ds in amazon-*|coauthor-*) extra=(--patience 50);; esac
  out=$root/$ds
  start=$(date +%s)
  mskd compare --dataset "$ds" --seeds 0-4 --out "$out" --plot "${extra[@]}"
  mskd degree --run "$out"
  echo "$ds: compare + degree took $(( $(date +%s) - start )) s (cells already finished are not rerun)"
  mkdir -p docs/figures
  cp "$out/compare.png" "docs/figures/$ds-compare.png"
  cp "$out/degree.png" "docs/figures/$ds-degree.png"
done
