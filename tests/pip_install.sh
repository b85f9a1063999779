#!/bin/sh
# The package as a user installs it: pip install into a virtual environment of Debian's Python
# that sees its packages, the programs taken from this build (SHMGEMM_CMAKE_BUILD, so that the
# suite does not compile them twice). Then, from another folder: the package's `shmgemm`
# command, and `import shmgemm` with spawned workers (the executable installed with it). And a
# Python that lacks the build's requirements is told so in one line, before anything is built.
# Usage: pip_install.sh SOURCE_DIR BUILD_DIR
set -eu
source=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$source/python" "$tmp/python"
rm -rf "$tmp/python/build" "$tmp/python/"*.egg-info
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
SHMGEMM_CMAKE_BUILD=$build "$tmp/venv/bin/pip" install -q --no-build-isolation --no-deps \
  --no-index "$tmp/python" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; exit 1; }
cd "$tmp"
"$tmp/venv/bin/shmgemm" --version
"$tmp/venv/bin/shmgemm" gen --shape 30x40 -o a.npy
"$tmp/venv/bin/python" -c "
import numpy as np, shmgemm
a = np.load('a.npy')
assert np.allclose(shmgemm.matmul(a, a.T, workers=2, launch='spawn'), a @ a.T)
print('pip-installed shmgemm: spawned workers from', shmgemm.__file__)"
# Without site-packages: no numpy, no setuptools.
if out=$(cd "$tmp/python" && /usr/bin/python3 -I -S setup.py --version 2>&1); then
  echo "setup.py went on without numpy: $out" >&2
  exit 1
fi
echo "$out"
echo "$out" | grep -q "lacks numpy, setuptools"
[ "$(echo "$out" | wc -l)" -eq 1 ]
