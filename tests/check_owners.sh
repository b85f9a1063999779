#!/bin/sh
# Every descriptor, mapping and process has an owner: mmap and memfd_create are called only by
# the owners in common/mapping.cpp, every open() hands its descriptor straight to an Fd, and
# processes are started only by engine/launcher.cpp (Process). Prints each call that does
# otherwise.
set -eu
root=${1:?usage: check_owners.sh SOURCE_DIR}
cd "$root"
dirs="common engine worker tools mpi python"
raw=$(grep -rnE '(::|[^_[:alnum:]])(mmap|memfd_create)\(' $dirs --include='*.cpp' --include='*.hpp' |
  grep -v '^common/mapping\.cpp:' | grep -vE '^[^:]+:[0-9]+: *//' || true)
opens=$(grep -rnE '[^[:alnum:]_]::open\(' $dirs --include='*.cpp' --include='*.hpp' |
  grep -vE '(Fd [a-z_]+\(|Fd\(|\.reset\()::open\(' || true)
starts=$(grep -rnE '(::|[^_[:alnum:]])(fork|vfork|posix_spawnp?|exec[lv]p?e?|pidfd_open)\(' $dirs \
  --include='*.cpp' --include='*.hpp' | grep -v '^engine/launcher\.' |
  grep -vE '^[^:]+:[0-9]+: *//' | grep -v '"[^"]*fork()' || true)
if [ -n "$raw$opens$starts" ]; then
  echo "system resources without an owner (Fd, Mapping, Process):" >&2
  [ -n "$raw" ] && echo "$raw" >&2
  [ -n "$opens" ] && echo "$opens" >&2
  [ -n "$starts" ] && echo "$starts" >&2
  exit 1
fi
echo "owners: every mapping is a Mapping, every descriptor an Fd, every process a Process"
