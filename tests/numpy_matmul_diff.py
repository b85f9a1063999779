#!/usr/bin/env python3
"""Differential test: `shmgemm multiply` against numpy's np.matmul on random cases.

Each run draws several hundred cases: every pair of supported dtypes, 1-D, 2-D and N-D shapes
with broadcast batch axes, empty dimensions, integers at the edges of their range (and whole
ranges, which need several limbs), C and Fortran order, in process and on forked or spawned
workers. Integers must be bit-identical to numpy's (which wraps modulo 2^bits); floats and
complex within a tolerance scaled by sum |a||b|. The result's dtype and shape must be numpy's,
and shapes numpy refuses must be refused with numpy's kind of message and nothing written.
Exits 77 (skipped) when numpy is not installed.
usage: numpy_matmul_diff.py SHMGEMM [CASES] [SEED]
"""
import os
import subprocess
import sys
import tempfile

# numpy's reference computed with the OpenBLAS kernels shmgemm computes with: where OpenBLAS
# falls back to its Prescott kernels on a CPU it does not know, shmgemm chooses others (see
# `shmgemm --version`), and complex products of infinities and NaNs differ between kernels.
if "OPENBLAS_CORETYPE" not in os.environ:
    version = subprocess.run([sys.argv[1], "--version"], capture_output=True, text=True).stdout
    for line in version.splitlines():
        if line.startswith("OpenBLAS kernel: "):
            os.environ["OPENBLAS_CORETYPE"] = line.split()[2]

try:
    import numpy as np
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(1 if os.environ.get("SHMGEMM_REQUIRE_ALL") == "1" else 77)

shmgemm = sys.argv[1]
cases = int(sys.argv[2]) if len(sys.argv) > 2 else 400
seed = int(sys.argv[3]) if len(sys.argv) > 3 else int.from_bytes(os.urandom(4), "little")
rng = np.random.default_rng(seed)
DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float32, np.float64, np.complex64, np.complex128]
failures = []


def values(dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        style = rng.integers(0, 3)
        if style == 0:  # small, as the seed documents' randint(0, 10)
            x = rng.integers(0, 10, size=shape)
        elif style == 1:  # the whole range
            x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        else:  # the edges: min, max, 0, +-1
            edges = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=dtype)
            x = rng.choice(edges, size=shape)
        return np.asarray(x).astype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x).astype(dtype)


def shapes():
    """A pair of operand shapes np.matmul accepts."""
    m, k, n = (int(rng.choice([0, 1, 2, 3, 5, 17, 40])) for _ in range(3))
    if rng.random() < 0.05:
        m, k, n = 70, 300, 60  # bigger: several chunks and limbs worth of work
    batch = [int(rng.choice([1, 2, 3])) for _ in range(rng.integers(0, 3))]
    if rng.random() < 0.05 and batch:
        batch[0] = 0
    def side(core):
        nb = int(rng.integers(0, len(batch) + 1))
        own = [d if rng.random() < 0.7 else 1 for d in batch[len(batch) - nb:]]
        return tuple(own) + core
    a = side((m, k)) if rng.random() < 0.85 else (k,)
    b = side((k, n)) if rng.random() < 0.85 else (k,)
    return a, b


def run(args):
    return subprocess.run([shmgemm, "multiply"] + args, capture_output=True, text=True)


with tempfile.TemporaryDirectory() as tmp:
    pa, pb, pc = (os.path.join(tmp, name) for name in ("A.npy", "B.npy", "C.npy"))
    modes = [["--in-process"], ["--workers", "2"], ["--workers", "3", "--launch", "spawn"],
             [], ["--workers", "2", "--backing", "shm"], ["--workers", "2", "--inputs", "copy"],
             ["--workers", "2", "--rows-per-step", "3"]]
    for case in range(cases):
        da, db = DTYPES[case % 12], DTYPES[(case // 12) % 12]
        sa, sb = shapes()
        a, b = values(da, sa), values(db, sb)
        if rng.random() < 0.2 and a.ndim >= 2:
            a = np.asfortranarray(a)
        if rng.random() < 0.2 and b.ndim >= 2:
            b = np.asfortranarray(b)
        np.save(pa, a)
        np.save(pb, b)
        mode = modes[case % len(modes)]
        what = f"case {case}: {a.dtype}{a.shape} @ {b.dtype}{b.shape} {' '.join(mode)}"
        with np.errstate(all="ignore"):
            expect = np.matmul(a, b)
        if os.path.exists(pc):
            os.remove(pc)
        r = run([pa, pb, "-o", pc] + mode)
        if r.returncode != 0:
            failures.append(f"{what}: failed: {r.stderr.strip()}")
            continue
        got = np.load(pc)
        if got.dtype != expect.dtype or got.shape != expect.shape:
            failures.append(f"{what}: got {got.dtype}{got.shape}, numpy {expect.dtype}"
                            f"{expect.shape}")
        elif expect.dtype.kind in "iu":
            if not np.array_equal(got, expect):
                failures.append(f"{what}: integers differ from numpy's")
        else:
            wide = np.complex128 if expect.dtype.kind == "c" else np.float64
            scale = np.matmul(np.abs(a.astype(wide)), np.abs(b.astype(wide)))
            eps = np.finfo(expect.dtype).eps
            k = max(a.shape[-1], 1)
            err = np.abs(got.astype(wide) - expect.astype(wide))
            if not np.all(err <= 4 * k * eps * scale + 1e-30):
                failures.append(f"{what}: off by {np.max(err)} (scale {np.max(scale)})")

    # Shapes numpy refuses: refused alike, one line, nothing written.
    refused = [((3, 4), (5, 6), "mismatch in its core dimension 0"),
               ((4,), (5,), "mismatch in its core dimension 0"),
               ((2, 3, 4), (5, 4, 3), "could not be broadcast together"),
               ((), (3,), "does not have enough dimensions")]
    for sa, sb, message in refused:
        np.save(pa, np.ones(sa))
        np.save(pb, np.ones(sb))
        numpy_says = ""
        with np.errstate(all="ignore"):
            try:
                np.matmul(np.ones(sa), np.ones(sb))
                failures.append(f"numpy accepts {sa} @ {sb}")
            except ValueError as e:
                numpy_says = str(e)
                if message not in numpy_says:
                    failures.append(f"numpy says {e} for {sa} @ {sb}")
        if os.path.exists(pc):
            os.remove(pc)
        r = run([pa, pb, "-o", pc])
        # numpy's own words, after the files' names and shapes.
        if r.returncode == 0 or not r.stderr.rstrip("\n").endswith(": " + numpy_says) \
                or r.stderr.count("\n") != 1 or os.path.exists(pc):
            failures.append(f"{sa} @ {sb}: {r.returncode} {r.stderr!r}, numpy {numpy_says!r}")

    # Complex infinities and nans where numpy does not call zgemm (a dimension of 1: a row by a
    # column through zdotu, vectors through zgemv, k = 1 term by term): the same nan and inf
    # parts as numpy's.
    specials = np.array([-np.inf * 1j, np.inf, 1 + 1j, np.nan, 2 - 1j, 0, -np.inf + np.inf * 1j],
                        dtype=np.complex128)
    pairs = [((1,), (1,)), ((3,), (3,)), ((1, 1), (1, 4)), ((4, 1), (1, 4)), ((4, 3), (3,)),
             ((3,), (3, 4)), ((1, 3), (3, 1)), ((4, 3), (3, 1)), ((1, 3), (3, 5)),
             ((2, 4, 3), (3,)), ((3,), (2, 3, 4)), ((1,), (1, 3)), ((3, 1), (1,)), ((4, 3), (3, 5))]
    for i in range(120):
        sa, sb = pairs[i % len(pairs)]
        a, b = rng.choice(specials, size=sa), rng.choice(specials, size=sb)
        if i % 3 == 1:
            b = b.astype(np.complex64)
        if i % 3 == 2:
            a = rng.integers(0, 3, size=sa).astype(np.uint32)
        if i % 5 == 3 and a.ndim == 2:
            a = np.asfortranarray(a)
        np.save(pa, a)
        np.save(pb, b)
        mode = modes[i % 3]
        with np.errstate(all="ignore"):
            expect = np.matmul(a, b)
        r = run([pa, pb, "-o", pc] + mode)
        got = np.load(pc) if r.returncode == 0 else None
        if got is None or not all(
                np.array_equal(np.isnan(f(got)), np.isnan(f(expect))) and
                np.array_equal(np.nan_to_num(f(got)), np.nan_to_num(f(expect)))
                for f in (np.real, np.imag)):
            failures.append(f"complex specials {a.dtype}{a.ravel()} @ {b.dtype}{b.ravel()} "
                            f"{' '.join(mode)}: got {got}, numpy {expect}")

for f in failures[:20]:
    print("FAIL:", f)
print(f"{cases} random products checked against np.matmul (seed {seed}), "
      f"{len(failures)} failures")
sys.exit(1 if failures else 0)
