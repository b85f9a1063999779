#!/bin/sh
# The layers point one way: nothing in common/ or worker/ includes a file of engine/, and
# nothing in common/ includes a file of worker/. Prints each include that points back up.
set -eu
root=${1:?usage: check_layers.sh SOURCE_DIR}
cd "$root"
up=$(grep -rnE '#include +"(engine/|shmgemm/(shmgemm|pool|array_view|matrix_view)\.hpp)' common worker || true)
up="$up$(grep -rnE '#include +"worker/' common || true)"
if [ -n "$up" ]; then
  echo "includes that point up a layer:" >&2
  echo "$up" >&2
  exit 1
fi
echo "layers: common/ and worker/ include nothing above them"
