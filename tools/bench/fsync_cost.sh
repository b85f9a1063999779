#!/usr/bin/env bash
# What --fsync costs: `shmgemm multiply` on N^2 float64 operands without and with it, alternating,
# ROUNDS times each, in a folder on the disk the results go to (default: beside this script's
# build). Prints the medians and their ratio.
# Usage: tools/bench/fsync_cost.sh [N=4000] [ROUNDS=5] [FOLDER=build/fsync-cost]
set -euo pipefail
here=$(cd -P "$(dirname "$0")/../.." && pwd)
n=${1:-4000} rounds=${2:-5} dir=${3:-$here/build/fsync-cost}
# The build's program, else the one on PATH (an installed copy).
shmgemm=$here/build/bin/shmgemm
[[ -x $shmgemm ]] || shmgemm=$(command -v shmgemm)
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
"$shmgemm" gen --shape "${n}x${n}" -o "$dir/A.npy"
"$shmgemm" gen --shape "${n}x${n}" --seed 1 -o "$dir/B.npy"
plain=() durable=()
for ((i = 0; i < rounds; i++)); do
  for mode in plain durable; do
    flag=(); [[ $mode == durable ]] && flag=(--fsync)
    t0=$(date +%s.%N)
    "$shmgemm" multiply "$dir/A.npy" "$dir/B.npy" -o "$dir/C.npy" "${flag[@]}" >/dev/null
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')
    [[ $mode == plain ]] && plain+=("$t") || durable+=("$t")
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p=$(median "${plain[@]}") d=$(median "${durable[@]}")
echo "multiply ${n}^2 float64, whole process, medians of $rounds alternating runs:"
echo "  without --fsync: $p s"
echo "  with --fsync:    $d s ($(awk -v a="$p" -v b="$d" 'BEGIN {printf "%.2f", b / a}')x)"
