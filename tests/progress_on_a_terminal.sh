#!/bin/sh
# footprint and bench draw their progress on a terminal (here a pseudo-terminal from script(1)),
# as multiply does, and not when stderr is not one.
# usage: progress_on_a_terminal.sh SHMGEMM
set -eu
cli=$1
check() {  # what, command, expected text on the terminal
  out=$(script -qec "$2" /dev/null)
  case "$out" in
    *"$3"*) ;;
    *) echo "$1: no '$3' on the terminal: $out" >&2; exit 1 ;;
  esac
  piped=$(sh -c "$2" 2>&1 >/dev/null)
  case "$piped" in
    *"$3"*) echo "$1: progress drawn on a pipe: $piped" >&2; exit 1 ;;
  esac
}
check footprint "$cli footprint --shape 64 --modes threads --workers 1" "footprint: threads with 1 worker (1 of 1)"
check bench "$cli bench --shapes 64 --rounds 2 --no-peers" "bench: 64 round 2 of 2"
echo "progress: drawn on a terminal, not on a pipe"
