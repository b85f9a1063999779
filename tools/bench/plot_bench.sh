#!/usr/bin/env bash
# Draws throughput against size from a `shmgemm bench --csv` file (square shapes only), one line
# per variant, with gnuplot. usage: tools/bench/plot_bench.sh BENCH.csv OUT.png|OUT.svg
set -euo pipefail
csv=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One data file per variant: "n gflops", square shapes only (m = k = n).
awk -F, -v dir="$work" 'NR > 1 && $2 == $3 && $3 == $4 {
  name = $6; gsub(/[^A-Za-z0-9]+/, "_", name);
  print $2, $8 > (dir "/" name ".dat");
  if (!(name in seen)) { seen[name] = 1; order[++n] = name; label[name] = $6 }
  sizes[$2] = 1;
} END {
  for (i = 1; i <= n; i++) print order[i] "\t" label[order[i]] > (dir "/variants.tsv");
  for (s in sizes) print s > (dir "/sizes.txt")
}' "$csv"
xtics=$(sort -n "$work/sizes.txt" | paste -sd, -)

case "$out" in
  *.svg) terminal="svg size 900,560 dynamic" ;;
  *) terminal="png size 900,560" ;;
esac
plots=""
while IFS=$'\t' read -r file label; do
  style="linespoints lw 2"
  case "$label" in
    auto) style="linespoints lw 4" ;;
    numpy*|joblib*|multiprocessing*) style="linespoints lw 2 dt 2" ;;
  esac
  plots+="${plots:+, }'$work/$file.dat' using 1:2 with $style title '$label'"
done < "$work/variants.tsv"

gnuplot <<GP
set terminal $terminal
set output '$out'
set title 'shmgemm bench: C = A·B, square float64, throughput of the whole job (read, multiply, write)'
set xlabel 'n (A, B, C are n x n)'
set ylabel 'GFLOP/s'
set logscale x 2
set xtics ($xtics)
set termoption noenhanced
set key left top
set grid
plot $plots
GP
echo "plot_bench: wrote $out"
