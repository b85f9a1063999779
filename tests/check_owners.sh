#!/bin/sh
# Every descriptor and mapping has an owner: mmap and memfd_create are called only by the
# owners in common/mapping.cpp, and every open() hands its descriptor straight to an Fd.
# Prints each call that does otherwise.
set -eu
root=${1:?usage: check_owners.sh SOURCE_DIR}
cd "$root"
dirs="common engine worker tools mpi python"
raw=$(grep -rnE '(::|[^_[:alnum:]])(mmap|memfd_create)\(' $dirs --include='*.cpp' --include='*.hpp' |
  grep -v '^common/mapping\.cpp:' | grep -vE '^[^:]+:[0-9]+: *//' || true)
opens=$(grep -rnE '[^[:alnum:]_]::open\(' $dirs --include='*.cpp' --include='*.hpp' |
  grep -vE '(Fd [a-z_]+\(|Fd\(|\.reset\()::open\(' || true)
if [ -n "$raw$opens" ]; then
  echo "system resources without an owner (Fd, Mapping):" >&2
  [ -n "$raw" ] && echo "$raw" >&2
  [ -n "$opens" ] && echo "$opens" >&2
  exit 1
fi
echo "owners: every mapping is a Mapping, every descriptor an Fd"
