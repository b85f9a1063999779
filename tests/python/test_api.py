"""shmgemm.matmul, Pool, matmul_many and multiply_files from Python, against numpy."""
import concurrent.futures
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import shmgemm

rng = np.random.default_rng(0)


def assert_product(c, x, y):
    """c is x @ y to within rounding: relative 1e-12, and absolute 1e-12 of the largest sum of
    |terms|, where a different summation order (another kernel, split or numpy's syrk for
    x @ x.T) may leave an element near zero with a larger relative error."""
    x, y = np.asarray(x), np.asarray(y)
    scale = float(np.max(np.abs(x) @ np.abs(y), initial=1.0))
    np.testing.assert_allclose(c, x @ y, rtol=1e-12, atol=1e-12 * scale)


def test_matmul_matches_numpy_in_every_mode():
    a = rng.standard_normal((300, 200))
    b = rng.standard_normal((200, 150))
    for kw in [dict(workers=0), dict(workers=1), dict(workers=2),
               dict(workers=2, launch="spawn"), dict()]:
        c = shmgemm.matmul(a, b, **kw)
        np.testing.assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)


def test_exact_integers_and_promotion():
    a = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (40, 50), dtype=np.int64)
    b = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (50, 30), dtype=np.int64)
    with np.errstate(all="ignore"):
        assert np.array_equal(shmgemm.matmul(a, b, workers=2), a @ b)
    x = rng.integers(-100, 100, (20, 30)).astype(np.int32)
    y = rng.standard_normal((30, 10)).astype(np.float32)
    r = shmgemm.matmul(x, y)
    assert r.dtype == np.float64
    np.testing.assert_allclose(r, x @ y, rtol=1e-6)


def test_stacks_vectors_and_strides_are_read_where_they_are():
    a = rng.standard_normal((3, 1, 50, 60))
    b = rng.standard_normal((4, 60, 20))
    assert_product(shmgemm.matmul(a, b, workers=2), a, b)
    v = rng.standard_normal(60)
    assert_product(shmgemm.matmul(a, v), a, v)
    m = rng.standard_normal((80, 90))
    for x, y in [(m[::2, 1::3], m[:30, ::-3][:, :10]), (m.T[:, :50], np.asfortranarray(m)[:50]),
                 (m[::-1], m.T[::-1])]:
        c, rep = shmgemm.matmul(x, y, workers=2, report=True)
        np.testing.assert_allclose(c, x @ y, rtol=1e-12, atol=1e-12)
    # C and Fortran order with fork: no copy at all (C is written where it is returned). Fork
    # asked for: launch="auto" spawns while other threads run (a test harness's watchdog).
    f = np.asfortranarray(rng.standard_normal((400, 300)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c, rep = shmgemm.matmul(f, f.T, workers=2, launch="fork", report=True)
        assert rep["workers"] == 2
        assert rep["copied_bytes"] == 0
        assert_product(c, f, f.T)
        # Into an out= of the host's: C comes back from the workers' shared memory, once.
        out = np.empty((400, 400))
        _, rep = shmgemm.matmul(f, f.T, out=out, workers=2, launch="fork", report=True)
    assert rep["copied_bytes"] == 400 * 400 * 8


def _mapping_of(address):
    """The line of /proc/self/maps whose range holds `address`, or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line
    return None


@pytest.mark.parametrize("launch", ["fork", "spawn"])
def test_a_result_computed_by_workers_is_private_memory_they_wrote(launch):
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 250))
    c, rep = shmgemm.matmul(a, b, workers=2, launch=launch, report=True)
    assert rep["workers"] == 2 and rep["launch"] == launch
    assert_product(c, a, b)
    # Nothing copied back: spawn copies only A and B, which a new process cannot see.
    assert rep["copied_bytes"] == (0 if launch == "fork" else a.nbytes + b.nbytes)
    line = _mapping_of(c.ctypes.data)
    assert "memfd:shmgemm-c" in line and line.split()[1] == "rw-p", line
    # Private as any numpy array: a forked child's writes stay in the child.
    before = c.copy()
    pid = os.fork()
    if pid == 0:
        c[:] = 7.0
        os._exit(0 if (c == 7.0).all() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.array_equal(c, before)
    # And writable here; its memory goes with the last view of it.
    view = c[10:20]
    address = c.ctypes.data
    del c
    view[:] = 1.0
    assert "memfd:shmgemm-c" in _mapping_of(address)
    del view
    gc.collect()
    line = _mapping_of(address)
    assert line is None or "memfd:shmgemm-c" not in line


def test_out_is_written_in_place_and_checked():
    a = rng.standard_normal((5, 2))
    b = rng.standard_normal((2, 3))
    out = np.zeros((5, 3))
    assert shmgemm.matmul(a, b, out) is out
    np.testing.assert_allclose(out, a @ b)
    with pytest.raises(ValueError, match="mismatch in its core dimension"):
        shmgemm.matmul(a, b, np.zeros((5, 4)))
    with pytest.raises(TypeError, match="Cannot cast ufunc 'matmul' output"):
        shmgemm.matmul(a, b, np.zeros((5, 3), np.int32))


@pytest.mark.parametrize("dtype,out_dtype", [(np.float64, np.float64), (np.bool_, np.bool_),
                                             (np.float64, np.float32)])
def test_read_only_out_is_refused_as_numpy_does_and_left_unchanged(dtype, out_dtype):
    a = np.ones((5, 2), dtype)
    b = np.ones((2, 3), dtype)
    out = np.full((5, 3), 7, out_dtype)
    out.flags.writeable = False
    with pytest.raises(ValueError) as n:
        np.matmul(a, b, out=out)
    with shmgemm.Pool(workers=1) as pool:
        for call in (lambda: shmgemm.matmul(a, b, out), lambda: pool.matmul(a, b, out),
                     lambda: pool.submit(a, b, out).result()):
            with pytest.raises(ValueError) as e:
                call()
            assert str(e.value) == str(n.value)
            assert (out == np.full((5, 3), 7, out_dtype)).all()


def test_a_result_that_cannot_be_copied_into_out_fails_its_future_and_the_pool_goes_on():
    # The one worker is busy with the first job while the second's out turns read-only: the
    # second's result (bool, computed elsewhere and copied in at the end) cannot be delivered.
    big = np.ones((2500, 2500))
    a = np.ones((5, 2), bool)
    out = np.zeros((5, 3), bool)
    with shmgemm.Pool(workers=1) as pool:
        first = pool.submit(big, big)
        second = pool.submit(a, np.ones((2, 3), bool), out)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            second.result(timeout=60)
        assert not out.any()
        assert first.result(timeout=60)[0, 0] == 2500
        np.testing.assert_array_equal(pool.matmul(a, np.ones((2, 3), bool)), np.ones((5, 3), bool))


def test_errors_are_numpys():
    with pytest.raises(ValueError) as e:
        shmgemm.matmul(np.ones((3, 4)), np.ones((5, 6)))
    with pytest.raises(ValueError) as n:
        np.matmul(np.ones((3, 4)), np.ones((5, 6)))
    assert str(e.value) == str(n.value)
    assert isinstance(e.value, shmgemm.ShapeError)
    for bad in [np.float16, object, "U3"]:
        with pytest.raises(TypeError, match="supported: int8"):
            shmgemm.matmul(np.ones((2, 2), dtype=bad), np.ones((2, 2)))


def test_pool_futures_arena_arrays_and_stats():
    a = rng.standard_normal((200, 100))
    b = rng.standard_normal((100, 50))
    with shmgemm.Pool(2) as pool:
        A, B = pool.asarray(a), pool.asarray(b)
        C = pool.empty((200, 50))
        assert pool.matmul(A, B, C) is C
        np.testing.assert_allclose(C, a @ b)
        assert pool.stats()["staged_bytes"] == 0
        futures = [pool.submit(a, b) for _ in range(20)]
        seen = []
        futures[0].add_done_callback(lambda f: seen.append(f.result().shape))
        for f in concurrent.futures.as_completed(futures):
            np.testing.assert_allclose(f.result(), a @ b)
        assert seen == [(200, 50)]
        ints = pool.zeros((3, 40, 30), np.int64)
        ints[...] = rng.integers(-2**62, 2**62, ints.shape)
        k = pool.asarray(rng.integers(-2**62, 2**62, (30, 7)))
        with np.errstate(all="ignore"):
            assert np.array_equal(pool.matmul(ints, k), ints @ k)
        s = pool.stats()
        assert s["jobs"] == 22 and s["failed_jobs"] == 0
    # Arrays from the arena outlive the pool.
    np.testing.assert_allclose(C, a @ b)
    del A, B, C


def test_pool_from_eight_threads():
    a = rng.standard_normal((64, 64))
    errors = []
    with shmgemm.Pool(2) as pool:
        def work():
            try:
                for _ in range(25):
                    np.testing.assert_allclose(pool.submit(a, a).result(), a @ a)
                    np.testing.assert_allclose(pool.matmul(a, a.T), a @ a.T)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pool.stats()["jobs"] == 8 * 50
    assert errors == []


def test_fork_with_python_threads_running_and_spawn_with_openblas_busy():
    """fork while other Python threads run; spawn while numpy's OpenBLAS threads are busy too.
    (fork while another thread is inside OpenBLAS deadlocks in OpenBLAS 0.3.21's own fork
    handler, blas_thread_shutdown_: the reason to prefer spawn there; see the package's
    docstring.)"""
    stop = threading.Event()
    big = rng.standard_normal((1500, 1500))

    def python_busy():
        x = 0
        while not stop.is_set():
            x += sum(range(1000))

    def blas_busy():
        while not stop.is_set():
            big @ big
    a = rng.standard_normal((500, 400))
    # numpy computes a @ a.T with syrk, the workers with gemm: the same within rounding.
    tol = dict(rtol=1e-12, atol=1e-12 * float((abs(a) @ abs(a.T)).max()))
    for launch, busy in (("fork", python_busy), ("spawn", blas_busy)):
        stop.clear()
        threads = [threading.Thread(target=busy) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for _ in range(5):
                np.testing.assert_allclose(shmgemm.matmul(a, a.T, workers=2, launch=launch),
                                           a @ a.T, **tol)
            with shmgemm.Pool(2, launch=launch) as pool:
                np.testing.assert_allclose(pool.matmul(a, a.T), a @ a.T, **tol)
        finally:
            stop.set()
            for t in threads:
                t.join()


def test_matmul_many_in_order_any_shapes():
    pairs = []
    for i in range(60):
        m, k, n = (int(x) for x in rng.integers(1, 200, 3))
        dt = [np.float64, np.float32, np.int64, np.complex128][i % 4]
        pairs.append((rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt)))
    got = shmgemm.matmul_many(pairs, workers=2)
    for (a, b), c in zip(pairs, got):
        assert c.dtype == (a @ b).dtype and c.shape == (a @ b).shape
        if c.dtype.kind in "iu":
            assert np.array_equal(c, a @ b)
            continue
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        eps = np.finfo(c.dtype).eps
        assert (np.abs(c - a @ b) <= 4 * a.shape[-1] * eps * scale + 1e-30).all()


def test_matmul_many_while_another_thread_runs_stays_in_process():
    # launch="auto" with another thread alive: a fork is unsafe, so the set runs here (and a
    # set large enough to be watched from a thread of its own is no exception).
    pairs = [(rng.standard_normal((300, 300)), rng.standard_normal((300, 300)))
             for _ in range(4)]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        got = shmgemm.matmul_many(pairs, workers=2)
        assert shmgemm.last_report()["in_process"]
    finally:
        stop.set()
        other.join()
    for (a, b), c in zip(pairs, got):
        assert_product(c, a, b)


def test_pool_submit_many_gives_a_future_per_pair_as_each_finishes():
    pairs = [(rng.standard_normal((m, k)), rng.standard_normal((k, n)))
             for m, k, n in rng.integers(1, 300, (20, 3))]
    pairs.append((np.ones((3, 4)), np.ones((5, 6))))  # numpy refuses this one
    pairs.append((np.arange(6, dtype=np.int64).reshape(2, 3), np.arange(3, dtype=np.int64)))
    with shmgemm.Pool(workers=2) as pool:
        futures = pool.submit_many(pairs)
        assert len(futures) == len(pairs)
        done = list(concurrent.futures.as_completed(futures, timeout=120))
        assert sorted(map(id, done)) == sorted(map(id, futures))
        for (a, b), f in zip(pairs[:20], futures):
            assert_product(f.result(), a, b)
        with pytest.raises(ValueError, match="mismatch in its core dimension"):
            futures[20].result()
        assert np.array_equal(futures[21].result(), pairs[21][0] @ pairs[21][1])
        with pytest.raises(TypeError, match="pairs: item 0"):
            pool.submit_many([np.ones(3)])


def test_sliding_windows_both_ways():
    a = rng.standard_normal((100, 200))
    b = rng.standard_normal((200, 1000))
    windows = [(a, b[:, i:i + 200]) for i in range(801)]
    many = shmgemm.matmul_many(windows, workers=2)
    whole = shmgemm.matmul(a, b)
    for i in range(0, 801, 50):
        assert_product(many[i], a, b[:, i:i + 200])
        assert_product(whole[:, i:i + 200], a, b[:, i:i + 200])


def test_version_and_result_type_as_numpy_spells_them():
    cli = os.environ.get("SHMGEMM_CLI")
    assert isinstance(shmgemm.__version__, str) and shmgemm.__version__[0].isdigit()
    if cli is not None:
        first = subprocess.run([cli, "--version"], capture_output=True, text=True,
                               check=True).stdout.split()
        assert first[:2] == ["shmgemm", shmgemm.__version__]
    # np.result_type's arguments: types, dtypes, their names, arrays and scalars alike.
    for x, y in [(np.int32, np.float32), (np.dtype("int8"), "uint64"), ("f4", np.complex64),
                 (np.bool_, np.int16), (np.zeros(2, np.int64), np.float32)]:
        assert shmgemm.result_type(x, y) == np.result_type(x, y), (x, y)
    assert shmgemm.result_type(np.bool_, np.bool_) == np.bool_
    with pytest.raises(TypeError, match="a: "):
        shmgemm.result_type("no such dtype", np.int32)


def test_windows_copied_or_read_only_views():
    a = rng.standard_normal((30, 40))
    b = rng.standard_normal((40, 300))
    columns = [(a, b[:, i:i + 40]) for i in range(0, 261, 3)]
    tall = rng.standard_normal((300, 40))
    rows = [(tall[i:i + 30], b[:, :50]) for i in range(0, 271, 2)]
    for pairs in (columns, rows):
        copies = shmgemm.matmul_many(pairs)
        assert "each window copied out" in shmgemm.last_report()["plan"]["reason"]
        views = shmgemm.matmul_many(pairs, copy=False)
        assert "each window a read-only view" in shmgemm.last_report()["plan"]["reason"]
        for x, y, (p, q) in zip(copies, views, pairs):
            assert_product(x, p, q)
            assert_product(y, p, q)
            assert x.flags.writeable and not y.flags.writeable
        # Copies share memory with nothing; views are windows of one product, as
        # sliding_window_view's are, and refuse to be written.
        assert not any(np.shares_memory(copies[i], copies[i + 1]) for i in range(len(pairs) - 1))
        assert np.shares_memory(views[0], views[1])
        with pytest.raises(ValueError, match="read-only"):
            views[0][0, 0] = 1.0
        before = views[1].copy()
        del copies
        gc.collect()
        np.testing.assert_array_equal(views[1], before)  # the views keep their product alive
    with pytest.raises(TypeError, match="copy"):
        shmgemm.matmul_many(columns, copy="no")


def test_multiply_files(tmp_path):
    a = rng.standard_normal((120, 80))
    b = rng.integers(0, 9, (80, 40))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    rep = shmgemm.multiply_files(tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy",
                                 workers=2, backing="shm")
    assert_product(np.load(tmp_path / "c.npy"), a, b)
    assert rep["workers"] == 2 and rep["backing"] == "shm"
    with pytest.raises(shmgemm.FileError, match="missing.npy"):
        shmgemm.multiply_files(tmp_path / "missing.npy", tmp_path / "b.npy", tmp_path / "c.npy")
    # A memory budget no plan fits: refused before anything is written.
    with pytest.raises(shmgemm.ResourceError, match="memory: 0 MiB is too little"):
        shmgemm.multiply_files(tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "d.npy",
                               memory=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy", "c.npy"]


def test_reports():
    a = rng.standard_normal((50, 60))
    c, rep = shmgemm.matmul(a, a.T, report=True)
    assert shmgemm.last_report() == rep
    assert {"m", "k", "n", "workers", "seconds", "copied_bytes", "plan"} <= rep.keys()
    assert (rep["m"], rep["k"], rep["n"]) == (50, 60, 50)


def test_small_products_are_numpys_own_call_in_the_calling_thread():
    """Products too small for workers to pay are numpy's matmul, called here: numpy's bits,
    numpy's scalars and out=, a report that says so with the engine's keys, nothing started."""
    engine_keys = shmgemm.matmul(rng.standard_normal((3, 4)), rng.standard_normal((4, 2)),
                                 workers=0, report=True)[1].keys()
    for dtype in (np.float32, np.float64, np.complex64, np.complex128):
        for a_shape, b_shape in (((8, 8), (8, 8)), ((100, 100), (100, 100)), ((7,), (7, 3)),
                                 ((5, 7), (7,)), ((6,), (6,)), ((0, 4), (4, 3))):
            a = rng.standard_normal(a_shape).astype(dtype)
            b = rng.standard_normal(b_shape).astype(dtype)
            got, want = shmgemm.matmul(a, b), np.matmul(a, b)
            assert type(got) is type(want) and got.dtype == want.dtype
            assert np.array_equal(got, want), (dtype, a_shape, b_shape)
            rep = shmgemm.last_report()
            assert rep["plan"]["reason"].startswith("numpy's matmul in the calling thread")
            assert rep.keys() == engine_keys and rep["plan"].keys() == {
                "automatic", "calibration", "candidates", "reason"}
            assert (rep["workers"], rep["launches"], rep["in_process"]) == (0, 0, True)
            assert rep["shape"] == list(want.shape) and rep["dtype"] == want.dtype.name
    a, b = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    out = np.zeros((8, 8))
    assert shmgemm.matmul(a, b, out=out) is out and np.array_equal(out, a @ b)
    # numpy's refusals stay shmgemm's classes (ShapeError is a ValueError with numpy's words)
    with pytest.raises(shmgemm.ShapeError, match="mismatch in its core dimension 0"):
        shmgemm.matmul(a, rng.standard_normal((7, 8)))
    with pytest.raises(ValueError, match="read-only"):
        read_only = np.zeros((8, 8))
        read_only.flags.writeable = False
        shmgemm.matmul(a, b, out=read_only)
    with pytest.raises(TypeError, match="np.matrix"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        shmgemm.matmul(np.matrix(a), b)
    # Products the engine takes: integers (exact, faster than numpy's loops), mixed dtypes,
    # stacks, asked-for workers, and products beyond the engine's in-process bound.
    big = rng.standard_normal((700, 700))
    for x, y, options in ((rng.integers(-9, 9, (8, 8)),) * 2 + ({},),
                          (a.astype(np.float32), b, {}), (a[None], b, {}), (a, b, {"workers": 0}),
                          (a, b, {"threads": 1}), (big, big, {})):
        assert_product(shmgemm.matmul(x, y, **options), x, y)
        assert not shmgemm.last_report()["plan"]["reason"].startswith("numpy's matmul")


def test_limits_set_this_threads_defaults_inside_the_block(tmp_path):
    a, b = rng.standard_normal((64, 48)), rng.standard_normal((48, 32))

    def plan():
        rep = shmgemm.last_report()
        return rep["workers"], rep["threads_per_worker"], rep["in_process"]

    shmgemm.matmul(a, b)
    assert plan()[2]  # small: in this process, numpy's own call
    seen_in_thread = []
    with shmgemm.limits(workers=2, threads=1) as limited:
        assert repr(limited) == "shmgemm.limits(workers=2, threads=1)"
        assert_product(shmgemm.matmul(a, b), a, b)
        assert plan() == (2, 1, False)
        assert shmgemm.last_report()["launches"] == 2
        with shmgemm.limits(workers=0):  # nested: the inner block's values win
            shmgemm.matmul(a, b)
            assert plan() == (0, 1, True)
            with shmgemm.limits(workers="auto"):  # the plan's choice again, one thread each
                shmgemm.matmul(a, b)
                assert plan() == (0, 1, True)
        shmgemm.matmul(a, b, workers=1)  # an explicit argument wins
        assert plan()[:2] == (1, 1)
        results = shmgemm.matmul_many([(a, b), (b.T, a.T)])
        assert_product(results[1], b.T, a.T)
        assert shmgemm.last_report()["workers"] == 2
        np.save(tmp_path / "a.npy", a)
        np.save(tmp_path / "b.npy", b)
        rep = shmgemm.multiply_files(tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy")
        assert (rep["workers"], rep["threads_per_worker"]) == (2, 1)
        with shmgemm.Pool() as pool:
            assert pool.workers == 2
        # another thread keeps its own defaults
        t = threading.Thread(target=lambda: (shmgemm.matmul(a, b),
                                             seen_in_thread.append(plan())))
        t.start()
        t.join()
        shmgemm.matmul(a, b)
        assert plan() == (2, 1, False)  # the nested block gave the outer one's values back
    assert [(w, in_process) for w, _, in_process in seen_in_thread] == [(0, True)]
    shmgemm.matmul(a, b)
    assert plan()[2]

    @shmgemm.limits(workers=2)
    def decorated():
        return shmgemm.matmul(a, b)

    assert_product(decorated(), a, b)
    assert plan()[0] == 2
    for bad, error in ((dict(workers=-1), ValueError), (dict(threads=0), ValueError),
                       (dict(workers="many"), TypeError), (dict(threads=1.5), TypeError)):
        with pytest.raises(error, match=next(iter(bad))):
            shmgemm.limits(**bad)


def test_one_report_on_every_face(tmp_path):
    """Python's report is the CLI's --json object (less the output's name): one serializer."""
    cli = os.environ.get("SHMGEMM_CLI")
    if cli is None:
        pytest.skip("SHMGEMM_CLI is not set (ctest sets it)")
    a, b = rng.standard_normal((70, 30)), rng.integers(-5, 5, (30, 20))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    run = subprocess.run([cli, "multiply", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                          "-o", str(tmp_path / "c.npy"), "--workers", "2", "--json"],
                         capture_output=True, text=True, check=True)
    cli_report = json.loads(run.stdout)
    assert cli_report.pop("output") == str(tmp_path / "c.npy")
    for rep in (shmgemm.multiply_files(tmp_path / "a.npy", tmp_path / "b.npy",
                                       tmp_path / "d.npy", workers=2),
                shmgemm.matmul(a, b, workers=2, report=True)[1]):
        assert rep.keys() == cli_report.keys()
        assert rep["plan"].keys() == cli_report["plan"].keys()
        for key in ("m", "k", "n", "batch", "a_shape", "b_shape", "shape", "dtype", "workers"):
            assert rep[key] == cli_report[key], key


def test_ten_thousand_calls_leave_rss_and_dev_shm_flat():
    a = rng.standard_normal((8, 8))

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    with shmgemm.Pool(2) as pool:
        for _ in range(500):
            pool.matmul(a, a)
            shmgemm.matmul(a, a)
        before = rss_kib()
        for _ in range(10000):
            pool.matmul(a, a)
            shmgemm.matmul(a, a)
        grown = rss_kib() - before
    assert grown < 4096, f"RSS grew by {grown} KiB over 10,000 calls"


CHILD = r"""
import numpy as np, shmgemm, sys
a = np.random.default_rng(0).standard_normal((3000, 3000))
print("ready", flush=True)
try:
    shmgemm.matmul(a, a, workers=2, threads=1)
    for _ in range(20):
        shmgemm.matmul(a, a, workers=2, threads=1)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


def test_keyboard_interrupt_stops_the_workers():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 3 and "KeyboardInterrupt" in out
    # No worker of the child is left (they died with it, or were killed first).
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"shmgemm-{p.pid}-")]


def test_a_killed_worker_fails_only_its_futures():
    # Products of a second or more on one thread, and the kill sent once a worker has been
    # computing for 50 ms, so that it lands mid-product however fast the machine is.
    a = rng.standard_normal((4000, 4000))
    with shmgemm.Pool(2, threads=1) as pool:
        children = []
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            children += [int(x) for x in open(f"/proc/{os.getpid()}/task/{task}/children").read().split()]
        workers = sorted(set(children))
        assert len(workers) >= 2

        def cpu_ticks(pid):
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        idle = {w: cpu_ticks(w) for w in workers}
        victims = [pool.submit(a, a) for _ in range(2)]
        deadline = time.monotonic() + 30
        busy = None
        while busy is None and time.monotonic() < deadline:
            busy = next((w for w in workers if cpu_ticks(w) - idle[w] >= 5), None)
            time.sleep(0.005)
        assert busy is not None
        os.kill(busy, signal.SIGKILL)
        outcomes = []
        for f in victims:
            try:
                f.result(timeout=60)
                outcomes.append("ok")
            except shmgemm.WorkerError as e:
                assert "killed by signal 9" in str(e)
                outcomes.append("failed")
        assert "failed" in outcomes
        # The pool goes on, with a new worker in place of the dead one.
        small = rng.standard_normal((100, 100))
        np.testing.assert_allclose(pool.matmul(small, small), small @ small)
        assert pool.stats()["workers_replaced"] >= 1
