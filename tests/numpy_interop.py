#!/usr/bin/env python3
"""numpy and shmgemm read each other's .npy files.

- We read numpy's files of every header version (1.0, 2.0, 3.0), in C and Fortran order, of
  both float dtypes, and our product matches numpy's A @ B.
- numpy reads our output, with the dtype and shape numpy's matmul gives.
- numpy's big-endian and bool files are refused with one line naming the file.
Exits 77 (skipped) when numpy is not installed. usage: numpy_interop.py SHMGEMM
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from numpy.lib import format as npformat
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(1 if os.environ.get("SHMGEMM_REQUIRE_ALL") == "1" else 77)

shmgemm = sys.argv[1]
rng = np.random.default_rng(12345)
failures = 0


def check(ok, what):
    global failures
    if not ok:
        failures += 1
        print("FAIL:", what)


def save(path, arr, version):
    with open(path, "wb") as f:
        npformat.write_array(f, arr, version=version)


def multiply(a, b, out, *extra):
    return subprocess.run([shmgemm, "multiply", a, b, "-o", out, *extra],
                          capture_output=True, text=True)


with tempfile.TemporaryDirectory() as d:
    pa, pb, pc = (os.path.join(d, n) for n in ("A.npy", "B.npy", "C.npy"))
    cases = 0
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-4)):
        for version in ((1, 0), (2, 0), (3, 0)):
            for a_order in ("C", "F"):
                for b_order in ("C", "F"):
                    for launch in ("fork", "spawn"):
                        m, k, n = rng.integers(1, 60, size=3)
                        a = np.asarray(rng.standard_normal((m, k)), dtype=dtype, order=a_order)
                        b = np.asarray(rng.standard_normal((k, n)), dtype=dtype, order=b_order)
                        save(pa, a, version)
                        save(pb, b, version)
                        r = multiply(pa, pb, pc, "--launch", launch, "--workers", "3")
                        what = f"{dtype} v{version} {a_order}{b_order} {launch} {m}x{k}x{n}"
                        check(r.returncode == 0, f"{what}: {r.stderr.strip()}")
                        if r.returncode != 0:
                            continue
                        c = np.load(pc)
                        want = a @ b
                        check(c.dtype == want.dtype, f"{what}: dtype {c.dtype} != {want.dtype}")
                        check(c.shape == want.shape, f"{what}: shape {c.shape} != {want.shape}")
                        check(np.allclose(c, want, rtol=rtol, atol=rtol), f"{what}: values differ")
                        cases += 1

    # Files numpy writes that we must refuse, with one line naming the file.
    np.save(pb, np.ones((3, 3), dtype=">f8"))
    r = multiply(pa, pb, pc)
    check(r.returncode != 0 and "B.npy: big-endian float64" in r.stderr
          and r.stderr.count("\n") == 1, f"big-endian: {r.stderr!r}")
    np.save(pb, np.ones((3, 3), dtype=np.bool_))
    r = multiply(pa, pb, pc)
    check(r.returncode != 0 and "unsupported dtype bool" in r.stderr, f"bool: {r.stderr!r}")

    # numpy reads what gen writes.
    subprocess.run([shmgemm, "gen", "--shape", "7x9", "--dtype", "float32", "-o", pa], check=True)
    g = np.load(pa)
    check(g.shape == (7, 9) and g.dtype == np.float32 and (g >= 0).all() and (g < 1).all(),
          "gen output")

print(f"{cases} products checked against numpy, {failures} failures")
sys.exit(1 if failures else 0)
