#!/usr/bin/env bash
# Two builds of shmgemm side by side on this machine, in one run, alternating: `shmgemm bench`
# (the engine's plans on 4000^2, 2000^2, 50x100000x60 and 64^2 float64, no peers) and
# `shmgemm bench --matmul` (np.matmul's cases), each ROUNDS times per build (each build first
# every other round), then the median
# seconds of every variant for both builds and their ratio (new / old: below 1 is faster).
# Each build calibrates first, into a cache of its own (XDG_CACHE_HOME): a build cannot read
# another version's cache, and would plan with its built-in defaults.
# Usage: tools/bench/compare_builds.sh OLD_SHMGEMM NEW_SHMGEMM [ROUNDS]
#   e.g. git worktree add /tmp/old <commit> && cmake -S /tmp/old -B /tmp/old/build &&
#        cmake --build /tmp/old/build --target shmgemm-cli shmgemm-worker &&
#        tools/bench/compare_builds.sh /tmp/old/build/bin/shmgemm build/bin/shmgemm 5
set -euo pipefail
old=$1 new=$2 rounds=${3:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A build's program, run with its own calibration cache: shmgemm_of old|new ARGS...
shmgemm_of() {
  local which=$1 exe=$old
  [[ $which == new ]] && exe=$new
  XDG_CACHE_HOME="$out/cache-$which" "$exe" "${@:2}"
}
for which in old new; do
  shmgemm_of "$which" calibrate >/dev/null
done
# Alternating, and each build first every other round: whatever the first run of a round
# leaves (warm caches, a hotter CPU) favours neither.
for ((r = 0; r < rounds; r++)); do
  order="old new"
  ((r % 2)) && order="new old"
  for which in $order; do
    shmgemm_of "$which" bench --no-peers --rounds 1 --shapes 4000,2000,50x100000x60,64 --json \
      >"$out/bench-$which-$r.json"
    shmgemm_of "$which" bench --matmul --rounds 1 --json >"$out/matmul-$which-$r.json" 2>/dev/null
  done
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def collect(kind, key, value):
    table = {}
    for which in ("old", "new"):
        for r in range(rounds):
            for row in json.load(open(f"{out}/{kind}-{which}-{r}.json"))["results"]:
                table.setdefault(key(row), {"old": [], "new": []})[which].append(value(row))
    return table
def show(title, table):
    print(f"{title:<44} {'old s':>9} {'new s':>9} {'new/old':>8}")
    for name, v in table.items():
        if not v["old"] or not v["new"]:
            continue  # a variant only one build has (the newer bench's limit row)
        o, n = statistics.median(v["old"]), statistics.median(v["new"])
        print(f"{name:<44} {o:9.4f} {n:9.4f} {n / o:8.3f}")
show("bench (shape, variant), median of %d" % rounds,
     collect("bench", lambda r: f"{r['shape']} {r['variant']}", lambda r: r["seconds"]))
print()
show("bench --matmul (case), whole job",
     collect("matmul", lambda r: r["label"], lambda r: r["shmgemm_seconds"]))
PY
