#!/usr/bin/env bash
# Regenerate docs/results.md's tables and figures: for each dataset, the 5-seed comparison of the
# teachers and all seven student methods, then the accuracy-by-degree analysis of the same runs.
# Resumable: rerun the same command after an interruption and finished cells are kept.
#
# Usage: benchmarks/reproduce.sh [OUT_ROOT] DATASET...
#   e.g. MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 bash benchmarks/reproduce.sh runs/results cora
# Amazon and Coauthor run with --patience 50 (their cost is dominated by the GAT teachers).
# JOBS=N (default 1) splits each dataset's seeds over N processes sharing its directory (seeds
# i, i+N, ...; logs in OUT/job-i.log), then one more call writes the combined tables. Use one
# job per core with OMP_NUM_THREADS=1.
set -euo pipefail
root=${1:?usage: reproduce.sh OUT_ROOT DATASET...}; shift
jobs=${JOBS:-1}
for ds in "$@"; do
  extra=()
  case $ds in amazon-*|coauthor-*) extra=(--patience 50);; esac
  # The tables of docs/results.md's first sections are the paper's node attention.
  extra+=(--attention node)
  out=$root/$ds
  start=$(date +%s)
  if [ "$jobs" -gt 1 ]; then
    mkdir -p "$out"
    pids=()
    for ((j = 0; j < jobs; j++)); do
      seeds=$(seq -s, "$j" "$jobs" 4)
      [ -n "$seeds" ] || continue
      mskd compare --dataset "$ds" --seeds "$seeds" --out "$out" "${extra[@]}" \
        > "$out/job-$j.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do
      wait "$pid" || { echo "$ds: a compare job failed, see $out/job-*.log" >&2; exit 1; }
    done
  fi
  mskd compare --dataset "$ds" --seeds 0-4 --out "$out" --plot "${extra[@]}"
  mskd degree --run "$out"
  echo "$ds: compare + degree took $(( $(date +%s) - start )) s (cells already finished are not rerun)"
  mkdir -p docs/figures
  cp "$out/compare.png" "docs/figures/$ds-compare.png"
  cp "$out/degree.png" "docs/figures/$ds-degree.png"
done
