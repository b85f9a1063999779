#!/usr/bin/env bash
# Install the Debian packages shmgemm needs, only those that are missing.
# Usage: tools/install-deps.sh [extra-package ...]
# Runs apt-get as root, or through sudo when not root. Safe to run repeatedly.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost-dev libboost-filesystem-dev   # Interprocess, Process (and what Process links)
  libopenblas-dev                        # cblas_dgemm / cblas_sgemm, openblas_set_num_threads
  doctest-dev libbenchmark-dev           # tests, the pool benchmark
  libcli11-dev nlohmann-json3-dev libfmt-dev
  python3-numpy python3-joblib           # cross-checks against numpy, peer recipes
  pybind11-dev python3-dev               # the Python package (python/)
  python3-pytest python3-hypothesis python3-venv  # its tests, and pip installs in a venv
  python3-setuptools python3-wheel       # what pip builds the package with (--no-build-isolation)
  python3-threadpoolctl                  # a host's thread limits, in its tests
  python3-dask                           # the out-of-core peer of bench --out-of-core
  gnuplot-nox                            # footprint --plot, make plot
  libopenmpi-dev openmpi-bin             # shmgemm-mpi, its tests
  libscalapack-openmpi-dev               # the pdgemm baseline of bench --mpi
  strace util-linux                      # tests that watch system calls, act as two users, unshare
)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
