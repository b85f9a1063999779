"""python -m shmgemm.bench: shmgemm from Python against numpy (and the joblib row-block recipe),
side by side in one run, alternating, medians of --rounds, in-memory arrays, every answer
checked against numpy's.

usage: python -m shmgemm.bench [--rounds 5] [--only TEXT] [--quick] [--json] [--memory]
                              [--interrupts]

--memory: instead, the peak PSS of the whole process tree (a fresh Python process and the
workers it starts, sampled every 2 ms from /proc/PID/smaps_rollup by this process, which is
not part of the tree) while it computes a 4000^2 float64 product, per variant, against
|A| + |B| + |C|.

--interrupts: instead, how soon Ctrl-C stops a long call: a fresh Python process starts a
5000^2 float64 product and sends itself SIGINT 0.5 s later; the seconds from the signal to the
KeyboardInterrupt, per way of calling, medians of --rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import shmgemm


def _joblib_recipe(a, b, n_jobs):
    """The joblib row-block recipe: a's rows split into n_jobs blocks, each np.dot in a worker."""
    from joblib import Parallel, delayed
    blocks = np.array_split(np.arange(a.shape[0]), n_jobs)
    parts = Parallel(n_jobs=n_jobs)(delayed(np.dot)(a[idx], b) for idx in blocks)
    return np.vstack(parts)


def _mp_init(a, b, out, shape):
    global _mp_a, _mp_b, _mp_out
    _mp_a, _mp_b = a, b
    _mp_out = np.frombuffer(out, dtype=np.float64).reshape(shape)


def _mp_rows(rows):
    np.dot(_mp_a[rows], _mp_b, out=_mp_out[rows])


def _multiprocessing_recipe(a, b, processes):
    """The multiprocessing recipe: a fork Pool whose workers inherit A and B copy-on-write and
    write their row blocks of C into a shared RawArray."""
    import ctypes
    import multiprocessing as mp
    shape = (a.shape[0], b.shape[1])
    out = mp.RawArray(ctypes.c_double, shape[0] * shape[1])
    step = -(-a.shape[0] // processes)
    blocks = [slice(i, min(i + step, a.shape[0])) for i in range(0, a.shape[0], step)]
    with mp.get_context("fork").Pool(processes, initializer=_mp_init,
                                     initargs=(a, b, out, shape)) as pool:
        list(pool.imap_unordered(_mp_rows, blocks))
    return np.frombuffer(out, dtype=np.float64).reshape(shape)


def _as_strided_windows(a, b, width):
    """The sliding-window answer with as_strided and a repeated A."""
    from numpy.lib.stride_tricks import as_strided
    count = b.shape[1] - width + 1
    windows = as_strided(b, shape=(count, b.shape[0], width),
                         strides=(b.strides[1], b.strides[0], b.strides[1]))
    return np.matmul(np.broadcast_to(a, (count,) + a.shape), windows)


def _threads_recipe(pairs, threads):
    """The thread recipe for many products: a thread pool, each product one np.matmul with one
    BLAS thread (threadpoolctl), so that the threads do not oversubscribe the cores."""
    from concurrent.futures import ThreadPoolExecutor
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as ex:
        return list(ex.map(lambda p: np.matmul(*p), pairs))


def _window_stack(b, width):
    """Every window of `width` columns of b, as a stack (count, rows, width): a view."""
    return np.lib.stride_tricks.sliding_window_view(b, width, axis=1).transpose(1, 0, 2)


def cases(quick, pool):
    """[(name, baseline, make)]: make() builds the case's operands (only for the cases run, so
    that one case's arrays do not weigh on another's) and returns {variant: function}."""
    s = 1000 if quick else 4000
    stack = 200 if quick else 2000
    count = 100 if quick else 1000
    cores = shmgemm._core.available_cores()

    def rng():
        return np.random.default_rng(0)

    def loop(pairs):
        return [np.matmul(x, y) for x, y in pairs]

    def square():
        r = rng()
        a, b = r.standard_normal((s, s)), r.standard_normal((s, s))
        return {
            "numpy": lambda: a @ b,
            "shmgemm.matmul": lambda: shmgemm.matmul(a, b),
            "in-process dgemm (workers=0)": lambda: shmgemm.matmul(a, b, workers=0),
            "joblib recipe": lambda: _joblib_recipe(a, b, cores),
            "multiprocessing recipe": lambda: _multiprocessing_recipe(a, b, cores),
        }

    def skinny():
        r = rng()
        a, b = r.standard_normal((50, 100000)), r.standard_normal((100000, 60))
        return {
            "numpy": lambda: a @ b,
            "shmgemm.matmul": lambda: shmgemm.matmul(a, b),
            "multiprocessing recipe": lambda: _multiprocessing_recipe(a, b, cores),
        }

    def small_int():
        x = rng().integers(0, 10, (1000, 1000)).astype(np.int64)
        return {"numpy": lambda: x @ x, "shmgemm.matmul": lambda: shmgemm.matmul(x, x)}

    def full_int():
        x = rng().integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (1000, 1000),
                           dtype=np.int64)
        return {"numpy": lambda: x @ x, "shmgemm.matmul": lambda: shmgemm.matmul(x, x)}

    def batch():
        r = rng()
        a, b = r.standard_normal((100, 200)), r.standard_normal((stack, 200, 200))
        return {"numpy": lambda: np.matmul(a, b), "shmgemm.matmul": lambda: shmgemm.matmul(a, b)}

    def tiny():
        # The sliding-window question's stack: 981 products of 8 kFLOP each.
        r = rng()
        a, b = r.standard_normal((981, 10, 20)), r.standard_normal((981, 20, 20))
        out = np.empty((981, 10, 20))
        return {
            "numpy loop of np.dot": lambda: [np.dot(x, y) for x, y in zip(a, b)],
            "np.matmul": lambda: np.matmul(a, b),
            "shmgemm.matmul": lambda: shmgemm.matmul(a, b),
            "shmgemm.matmul, out=": lambda: shmgemm.matmul(a, b, out=out),
        }

    def many():
        r = rng()
        shapes = [tuple(int(x) for x in r.integers(20, 401, 3)) for _ in range(count)]
        pairs = [(r.standard_normal((m, k)), r.standard_normal((k, n))) for m, k, n in shapes]
        return {
            "numpy loop": lambda: loop(pairs),
            f"{cores} threads, 1 BLAS thread each": lambda: _threads_recipe(pairs, cores),
            "shmgemm.matmul_many": lambda: shmgemm.matmul_many(pairs),
            "pool.matmul_many": lambda: pool().matmul_many(pairs),
        }

    def small_windows():
        # The sliding-window question's example: a 10 x 20 matrix times every 20-column window of
        # a 20 x 1000 one.
        r = rng()
        a, b = r.standard_normal((10, 20)), r.standard_normal((20, 1000))
        pairs = [(a, b[:, i:i + 20]) for i in range(981)]
        stack = _window_stack(b, 20)
        index = np.lib.stride_tricks.sliding_window_view(np.arange(1000), 20)
        return {
            "numpy loop": lambda: loop(pairs),
            "np.matmul on the window stack": lambda: np.matmul(a, stack),
            "numpy: one product, gathered": lambda: list((a @ b)[:, index].transpose(1, 0, 2)),
            "shmgemm.matmul_many": lambda: shmgemm.matmul_many(pairs),
            "shmgemm.matmul_many(copy=False)": lambda: shmgemm.matmul_many(pairs, copy=False),
            "shmgemm.matmul on the window stack": lambda: shmgemm.matmul(a, stack),
        }

    def windows():
        r = rng()
        a, b = r.standard_normal((100, 200)), r.standard_normal((200, 1000))
        pairs = [(a, b[:, i:i + 200]) for i in range(801)]
        index = np.lib.stride_tricks.sliding_window_view(np.arange(1000), 200)
        stack = _window_stack(b, 200)
        return {
            "as_strided + repeated A": lambda: _as_strided_windows(a, b, 200),
            "numpy loop": lambda: loop(pairs),
            "np.matmul on the window stack": lambda: np.matmul(a, stack),
            "shmgemm.matmul on the window stack": lambda: shmgemm.matmul(a, stack),
            "shmgemm.matmul_many": lambda: shmgemm.matmul_many(pairs),
            "shmgemm.matmul_many(copy=False)": lambda: shmgemm.matmul_many(pairs, copy=False),
            "pool.matmul_many": lambda: pool().matmul_many(pairs),
            "one product, then the windows": lambda: [
                w for p in [shmgemm.matmul(a, b)] for w in (p[:, i:i + 200] for i in range(801))],
            "numpy: one product, gathered": lambda: list((a @ b)[:, index].transpose(1, 0, 2)),
        }

    def round_trip():
        tiny = rng().standard_normal((8, 8))
        shared = pool().asarray(tiny)
        return {"numpy a @ b": lambda: tiny @ tiny, "pool.matmul": lambda: pool().matmul(tiny, tiny),
                "pool.matmul, arena operands": lambda: pool().matmul(shared, shared),
                "shmgemm.matmul": lambda: shmgemm.matmul(tiny, tiny)}

    def one_call(side):
        def make():
            x = rng().standard_normal((side, side))
            return {"numpy a @ b": lambda: x @ x, "shmgemm.matmul": lambda: shmgemm.matmul(x, x)}
        return make

    return [
        (f"{s}^2 float64", "numpy", square),
        ("50x100000x60 float64", "numpy", skinny),
        ("int64 randint(0,10) 1000^2", "numpy", small_int),
        ("int64 full range 1000^2", "numpy", full_int),
        (f"{stack} x (100x200 @ 200x200), A broadcast", "numpy", batch),
        ("981 x (10x20 @ 20x20), tiny products", "numpy loop of np.dot", tiny),
        (f"{count} products, sides 20-400", "numpy loop", many),
        ("981 windows of 20 columns, 10x20 @ 20x1000, tiny", "numpy loop", small_windows),
        ("801 windows of 200 columns, 100x200 @ 200x1000", "as_strided + repeated A", windows),
        ("8x8, one product per call", "numpy a @ b", round_trip),
        ("100x100, one product per call", "numpy a @ b", one_call(100)),
        ("300x300, one product per call", "numpy a @ b", one_call(300)),
    ]


_MEMORY_VARIANTS = {
    "numpy": "c = a @ b",
    "shmgemm.matmul": "c = shmgemm.matmul(a, b)",
    "shmgemm.matmul, 2 fork workers": "c = shmgemm.matmul(a, b, workers=2)",
    "shmgemm.matmul, 2 spawn workers": "c = shmgemm.matmul(a, b, workers=2, launch='spawn')",
    # (their imports count in their peaks: joblib's, and this module's, ~1 MiB)
    "joblib recipe, 2 jobs": "from shmgemm.bench import _joblib_recipe\nc = _joblib_recipe(a, b, 2)",
    "multiprocessing recipe, 2 processes":
        "from shmgemm.bench import _multiprocessing_recipe\nc = _multiprocessing_recipe(a, b, 2)",
}

_MEMORY_CHILD = """
import sys, numpy as np, shmgemm
s = int(sys.argv[1])
rng = np.random.default_rng(0)
a, b = rng.standard_normal((s, s)), rng.standard_normal((s, s))
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
{}
assert c.shape == (s, s)
sys.stdout.write("done\\n"); sys.stdout.flush(); sys.stdin.readline()
"""


def _tree_pss(root):
    """Summed PSS (bytes) of `root` and its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def _peak_pss(code, size):
    """(PSS before the product, peak PSS while computing it) of a fresh Python process tree."""
    child = subprocess.Popen([sys.executable, "-c", _MEMORY_CHILD.format(code), str(size)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        before = _tree_pss(child.pid)
        peak = before
        child.stdin.write("go\n")
        child.stdin.flush()
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(child.stdout, selectors.EVENT_READ)
        while not sel.select(timeout=0.002):
            peak = max(peak, _tree_pss(child.pid))
        assert child.stdout.readline() == "done\n"
        peak = max(peak, _tree_pss(child.pid))
        child.stdin.write("end\n")
        child.stdin.flush()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return before, peak


def memory(rounds, quick, as_json):
    size = 1000 if quick else 4000
    operands = 3 * size * size * 8
    mib = 1 << 20
    peaks = {v: [] for v in _MEMORY_VARIANTS}
    befores = {v: [] for v in _MEMORY_VARIANTS}
    for r in range(rounds):
        order = list(_MEMORY_VARIANTS) if r % 2 == 0 else list(reversed(_MEMORY_VARIANTS))
        for v in order:
            before, peak = _peak_pss(_MEMORY_VARIANTS[v], size)
            peaks[v].append(peak)
            befores[v].append(before)
    rows = [{"variant": v, "peak_pss_mib": statistics.median(peaks[v]) / mib,
             "before_mib": statistics.median(befores[v]) / mib,
             "over_operands_mib": (statistics.median(peaks[v]) - operands) / mib}
            for v in _MEMORY_VARIANTS]
    if as_json:
        print(json.dumps({"size": size, "operands_mib": operands / mib, "rounds": rounds,
                          "results": rows}))
        return 0
    print(f"{size}^2 float64, |A| + |B| + |C| = {operands / mib:.1f} MiB; peak PSS of the "
          f"process tree, medians of {rounds}")
    print(f"{'variant':<38} {'before MiB':>10} {'peak MiB':>10} {'over |A|+|B|+|C|':>17}")
    for row in rows:
        print(f"{row['variant']:<38} {row['before_mib']:10.1f} {row['peak_pss_mib']:10.1f} "
              f"{row['over_operands_mib']:+16.1f}")
    return 0


_INTERRUPT_CALLS = {
    "matmul, 2 workers": "shmgemm.matmul(a, a, workers=2)",
    "matmul, in process": "shmgemm.matmul(a, a, workers=0)",
    "Pool.matmul": "pool.matmul(a, a)",
    "Pool.submit(...).result()": "pool.submit(a, a).result()",
}

_INTERRUPT_CHILD = """
import os, signal, sys, threading, time, numpy as np, shmgemm
a = np.random.default_rng(0).standard_normal(({size}, {size}))
pool = shmgemm.Pool(2)
pool.matmul(a[:100, :100], a[:100, :100])
sent = []
def interrupt():
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(0.5, interrupt).start()
try:
    {call}
    print("finished")
except KeyboardInterrupt:
    print(time.monotonic() - sent[0])
pool.close()
"""


def interrupts(rounds, quick, as_json):
    size = 3000 if quick else 5000
    seconds = {v: [] for v in _INTERRUPT_CALLS}
    for r in range(rounds):
        order = list(_INTERRUPT_CALLS) if r % 2 == 0 else list(reversed(_INTERRUPT_CALLS))
        for v in order:
            out = subprocess.run([sys.executable, "-c", _INTERRUPT_CHILD.format(
                size=size, call=_INTERRUPT_CALLS[v])], capture_output=True, text=True,
                timeout=300).stdout.strip()
            seconds[v].append(float("inf") if out in ("", "finished") else float(out))
    rows = [{"call": v, "seconds": statistics.median(seconds[v]), "all": seconds[v]}
            for v in _INTERRUPT_CALLS]
    if as_json:
        print(json.dumps({"size": size, "rounds": rounds, "results": rows}))
        return 0
    print(f"SIGINT 0.5 s into a {size}^2 float64 product: seconds to the KeyboardInterrupt, "
          f"medians of {rounds}")
    for row in rows:
        print(f"{row['call']:<28} {row['seconds']:8.3f}   "
              f"({', '.join(f'{x:.3f}' for x in row['all'])})")
    return 0


def _plan(report):
    """A shmgemm call's plan in a few words ("in process x 2", "2 workers x 1"), or None."""
    if not report:
        return None
    if report["plan"]["reason"].startswith("numpy's matmul"):
        return "numpy's matmul, in the caller"
    if report["in_process"]:
        return f"in process x {report['threads_per_worker']}"
    return f"{report['workers']} {report['launch']} x {report['threads_per_worker']}"


def _same(x, y):
    if isinstance(x, list):
        return all(_same(p, q) for p, q in zip(x, y)) and len(x) == len(y)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.dtype.kind in "iu":
        return bool(np.array_equal(x, y))
    return bool(np.allclose(x, y, rtol=1e-9, atol=1e-9))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m shmgemm.bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant (median)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    parser.add_argument("--memory", action="store_true",
                        help="peak PSS of the process tree instead of times (see above)")
    parser.add_argument("--interrupts", action="store_true",
                        help="how soon Ctrl-C stops a long call, instead of times (see above)")
    args = parser.parse_args(argv)
    if args.memory:
        return memory(args.rounds, args.quick, args.json)
    if args.interrupts:
        return interrupts(args.rounds, args.quick, args.json)
    # One pool for the cases that use one, started when the first of them runs.
    pools = []

    def pool():
        if not pools:
            pools.append(shmgemm.Pool())
        return pools[0]

    results = []
    with np.errstate(all="ignore"):
        for name, baseline, make in cases(args.quick, pool):
            if args.only not in name:
                continue
            variants = make()
            times = {v: [] for v in variants}
            answers, plans = {}, {}
            # Calls this short are timed as the mean of several, each round.
            repeats = 2000 if "8x8" in name else 200 if "per call" in name else \
                20 if "tiny" in name else 1
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for v in order:
                    shmgemm._local.report = None
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        got = variants[v]()
                    times[v].append((time.perf_counter() - t0) / repeats)
                    answers.setdefault(v, got)
                    plans.setdefault(v, set()).add(_plan(shmgemm.last_report()))
            ref = answers[baseline]
            base = statistics.median(times[baseline])
            for v in variants:
                med = statistics.median(times[v])
                results.append({"case": name, "variant": v, "seconds": med,
                                "speedup_vs_" + "baseline": base / med,
                                "baseline": baseline, "answer_matches": _same(answers[v], ref),
                                "plans": sorted(p for p in plans[v] if p)})
            variants = answers = got = ref = None  # this case's arrays go before the next's
    for p in pools:
        p.close()
    if args.json:
        print(json.dumps({"rounds": args.rounds, "cores": os.cpu_count(), "results": results}))
        return 0
    print(f"{'case':<48} {'variant':<30} {'median s':>10} {'vs baseline':>11}  answer  plan")
    for r in results:
        print(f"{r['case']:<48} {r['variant']:<30} {r['seconds']:10.3g} "
              f"{r['speedup_vs_baseline']:10.2f}x  {'same' if r['answer_matches'] else 'DIFFERS'}"
              f"    {', '.join(r['plans'])}")
    return 0 if all(r["answer_matches"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
