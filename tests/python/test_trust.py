"""The faces users meet first give numpy's answer or one clear error: never a wrong result, a
crash or a hang. Cases that could crash or hang the interpreter run in a child process with a
timeout, so that a crash or a hang fails the test instead of ending the run."""
import concurrent.futures
import ctypes
import errno
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest

import shmgemm

rng = np.random.default_rng(25)


def run_child(code, timeout=60, env=None):
    """Runs `code` in a new interpreter (this one's PYTHONPATH); returns the CompletedProcess.
    A child that does not finish within `timeout` seconds is killed and fails the test."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child hung for {timeout} s; its output: {e.stdout!r} {e.stderr!r}")


def close_to(c, x, y):
    x, y = np.asarray(x), np.asarray(y)
    scale = float(np.max(np.abs(x) @ np.abs(y), initial=1.0))
    return np.allclose(c, x @ y, rtol=1e-12, atol=1e-12 * scale)


# --- out= that is, or overlaps, an operand --------------------------------------------------

MODES = [dict(workers=0), dict(workers=2), dict(workers=2, launch="spawn"), dict()]


@pytest.mark.parametrize("kw", MODES, ids=["in_process", "fork", "spawn", "auto"])
def test_out_that_is_an_operand_gets_numpys_answer(kw):
    for which in ("a", "b"):
        a, b = rng.standard_normal((300, 300)), rng.standard_normal((300, 300))
        ref = a @ b
        out = a if which == "a" else b
        assert shmgemm.matmul(a, b, out=out, **kw) is out
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("kw", MODES, ids=["in_process", "fork", "spawn", "auto"])
def test_out_that_partly_overlaps_an_operand_gets_numpys_answer(kw):
    base = rng.standard_normal((400, 300))
    b = rng.standard_normal((300, 300))
    a, out = base[:300], base[100:400]
    ref = a @ b
    shmgemm.matmul(a, b, out=out, **kw)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)
    # Transposed and strided views of one base.
    base = rng.standard_normal((200, 200))
    a, out = base[::2, :100], base.T[1::2, :100]
    ref = a @ base[:100, :100]
    shmgemm.matmul(a, base[:100, :100].copy(), out=out, **kw)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


def test_interleaved_views_that_share_no_element_are_written_in_place():
    # Columns 0, 2, 4, ... against 1, 3, 5, ...: one span of memory, no element shared, so
    # no temporary is needed (numpy's exact test says they do not overlap).
    base = np.zeros((200, 400))
    base[:, ::2] = rng.standard_normal((200, 200))
    a, out = base[:, ::2], base[:, 1::2]
    b = rng.standard_normal((200, 200))
    ref = a @ b
    assert not np.shares_memory(a, out)
    _, rep = shmgemm.matmul(a, b, out=out, workers=0, report=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


def test_pool_with_out_that_is_an_arena_operand():
    with shmgemm.Pool(2) as pool:
        a = pool.asarray(rng.standard_normal((300, 300)))
        b = pool.asarray(rng.standard_normal((300, 300)))
        ref = a @ b
        assert pool.matmul(a, b, out=a) is a
        np.testing.assert_allclose(a, ref, rtol=1e-12, atol=1e-10)
        ref = a @ b
        pool.submit(a, b, out=b).result(timeout=60)
        np.testing.assert_allclose(b, ref, rtol=1e-12, atol=1e-10)
        base = pool.asarray(rng.standard_normal((400, 300)))
        x, out = base[:300], base[100:400]
        ref = x @ b
        pool.matmul(x, b, out=out)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


# --- the host's OpenBLAS is the host's ------------------------------------------------------

KERNEL_CHILD = """
import ctypes, os, sys, threading, time
os.environ["OPENBLAS_CORETYPE"] = "Prescott"  # OpenBLAS's fallback, as on a CPU it does not know
import numpy as np
del os.environ["OPENBLAS_CORETYPE"]
corename = ctypes.CDLL("libopenblas.so.0").openblas_get_corename
corename.restype = ctypes.c_char_p
n = int(sys.argv[1])
rng = np.random.default_rng(0)
a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
ref = a @ b
wrong, runs, stop = [], [0], threading.Event()
def loop():
    while not stop.is_set():
        if not np.array_equal(a @ b, ref):
            wrong.append(1)
        runs[0] += 1
t = threading.Thread(target=loop)
t.start()
time.sleep(0.2)
import shmgemm
time.sleep(0.5)
stop.set()
t.join()
print(corename().decode(), "OPENBLAS_CORETYPE" in os.environ, len(wrong), runs[0])
"""


@pytest.mark.parametrize("n", [64, 500, 2000])
def test_import_leaves_the_hosts_openblas_alone(n):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(KERNEL_CHILD), str(n)],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    core, env_set, wrong, runs = r.stdout.split()
    assert core == "Prescott"  # OpenBLAS's own choice, kept
    assert env_set == "False"  # no OPENBLAS_CORETYPE put into the host's environment
    assert int(wrong) == 0 and int(runs) > 0


def _cpu_has_avx2():
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "")
    return " avx2 " in flags + " " and " fma " in flags + " "


def test_show_config_tells_version_openblas_cores_calibration_and_the_default_plan(tmp_path):
    code = """
    import json, shmgemm
    print(json.dumps(shmgemm.show_config(mode="dicts")))
    shmgemm.show_config()
    """
    cache = tmp_path / "shmgemm" / "calibration.json"
    for file in (None, "not json"):
        if file is not None:
            cache.parent.mkdir()
            cache.write_text(file)
        r = run_child(code, env={"XDG_CACHE_HOME": str(tmp_path)})
        assert r.returncode == 0, r.stderr
        config = json.loads(r.stdout.splitlines()[0])
        printed = "\n".join(r.stdout.splitlines()[1:])
        assert config["version"] == shmgemm.__version__
        assert f"shmgemm {shmgemm.__version__}" in printed
        assert config["openblas"].startswith("OpenBLAS ") and config["openblas"] in printed
        assert config["kernels"]["host"] and config["kernels"]["workers"] in printed
        assert config["cores"] == len(os.sched_getaffinity(0))
        calibration = config["calibration"]
        assert calibration["file"] == str(cache) and str(cache) in printed
        assert ("none yet" in printed) == (file is None)
        if file is None:
            assert calibration["source"] == "built-in defaults"
        else:
            assert calibration["source"].startswith(f"built-in defaults ({cache} is unreadable")
        assert calibration["figures"]["gflops_f64"] > 0
        assert "gflops_f64" in printed
        plan = config["plan_4000"]
        assert plan["reason"] and plan["reason"] in printed
        assert [c["workers"] for c in plan["candidates"]][:2] == [0, 1]
        assert all(c["predicted_seconds"] > 0 for c in plan["candidates"])
        assert plan["in_process"] == (plan["workers"] == 0)


@pytest.mark.skipif(not _cpu_has_avx2(), reason="needs a CPU with AVX2 (a better kernel than "
                                                 "OpenBLAS's fallback)")
def test_workers_run_better_kernels_than_a_fallen_back_host_and_show_config_says_so():
    code = """
    import os
    os.environ["OPENBLAS_CORETYPE"] = "Prescott"
    import numpy as np
    del os.environ["OPENBLAS_CORETYPE"]
    import shmgemm
    config = shmgemm.show_config(mode="dicts")
    print(config["host"], config["workers"])
    print("HOW", config["advice"])
    a = np.random.default_rng(0).standard_normal((300, 300))
    for launch in ("fork", "spawn"):
        c = shmgemm.matmul(a, a, workers=1, launch=launch)
        assert np.allclose(c, a @ a), launch
    # The plan knows this process computes on the slower kernels: workers for a product that
    # a host on the CPU's kernels computes in process.
    big = np.random.default_rng(1).standard_normal((1500, 1500))
    c, rep = shmgemm.matmul(big, big, report=True)
    assert np.allclose(c, big @ big)
    print("auto", "workers" if rep["workers"] else "in process")
    """
    # The built-in figures (an empty cache folder): the same plan on every machine.
    r = run_child(code, env={"OPENBLAS_VERBOSE": "2", "XDG_CACHE_HOME": tempfile.mkdtemp()})
    assert r.returncode == 0, r.stderr
    host, workers = r.stdout.splitlines()[0].split()
    assert host == "Prescott" and workers != "Prescott"
    assert f"OPENBLAS_CORETYPE={workers}" in r.stdout
    # Each worker says which kernels it runs (OpenBLAS's verbose start-up line).
    assert r.stderr.count(f"Core: {workers}") >= 2, r.stderr
    assert "auto workers" in r.stdout, r.stdout
    # A host on the CPU's own kernels computes the same product in process.
    same = run_child("""
    import numpy as np, shmgemm
    big = np.random.default_rng(1).standard_normal((1500, 1500))
    c, rep = shmgemm.matmul(big, big, report=True)
    print("auto", "workers" if rep["workers"] else "in process")
    """, env={"XDG_CACHE_HOME": tempfile.mkdtemp()})
    assert "auto in process" in same.stdout, (same.stdout, same.stderr)


# --- threadpoolctl's limits hold --------------------------------------------------------------

def test_threadpool_limits_cap_in_process_products_and_are_restored():
    import threadpoolctl  # Debian's python3-threadpoolctl (tools/install-deps.sh)
    openblas = ctypes.CDLL("libopenblas.so.0")
    a = rng.standard_normal((600, 600))
    before = openblas.openblas_get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        c, rep = shmgemm.matmul(a, a, workers=0, report=True)
        assert rep["threads_per_worker"] == 1
        assert openblas.openblas_get_num_threads() == 1
        shmgemm.matmul(a, a)  # the automatic plan too
        assert openblas.openblas_get_num_threads() == 1
    assert openblas.openblas_get_num_threads() == before
    # A count shmgemm sets for its product is given back, also when the call fails.
    shmgemm.matmul(a, a, workers=0, threads=1)
    assert openblas.openblas_get_num_threads() == before
    # Two steps of rows (a timeout is looked at between steps), the first past the deadline.
    big = rng.standard_normal((3000, 3000)).astype(np.float32)
    with pytest.raises(shmgemm.TimeoutError):
        shmgemm.matmul(big, big, workers=0, threads=1, timeout=1e-3)
    assert openblas.openblas_get_num_threads() == before


# --- a closed Pool, and a Pool across fork ---------------------------------------------------

def test_every_method_of_a_closed_pool_raises_pool_closed_error():
    code = """
    import numpy as np, shmgemm
    x = np.ones((3, 3))
    with shmgemm.Pool(1) as p:
        pass
    calls = {"matmul": lambda: p.matmul(x, x), "submit": lambda: p.submit(x, x),
             "matmul_many": lambda: p.matmul_many([(x, x)]), "empty": lambda: p.empty(3),
             "zeros": lambda: p.zeros(3), "asarray": lambda: p.asarray(x),
             "stats": lambda: p.stats(), "workers": lambda: p.workers}
    for name, call in calls.items():
        try:
            call()
            print(name, "no error")
        except shmgemm.PoolClosedError as e:
            assert isinstance(e, shmgemm.PoolError) and "closed" in str(e), e
            print(name, "PoolClosedError")
    p.close()  # again: nothing
    """
    r = run_child(code)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.count("PoolClosedError") == 8, r.stdout


def test_a_pool_used_in_a_forked_child_raises_there_and_the_parent_keeps_it():
    code = """
    import gc, os, sys, numpy as np, shmgemm
    x = np.ones((200, 200))
    p = shmgemm.Pool(2)
    arena = p.asarray(x)
    assert p.matmul(x, x)[0, 0] == 200
    for how in ("exit", "drop", "use", "exit_arena"):
        pid = os.fork()
        if pid == 0:
            if how == "drop":
                del p, arena
                gc.collect()
                os._exit(0)
            if how == "use":
                try:
                    p.matmul(x, x)
                    os._exit(1)
                except shmgemm.PoolError as e:
                    ok = f"belongs to process {os.getppid()}" in str(e)
                    os._exit(0 if ok else 2)
            if how == "exit_arena":
                arena[0, 0] = 5  # the arena's memory is shared: fine to use
            sys.exit(0)  # atexit and every finalizer run
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, (how, status)
        np.testing.assert_allclose(p.matmul(x, x), x @ x)
        assert p.stats()["failed_jobs"] == 0
    p.close()
    print("ok")
    """
    r = run_child(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)


# --- threads and fork -------------------------------------------------------------------------

def test_threads_mixing_fork_and_in_process_calls_do_not_deadlock():
    code = """
    import threading, numpy as np, shmgemm
    a = np.random.default_rng(0).standard_normal((400, 400))
    ref = a @ a
    bad = []
    def work(i):
        for r in range(30):
            c = shmgemm.matmul(a, a, workers=2 if (r + i) % 2 else 0, launch="fork")
            if not np.allclose(c, ref):
                bad.append(r)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("bad", len(bad))
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "bad 0", (r.stdout, r.stderr)


def test_the_automatic_launch_spawns_while_numpy_computes_in_another_thread():
    code = """
    import os, threading, time, warnings, numpy as np, shmgemm
    big = np.random.default_rng(0).standard_normal((1500, 1500))
    a = np.random.default_rng(1).standard_normal((500, 400))
    stop = threading.Event()
    def busy():
        while not stop.is_set():
            big @ big
    big @ big  # OpenBLAS's own threads started: they are counted as its, not as others
    threads_before = len(os.listdir("/proc/self/task"))
    t = threading.Thread(target=busy)
    t.start()
    try:
        for _ in range(5):
            c, rep = shmgemm.matmul(a, a.T, workers=2, report=True)
            assert np.allclose(c, a @ a.T)
            assert rep["launch"] == "spawn", rep["launch"]
    finally:
        stop.set()
        t.join()
    # Gone from the kernel's list too (join returns a moment before it is).
    while len(os.listdir("/proc/self/task")) > threads_before:
        time.sleep(0.001)
    c, rep = shmgemm.matmul(a, a.T, workers=2, report=True)
    print("alone", rep["launch"])
    # An explicit fork with a thread alive (here one that runs Python only: a fork while it
    # were in OpenBLAS would deadlock) warns, once.
    stop.clear()
    t = threading.Thread(target=lambda: stop.wait())
    t.start()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        shmgemm.matmul(a, a.T, workers=2, launch="fork")
        shmgemm.matmul(a, a.T, workers=2, launch="fork")
    stop.set()
    t.join()
    print("warnings", sum("fork" in str(x.message) for x in w))
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "warnings 1" in r.stdout and "alone fork" in r.stdout, r.stdout


# --- Ctrl-C stops only the call it was meant for ----------------------------------------------

def test_keyboard_interrupt_stops_only_the_main_threads_call():
    code = """
    import os, signal, threading, time, numpy as np, shmgemm
    a = np.random.default_rng(0).standard_normal((2500, 2500))
    small = a[:1000, :1000].copy()
    ref = small @ small
    done, side = threading.Event(), {"calls": 0, "errors": [], "wrong": 0}
    def work():
        while not done.is_set():
            try:
                for kw in (dict(workers=1, threads=1), dict(workers=0, threads=1)):
                    side["wrong"] += not np.allclose(shmgemm.matmul(small, small, **kw), ref)
                    side["calls"] += 1
            except BaseException as e:
                side["errors"].append(repr(e))
    t = threading.Thread(target=work)
    t.start()
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        for _ in range(20):
            shmgemm.matmul(a, a, workers=1, threads=1)
        print("main finished")
    except KeyboardInterrupt:
        print("main interrupted")
    time.sleep(0.3)
    done.set()
    t.join()
    print("side", side["calls"] > 2, side["errors"], side["wrong"])
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "main interrupted" in r.stdout and "side True [] 0" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("how", ["matmul", "result"])
def test_keyboard_interrupt_while_waiting_on_a_pool_comes_at_once_and_the_pool_goes_on(how):
    # The wait is interrupted while the job runs: Pool.matmul stops the job (its worker is
    # killed and replaced), a Future's result() raises with the job still running. How soon
    # is measured by python -m shmgemm.bench --interrupts, not here (a time is no test).
    code = f"""
    import os, signal, threading, time, numpy as np, shmgemm
    a = np.random.default_rng(0).standard_normal((5000, 5000))
    x = np.random.default_rng(1).standard_normal((100, 100))
    with shmgemm.Pool(2) as pool:
        pool.matmul(x, x)
        a = pool.asarray(a)  # in the arena: nothing to stage, the job runs at once
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        f = None
        try:
            if "{how}" == "matmul":
                pool.matmul(a, a)
            else:
                f = pool.submit(a, a)
                f.result()
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", "running" if f is None or not f.done() else "done")
        s = pool.stats()
        print("replaced", s["workers_replaced"], "failed", s["failed_jobs"])
        np.testing.assert_allclose(pool.matmul(x, x), x @ x)
        print("usable")
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "interrupted running" in r.stdout and "usable" in r.stdout, r.stdout
    if how == "matmul":
        assert "replaced 0" not in r.stdout and "failed 1" in r.stdout, r.stdout


# --- limits and arguments ---------------------------------------------------------------------

def test_timeouts_inf_is_no_limit_negative_and_nan_are_refused():
    a = rng.standard_normal((300, 300))
    with shmgemm.Pool(1, timeout=float("inf")) as pool:
        np.testing.assert_allclose(pool.matmul(a, a), a @ a)
        assert pool.stats()["workers_replaced"] == 0
    np.testing.assert_allclose(shmgemm.matmul(a, a, workers=2, timeout=math.inf), a @ a)
    for bad in (-1, float("nan"), -math.inf):
        with pytest.raises(ValueError, match="timeout"):
            shmgemm.Pool(1, timeout=bad)
        with pytest.raises(ValueError, match="timeout"):
            shmgemm.matmul(a, a, timeout=bad)
    with pytest.raises(TypeError, match="timeout"):
        shmgemm.matmul(a, a, timeout="1")


@pytest.mark.parametrize("call, exc, name", [
    (lambda a: shmgemm.matmul(a, a, threads=-1), ValueError, "threads"),
    (lambda a: shmgemm.matmul(a, a, threads=1000), ValueError, "threads"),
    (lambda a: shmgemm.matmul(a, a, threads=1.5), TypeError, "threads"),
    (lambda a: shmgemm.matmul(a, a, launch=None), ValueError, "launch"),
    (lambda a: shmgemm.matmul(a, a, launch="forkk"), ValueError, "launch"),
    (lambda a: shmgemm.matmul(a, a, workers=True), TypeError, "workers"),
    (lambda a: shmgemm.matmul(a, a, workers=1000), ValueError, "workers"),
    (lambda a: shmgemm.matmul(a, a, workers=-1), ValueError, "workers"),
    (lambda a: shmgemm.matmul(a, a, workers="2"), TypeError, "workers"),
    (lambda a: shmgemm.Pool(-1), ValueError, "workers"),
    (lambda a: shmgemm.Pool(0), ValueError, "workers"),
    (lambda a: shmgemm.Pool("2"), TypeError, "workers"),
    (lambda a: shmgemm.Pool(1, arena_bytes=-5), ValueError, "arena_bytes"),
    (lambda a: shmgemm.multiply_files("x.npy", "y.npy", "z.npy", rows_per_step=-1), ValueError,
     "rows_per_step"),
    (lambda a: shmgemm.multiply_files("x.npy", "y.npy", "z.npy", retries=-1), ValueError,
     "retries"),
    (lambda a: shmgemm.multiply_files("x.npy", "y.npy", "z.npy", memory=-1), ValueError,
     "memory"),
    (lambda a: shmgemm.multiply_files("x.npy", "y.npy", "z.npy", memory="1G"), TypeError,
     "memory"),
    (lambda a: shmgemm.matmul_many([np.ones((2, 3))]), TypeError, "pairs"),
    (lambda a: shmgemm.matmul_many([(a, a, a)]), TypeError, "pairs"),
    (lambda a: shmgemm.matmul(np.ma.masked_array(a), a), TypeError, "MaskedArray"),
])
def test_arguments_are_checked_in_pythons_words(call, exc, name):
    a = np.ones((4, 4))
    with pytest.raises(exc) as e:
        call(a)
    message = str(e.value)
    assert name in message, message
    assert "incompatible function arguments" not in message and "Invoked with" not in message
    assert "Options::" not in message and "pool_bytes" not in message


def test_matrix_subclass_is_refused_with_the_reason():
    m = np.matrix(np.ones((3, 3)))
    with pytest.raises(TypeError, match="np.matrix"):
        shmgemm.matmul(m, m)


def test_file_errors_are_pythons_builtin_classes(tmp_path):
    a = tmp_path / "a.npy"
    np.save(a, np.ones((3, 3)))
    missing = tmp_path / "missing.npy"
    with pytest.raises(FileNotFoundError) as e:
        shmgemm.multiply_files(missing, a, tmp_path / "c.npy")
    assert e.value.errno == errno.ENOENT and e.value.filename == str(missing)
    assert isinstance(e.value, shmgemm.FileError)
    with pytest.raises(FileNotFoundError) as e:
        shmgemm.multiply_files(a, a, tmp_path / "no-such-folder" / "c.npy")
    assert e.value.errno == errno.ENOENT
    assert e.value.filename == str(tmp_path / "no-such-folder" / "c.npy")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.npy"
        np.save(locked, np.ones((3, 3)))
        locked.chmod(0)
        with pytest.raises(PermissionError) as e:
            shmgemm.multiply_files(locked, a, tmp_path / "c.npy")
        assert e.value.errno == errno.EACCES and e.value.filename == str(locked)


def test_file_permission_error_as_nobody(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("as root, to run the case as nobody")
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    (tmp_path / "a.npy").chmod(0o600)
    tmp_path.chmod(0o777)
    code = f"""
    import os, errno, shmgemm
    os.setgid(65534); os.setuid(65534)
    try:
        shmgemm.multiply_files({str(tmp_path / 'a.npy')!r}, {str(tmp_path / 'a.npy')!r},
                               {str(tmp_path / 'c.npy')!r})
    except PermissionError as e:
        print(e.errno == errno.EACCES, e.filename, isinstance(e, shmgemm.FileError))
    """
    r = run_child(code)
    assert r.stdout.split() == ["True", str(tmp_path / "a.npy"), "True"], (r.stdout, r.stderr)


def _worker_cpu_ticks():
    """user + system clock ticks of each child of this process (a pool's workers)."""
    ticks = {}
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            for pid in f.read().split():
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                ticks[int(pid)] = int(fields[11]) + int(fields[12])
    return ticks


def test_submit_follows_concurrent_futures():
    with shmgemm.Pool(1, threads=1) as pool:
        bad = pool.submit(np.ones((3, 4)), np.ones((5, 6)))  # no exception here
        with pytest.raises(ValueError, match="mismatch"):
            bad.result(timeout=10)
        with pytest.raises(TypeError, match="dtype"):
            pool.submit(np.ones((3, 3), np.float16), np.ones((3, 3))).result(timeout=10)
        # A job that has not started can be cancelled: it never runs.
        big = rng.standard_normal((2000, 2000))
        idle = _worker_cpu_ticks()
        running = pool.submit(big, big)  # the one worker takes it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                t - idle.get(pid, 0) >= 3 for pid, t in _worker_cpu_ticks().items()):
            time.sleep(0.005)
        out = np.zeros((2000, 2000))
        queued = pool.submit(big, big, out=out)
        assert queued.cancel()
        assert queued.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result()
        # The running one cannot be: it goes on, and its result is right.
        assert not running.cancel()
        assert running.running() or running.done()
        done, _ = concurrent.futures.wait([running, queued], timeout=60)
        assert len(done) == 2
        np.testing.assert_allclose(running.result(), big @ big, rtol=1e-10, atol=1e-8)
        assert not out.any()  # the cancelled job never ran
        assert pool.stats()["jobs"] == 2 and pool.stats()["failed_jobs"] == 0


def test_progress_draws_only_on_a_terminal():
    code = """
    import numpy as np, shmgemm
    a = np.random.default_rng(0).standard_normal((4500, 4500))
    for kw in (dict(workers=0), dict(workers=2)):
        c, rep = shmgemm.matmul(a, a, progress=True, report=True, **kw)
        assert rep["compute_seconds"] > 1.1, rep  # long enough for a bar on a terminal
    """
    r = run_child(code, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\033" not in r.stderr, repr(r.stderr[:200])


STRESS = """
import sys, threading, warnings, numpy as np, shmgemm
warnings.simplefilter("ignore", RuntimeWarning)  # explicit forks with threads alive warn
numpy_busy = sys.argv[1] == "numpy"
rng = np.random.default_rng(7)
a = rng.standard_normal((150, 120))
b = rng.standard_normal((120, 90))
ints = rng.integers(-1000, 1000, (60, 50))
ref, iref = a @ b, ints @ ints.T
pool = shmgemm.Pool(2)
stop = threading.Event()
def numpy_loop():
    big = rng.standard_normal((400, 400))
    while not stop.is_set():
        big @ big
busy = threading.Thread(target=numpy_loop)
if numpy_busy:
    busy.start()
# With numpy in another thread, a fork is unsafe: "auto" must spawn then.
fork = "auto" if numpy_busy else "fork"
calls = [
    lambda: shmgemm.matmul(a, b, workers=0),
    lambda: shmgemm.matmul(a, b, workers=2, launch=fork),
    lambda: shmgemm.matmul(a, b, workers=2, launch="spawn"),
    lambda: shmgemm.matmul(a, b),
    lambda: pool.matmul(a, b),
    lambda: pool.submit(a, b).result(),
    lambda: shmgemm.matmul_many([(a, b), (a[:50], b)], launch=fork)[0],
]
wrong, errors, done = [], [], [0]
def worker(t):
    for r in range(100):
        i = (r + t) % len(calls)
        try:
            c = calls[i]()
            if not np.allclose(c, ref, rtol=1e-12, atol=1e-10):
                wrong.append(i)
            if r % 10 == 0 and not np.array_equal(shmgemm.matmul(ints, ints.T, workers=0), iref):
                wrong.append("int")
        except Exception as e:
            errors.append(repr(e))
        done[0] += 1
threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
for t in threads: t.start()
for t in threads: t.join()
stop.set()
if numpy_busy:
    busy.join()
pool.close()
print("done", done[0], "wrong", wrong, "errors", errors[:3])
"""


@pytest.mark.parametrize("with_numpy", [False, True], ids=["shmgemm_alone", "numpy_busy"])
def test_six_threads_mixing_every_kind_of_call_100_rounds(with_numpy):
    r = subprocess.run([sys.executable, "-c", STRESS, "numpy" if with_numpy else "alone"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert r.stdout.strip() == "done 600 wrong [] errors []", r.stdout
