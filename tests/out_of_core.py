#!/usr/bin/python3
"""Products larger than memory, each in a memory cgroup smaller than its operands.

- A and B of 1.5 GiB each (float64, 1024 x 196608 and 196608 x 1024) in 512 MiB, no option: A
  and B read once in slabs along k, C summed in memory; C compared with numpy's on the
  memory-mapped inputs, a slab of k at a time.
- B in column panels (C does not fit either): 1000 x 4000 @ 4000 x 16000 float64 with --memory
  300M in 384 MiB: the panels packed into a scratch file, C written back step by step; C
  compared with numpy's.
- int64 in slabs (--memory 120M): exactly numpy's (integers wrap around alike).
- --memory too small for one column of B: one line naming --memory, exit 1, no output.
In each: the run ends well, the cgroup never reached its limit (failcnt, or memory.events max,
0), and the folder holds only what it held and the output.

Usage: out_of_core.py SHMGEMM_CLI WORK_DIR. Needs root (a memory cgroup); elsewhere it skips
(exit 77) and says why. The operands are on WORK_DIR's disk (not /tmp, which may be memory).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from script_support import MemoryCgroup, say, skip


def gen(cli, path, shape, dtype="float64", seed=1):
    subprocess.run([cli, "gen", "--shape", shape, "--dtype", dtype, "--seed", str(seed), "-o",
                    path], check=True, capture_output=True)


def drop_cache(*paths):
    """The files' pages out of the page cache: the run reads them from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def run_in(cgroup, argv):
    script = f'echo $$ > {cgroup.dir}/cgroup.procs && exec "$@"'
    start = time.monotonic()
    r = subprocess.run(["/bin/sh", "-c", script, "sh", *argv], capture_output=True, text=True,
                       timeout=600)
    return r, time.monotonic() - start


def reference(a_path, b_path, depth=16384):
    """numpy's A @ B from the memory-mapped files, a slab of k at a time."""
    a = np.load(a_path, mmap_mode="r")
    b = np.load(b_path, mmap_mode="r")
    c = np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for k0 in range(0, a.shape[1], depth):
        c += a[:, k0:k0 + depth] @ b[k0:k0 + depth]
    return c


def case(cli, work, name, limit, a_shape, b_shape, options, check, dtype="float64"):
    folder = os.path.join(work, name)
    os.mkdir(folder)
    cgroup = MemoryCgroup(f"shmgemm-ooc-{name}-{os.getpid()}", limit)
    try:
        if cgroup.dir is None:
            skip("no memory cgroup controller can be limited here")
        a, b, c = (os.path.join(folder, f) for f in ("A.npy", "B.npy", "C.npy"))
        gen(cli, a, a_shape, dtype, 1)
        gen(cli, b, b_shape, dtype, 2)
        drop_cache(a, b)
        r, seconds = run_in(cgroup, [cli, "multiply", a, b, "-o", c, "--json", *options])
        peak, failures = cgroup.peak(), cgroup.failures()
        say(f"{name}: exit {r.returncode} in {seconds:.1f} s; the cgroup's peak "
            f"{(peak or 0) / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB, limit reached "
            f"{failures} times")
        check(r, a, b, c)
        assert failures == 0, f"{name}: the cgroup reached its limit {failures} times"
        left = sorted(os.listdir(folder))
        want = ["A.npy", "B.npy"] + (["C.npy"] if r.returncode == 0 else [])
        assert left == want, f"{name}: the folder holds {left}"
    finally:
        cgroup.remove()
        shutil.rmtree(folder, ignore_errors=True)


def succeeded(r):
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cli, work_root = sys.argv[1:]
    if os.geteuid() != 0:
        skip("needs root to make a memory cgroup")
    work = os.path.join(work_root, f"out-of-core-{os.getpid()}")
    os.mkdir(work)
    try:
        def slabs(r, a, b, c):
            report = succeeded(r)
            say(f"  {report['plan']['reason']}")
            assert report["slab_depth"] > 0, report
            got, want = np.load(c, mmap_mode="r"), reference(a, b)
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= 1e-12 * scale * 196608 ** 0.5

        case(cli, work, "slabs", 512 << 20, "1024x196608", "196608x1024", [], slabs)

        def panels(r, a, b, c):
            report = succeeded(r)
            say(f"  {report['plan']['reason']}")
            assert report["panels"] > 1 and report["slab_depth"] == 0, report
            want = np.load(a) @ np.load(b)
            assert np.abs(np.load(c) - want).max() <= 1e-12 * np.abs(want).max() * 4000 ** 0.5

        case(cli, work, "panels", 384 << 20, "1000x4000", "4000x16000", ["--memory", "300M"],
             panels)

        def exact(r, a, b, c):
            report = succeeded(r)
            assert report["slab_depth"] > 0, report
            assert np.array_equal(np.load(c), np.load(a) @ np.load(b))

        case(cli, work, "int64", 384 << 20, "200x40000", "40000x200", ["--memory", "120M"], exact,
             dtype="int64")

        def refused(r, a, b, c):
            assert r.returncode == 1, r
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("shmgemm: --memory: "), \
                r.stderr
            assert "too little for this product out of core" in r.stderr, r.stderr
            say(f"  {r.stderr.strip()}")

        case(cli, work, "too-little", 384 << 20, "2000x10000", "10000x2000", ["--memory", "100M"],
             refused)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("out of core: every case passed")


if __name__ == "__main__":
    main()
