#!/usr/bin/env bash
# Issues 19 and 20: per dataset, the 5-seed comparison of the GAT student trained alone, with
# kd, uniform averaging, the paper's node attention (mskd) and the teacher-side selection modes
# (confidence, degree, gate); the headroom analysis of the same teachers (mskd degree); the MLP
# student with none, kd, uniform and mskd on the *same* teachers; with AUTO=1, lsp and mskd
# with --kernel-scale auto on the same teachers again; with CONTROL=1, the same-depth control:
# three 2-layer teachers from different seeds (--teacher-depths 2,2,2, a plain ensemble; the
# first is the main comparison's teacher-2) distilled with uniform and mskd, and its headroom;
# with WIDE=1, an MLP student four times wider with dropout 0.3 (--student-heads 8
# --student-dropout 0.3 on the citation presets' 2 x 8), same teachers, none, kd, uniform, mskd;
# with HOPS=K, the MLP student whose first layer mixes K propagated hops (--student-hops K);
# with MIXED=1, teachers of three architectures at depths 1,2,3 (--teacher-archs gat,gcn,sage),
# kd, uniform, mskd and calibrated on them, and their headroom: do more diverse teachers give
# the selection modes something to select, or the student more to learn?
# Resumable: rerun the same command and finished cells are kept; SEEDS (default 0-4) picks the
# seeds, so SEEDS=0-2 first and SEEDS=0-4 later extends the same directories.
#
# Usage: benchmarks/selection.sh OUT_ROOT DATASET...
#   e.g. MSKD_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 bash benchmarks/selection.sh runs/r19 cora
# Amazon and Coauthor run with --patience 50, as in benchmarks/reproduce.sh.
set -euo pipefail
root=${1:?usage: selection.sh OUT_ROOT DATASET...}; shift
seeds=${SEEDS:-0-4}
# METHODS narrows the GAT comparison (e.g. METHODS=none,kd,uniform,mskd,gate to fit the time).
methods=${METHODS:-none,kd,uniform,mskd,confidence,degree,gate}
# The teachers of OUT/D are copied into the other comparisons of D before they start, so every
# student of a seed learns from the same teacher checkpoints (mskd reuses a matching checkpoint).
share_teachers() {
  local from=$1 to=$2
  for s in "$from"/seed*/teachers; do
    local dest=$to/$(basename "$(dirname "$s")")/teachers
    [ -e "$dest" ] && continue
    mkdir -p "$dest"
    cp "$s"/teacher-*.pt "$dest"/
  done
}
for ds in "$@"; do
  extra=()
  case $ds in amazon-*|coauthor-*) extra=(--patience 50);; esac
  out=$root/$ds
  start=$(date +%s)
  mskd compare --dataset "$ds" --seeds "$seeds" --out "$out" "${extra[@]}" \
    --attention node --methods "$methods"
  mskd degree --run "$out" --no-plot --force
  share_teachers "$out" "$out-mlp"
  mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-mlp" "${extra[@]}" \
    --student-arch mlp --methods none,kd,uniform,mskd
  if [ "${WIDE:-0}" = 1 ]; then
    share_teachers "$out" "$out-mlpw"
    mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-mlpw" "${extra[@]}" \
      --student-arch mlp --student-heads 8 --student-dropout 0.3 --methods none,kd,uniform,mskd
  fi
  if [ -n "${HOPS:-}" ]; then
    share_teachers "$out" "$out-mlph$HOPS"
    mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-mlph$HOPS" "${extra[@]}" \
      --student-arch mlp --student-hops "$HOPS" --methods none,kd,uniform,mskd
  fi
  if [ "${AUTO:-0}" = 1 ]; then
    share_teachers "$out" "$out-auto"
    mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-auto" "${extra[@]}" \
      --kernel-scale auto --methods lsp,mskd
  fi
  if [ "${MIXED:-0}" = 1 ]; then
    mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-mixed" "${extra[@]}" \
      --teacher-archs gat,gcn,sage --attention node --methods kd,uniform,mskd,calibrated
    mskd degree --run "$out-mixed" --no-plot --force
  fi
  if [ "${CONTROL:-0}" = 1 ]; then
    for t in "$out"/seed*/teachers/teacher-2.pt; do
      dest=$out-same2/$(basename "$(dirname "$(dirname "$t")")")/teachers
      [ -e "$dest/teacher-2.pt" ] || { mkdir -p "$dest"; cp "$t" "$dest/"; }
    done
    mskd compare --dataset "$ds" --seeds "$seeds" --out "$out-same2" "${extra[@]}" \
      --teacher-depths 2,2,2 --methods uniform,mskd
    mskd degree --run "$out-same2" --no-plot --force
  fi
  echo "$ds: done in $(( $(date +%s) - start )) s (cells already finished are not rerun)"
done
