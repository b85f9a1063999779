"""shmgemm: np.matmul on worker processes that share memory with this one.

The functions take numpy arrays (or anything ``np.asarray`` takes) and give numpy's answers:
numpy's result dtype and shape, exact integers that wrap as numpy's do, 1-D operands and
broadcast stacks. The work is split into blocks of rows of C, computed by OpenBLAS in worker
processes that read A and B where they are and write C in place; nothing is pickled.

- ``matmul(a, b)``: one product, workers started for the call (or none, for a small product).
- ``Pool()``: persistent workers, ``pool.submit`` returning ``concurrent.futures.Future``, and
  arrays in the pool's shared arena (``pool.empty``, ``pool.zeros``, ``pool.asarray``).
- ``matmul_many(pairs)``: any set of products at once, spread over the workers.
- ``multiply_files(a_path, b_path, out_path)``: ``.npy`` files to ``.npy`` file, mapped.

When to prefer ``launch="spawn"``: ``fork`` (the default) starts workers as children of this
process, which run only C++ and ``_exit``; other Python threads may run meanwhile. But a fork
while another thread of this process is inside OpenBLAS (numpy's ``@`` in a thread) deadlocks
in OpenBLAS's own fork handler (0.3.21's ``blas_thread_shutdown_``), and a library whose locks
have no fork handlers is only as safe as those locks. ``spawn`` starts the ``shmgemm-worker``
executable with ``posix_spawn``, which runs no fork handlers: the choice for a program that
computes with numpy in other threads (operands outside a pool's arena are then copied once into
shared memory). A ``Pool`` forks only when it starts and when it replaces a dead worker.
"""

import concurrent.futures
import os
import threading
import weakref

import numpy as np

from . import _core
from ._core import (Error, FileError, InterruptedError, InternalError, InvalidArgumentError,
                    PoolClosedError, PoolError, ResourceError, ShapeError, TimeoutError,
                    UnsupportedError, WorkerError)

__all__ = ["matmul", "matmul_many", "multiply_files", "Pool", "last_report", "result_type",
           "Error", "FileError", "InterruptedError", "InternalError", "InvalidArgumentError",
           "PoolClosedError", "PoolError", "ResourceError", "ShapeError", "TimeoutError", "UnsupportedError",
           "WorkerError", "SUPPORTED_DTYPES"]

# Where OpenBLAS fell back to kernels far slower than this CPU's (an OpenBLAS older than the
# CPU), loading shmgemm replaced them for this whole process (numpy's products too) and set
# OPENBLAS_CORETYPE for the processes it starts: here for the ones Python starts (subprocess,
# multiprocessing, joblib's workers), which take os.environ. A user's OPENBLAS_CORETYPE is kept.
_kernel, _replaced = _core.blas_kernel()
if _replaced:
    os.environ.setdefault("OPENBLAS_CORETYPE", _kernel)

SUPPORTED_DTYPES = tuple(np.dtype(name) for name in _core.supported_dtypes().split(", "))
_local = threading.local()


def last_report():
    """The report of this thread's last product (a dict, the CLI's ``--json`` keys), or None."""
    return getattr(_local, "report", None)


def _remember(report):
    _local.report = report
    return report


def _operand(x, name):
    a = np.asarray(x)
    if a.dtype not in SUPPORTED_DTYPES and a.dtype != np.bool_:
        if a.dtype.kind in "iufc" and a.dtype.newbyteorder("=") in SUPPORTED_DTYPES and \
                not a.dtype.isnative:
            return a.astype(a.dtype.newbyteorder("="))  # byte-swapped: numpy's values, native
        raise TypeError(
            f"shmgemm.matmul: {name} has dtype {a.dtype}, which shmgemm does not multiply; "
            f"supported: {', '.join(d.name for d in SUPPORTED_DTYPES)} (and bool)")
    return a


def _without_bools(a, b):
    """bool operands as numpy treats them: 0 and 1 of the other operand's dtype; bool @ bool
    as int64 sums (exact), true where non-zero. Returns (a, b, whether the result is bool)."""
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return a.astype(np.int64), b.astype(np.int64), True
    if a.dtype == np.bool_:
        a = a.astype(b.dtype)
    elif b.dtype == np.bool_:
        b = b.astype(a.dtype)
    return a, b, False


def result_type(a, b):
    """np.result_type of two operands over the supported dtypes (``int32, float32 -> float64``)."""
    a, b = _operand(a, "a"), _operand(b, "b")
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return np.dtype(np.bool_)
    a, b, _ = _without_bools(a, b)
    return np.dtype(_core.result_dtype(a.dtype, b.dtype))


def _typed(a, b):
    """The operands as the engine takes them, numpy's result shape, the engine's result dtype
    and the result's (bool for bool @ bool)."""
    a, b = _operand(a, "a"), _operand(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        # numpy's words for a 0-d operand.
        which = 0 if a.ndim == 0 else 1
        raise ValueError(
            f"matmul: Input operand {which} does not have enough dimensions (has 0, gufunc core "
            f"with signature (n?,k),(k,m?)->(n?,m?) requires 1)")
    a, b, boolean = _without_bools(a, b)
    shape = tuple(_core.matmul_shape(a, b))
    engine_dtype = np.dtype(_core.result_dtype(a.dtype, b.dtype))
    # An operand's own dtype object when it is the result's: numpy keeps int64 and longlong
    # apart as types, though they are one dtype here.
    engine_dtype = next((d for d in (a.dtype, b.dtype) if d == engine_dtype), engine_dtype)
    return a, b, shape, engine_dtype, np.dtype(np.bool_) if boolean else engine_dtype


def _prepare(a, b, out):
    """The operands as the engine takes them, the array to return, and (when that array cannot
    take the engine's result directly) the array the engine writes, copied into it after."""
    a, b, shape, engine_dtype, dtype = _typed(a, b)
    if out is None:
        out = np.empty(shape, dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError("return arrays must be of ArrayType")
        if out.shape != shape:
            if out.ndim != len(shape) or out.shape[:-2] != shape[:-2]:
                raise ValueError(
                    f"non-broadcastable output operand with shape {out.shape} doesn't match the "
                    f"broadcast shape {shape}")
            axis = 0 if out.shape[-2:][:1] != shape[-2:][:1] else 1
            raise ValueError(
                f"matmul: Output operand 0 has a mismatch in its core dimension {axis}, with "
                f"gufunc signature (n?,k),(k,m?)->(n?,m?) (size {out.shape[axis - 2]} is "
                f"different from {shape[axis - 2]})")
        if not np.can_cast(dtype, out.dtype, "same_kind"):
            raise TypeError(f"Cannot cast ufunc 'matmul' output from {dtype!r} to "
                            f"{out.dtype!r} with casting rule 'same_kind'")
    if out.dtype != engine_dtype or dtype != engine_dtype:
        return a, b, out, np.empty(shape, engine_dtype)
    return a, b, out, None


def _as_numpy_result(result, engine_dtype, dtype):
    """The engine's new array as numpy returns it: bool for bool @ bool, the operand's own
    dtype object (longlong stays longlong), a scalar for vector @ vector."""
    if dtype != engine_dtype:
        result = np.not_equal(result, 0)  # bool @ bool: true where the sum is non-zero
    elif result.dtype.char != engine_dtype.char:
        result = result.view(engine_dtype)
    return result[()] if result.ndim == 0 else result


def _finish(target, staged, returned_new):
    """Copies the engine's result into the array returned (casting as numpy does; bool: true
    where non-zero); a 0-d result of a vector @ vector becomes numpy's scalar."""
    if staged is not None:
        if target.dtype == np.bool_:
            np.not_equal(staged, 0, out=target)
        else:
            np.copyto(target, staged, casting="same_kind")
    return target[()] if returned_new and target.ndim == 0 else target


def _workers(workers):
    """(worker count for the engine, whether in process): "auto" -> the plan's; 0 -> none."""
    if isinstance(workers, str) and workers == "auto" or workers is None:
        return 0, False
    if not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers: {workers!r} is neither 'auto' nor a count of at least 0")
    return int(workers), workers == 0


def matmul(a, b, /, out=None, *, workers="auto", launch="fork", threads=None, progress=False,
           timeout=None, report=False):
    """Matrix product of two arrays, as ``np.matmul``, on worker processes.

    Parameters
    ----------
    a, b : array_like
        Operands of any of the supported dtypes (int8 ... uint64, float32, float64, complex64,
        complex128), mixed by numpy's promotion. 1-D operands are a row (``a``) or a column
        (``b``); N-D operands are stacks of matrices whose leading axes broadcast. Any strides:
        C- and Fortran-ordered operands, slices and broadcast views are read where they are
        (never copied with ``launch="fork"``); negative strides are copied once.
    out : ndarray, optional
        Where to write the result: numpy's result shape, and its dtype (or one numpy casts to).
        Written in place, at its strides.
    workers : int or "auto"
        Worker processes; 0: none, the product in this process; "auto": the cost model
        chooses (in process for small products).
    launch : {"fork", "spawn"}
        How workers start (see the module's docstring for when to prefer spawn).
    threads : int, optional
        OpenBLAS threads per worker; default: cores / workers.
    progress : bool
        Draw a progress bar on stderr for long products.
    timeout : float, optional
        Seconds after which the workers are killed and ``shmgemm.TimeoutError`` raised.
    report : bool
        Return ``(result, report)``: the plan, workers, seconds and bytes copied (the CLI's
        ``--json``). ``shmgemm.last_report()`` gives the same afterwards.

    Returns
    -------
    ndarray
        ``np.matmul(a, b)``.

    Raises
    ------
    ValueError
        Shapes numpy refuses, with numpy's message (``shmgemm.ShapeError`` is a ValueError).
    TypeError
        bool, float16, object, string or structured dtypes.
    KeyboardInterrupt
        Ctrl-C while computing: the workers are stopped and nothing is left in /dev/shm.
    shmgemm.WorkerError
        A worker died (killed, out of memory); the message names it and its rows.

    The GIL is released while the product runs.

    Examples
    --------
    >>> import numpy as np, shmgemm
    >>> a = np.arange(6, dtype=np.int64).reshape(2, 3)
    >>> shmgemm.matmul(a, a.T)
    array([[ 5, 14],
           [14, 50]])
    """
    count, in_process = _workers(workers)
    options = dict(workers=count, launch=launch, in_process=in_process,
                   threads=int(threads or 0), progress=progress, timeout=float(timeout or 0.0))
    if out is None:
        # Into memory the engine allocates where its workers write it: nothing copied back.
        a, b, _, engine_dtype, dtype = _typed(a, b)
        result, rep = _core.matmul_new(a, b, **options)
        result = _as_numpy_result(result, engine_dtype, dtype)
    else:
        a, b, target, staged = _prepare(a, b, out)
        rep = _core.matmul(a, b, target if staged is None else staged, **options)
        result = _finish(target, staged, False)
    _remember(rep)
    return (result, rep) if report else result


def multiply_files(a_path, b_path, out_path, *, workers="auto", launch="fork", threads=None,
                   backing="file", inputs="shared", rows_per_step=0, retries=0, fsync=False,
                   timeout=None):
    """``shmgemm multiply`` as a function: C = np.matmul(A, B) from .npy files to a .npy file.

    The files are mapped, not read: workers compute straight from A's and B's pages into the
    output's, which replaces ``out_path`` only when complete. Options as the command line's.
    Returns the report (a dict, the CLI's ``--json`` keys).
    """
    if inputs not in ("shared", "copy"):
        raise ValueError(f"inputs: {inputs!r} is neither 'shared' nor 'copy'")
    count, in_process = _workers(workers)
    rep = _core.multiply_files(str(a_path), str(b_path), str(out_path),
                               workers=count, in_process=in_process, launch=launch,
                               threads=int(threads or 0), backing=backing,
                               copy_inputs=(inputs == "copy"), rows_per_step=int(rows_per_step),
                               retries=int(retries), fsync=bool(fsync),
                               timeout=float(timeout or 0.0))
    return _remember(rep)


class Pool:
    """Persistent worker processes and a shared arena, for many products.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: one per core).
    launch : {"fork", "spawn"}
        How workers start; see the module's docstring.
    threads : int, optional
        OpenBLAS threads per worker (default: cores / workers).
    arena_bytes : int, optional
        Size of the shared arena (default: half of /dev/shm's free space, reserved page by page
        as arrays are allocated, so a large arena costs nothing until used).
    timeout : float, optional
        Seconds each job may take; a worker still on a late job is killed and replaced.

    Use it as a context manager; ``close()`` stops the workers (jobs not finished fail with
    ``shmgemm.PoolClosedError``), and every later call raises ``shmgemm.PoolClosedError``.
    Arrays from ``empty``/``zeros``/``asarray`` live in the arena: workers read and write them
    with no copy, and they stay valid while any view of them exists, even after the pool is
    closed. Thread-safe: any number of threads may submit at once.

    A pool belongs to the process that made it: in a child made by ``os.fork()`` (or a
    ``multiprocessing`` fork), every call raises ``shmgemm.PoolError``, and ``close()``, garbage
    collection and the interpreter's exit do nothing to it there; the parent's pool goes on.
    """

    def __init__(self, workers=None, launch="fork", *, threads=None, arena_bytes=0,
                 timeout=None):
        self._core = _core.Pool(workers=int(workers or 0), launch=launch,
                                threads=int(threads or 0), pool_bytes=int(arena_bytes),
                                timeout=float(timeout or 0.0))
        self._pid = os.getpid()
        self._futures = {}
        self._lock = threading.Lock()
        self._collector = None
        _pools.add(self)

    def _check(self):
        """Raises where the pool cannot be used: closed, or in another process."""
        if os.getpid() != self._pid:
            raise PoolError(f"this Pool belongs to process {self._pid}; a pool cannot be used in "
                            f"a child made by fork() (make a new one there)")
        if self._core.closed():
            raise PoolClosedError("the pool is closed")

    # Arrays in the arena.
    def empty(self, shape, dtype=np.float64):
        """A C-ordered array of ``shape`` in the pool's arena (zero-filled, as the arena is)."""
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        return self._core.alloc(np.dtype(dtype), list(shape))

    def zeros(self, shape, dtype=np.float64):
        """A zero-filled C-ordered array of ``shape`` in the pool's arena."""
        return self.empty(shape, dtype)

    def asarray(self, x, dtype=None):
        """A copy of ``x`` in the pool's arena (C order), for operands used many times."""
        x = np.asarray(x, dtype=dtype)
        y = self.empty(x.shape, x.dtype)
        np.copyto(y, x)
        return y

    def matmul(self, a, b, out=None):
        """``np.matmul(a, b)`` on the pool's workers; returns when done (GIL released)."""
        a, b, target, staged = _prepare(a, b, out)
        rep = self._core.matmul(a, b, target if staged is None else staged)
        _remember(rep)
        return _finish(target, staged, out is None)

    def submit(self, a, b, out=None):
        """``np.matmul(a, b)`` without waiting: a ``concurrent.futures.Future`` of the result.

        ``a``, ``b`` and ``out`` are kept alive until the job is done; callbacks,
        ``concurrent.futures.wait`` and ``as_completed`` work as with any Future.
        """
        a, b, target, staged = _prepare(a, b, out)
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            job = self._core.submit(a, b, target if staged is None else staged)
            self._futures[job] = (future, target, staged, out is None)
            if self._collector is None:
                self._collector = threading.Thread(target=self._collect, daemon=True,
                                                   name="shmgemm-pool-futures")
                self._collector.start()
        return future

    def _collect(self):
        # Resolves futures as jobs finish (the pool's monitor queues them).
        while True:
            with self._lock:
                if not self._futures and (self._core.closed() or self._core.pending() == 0):
                    self._collector = None
                    return
            for job, outcome in self._core.collect(0.1):
                with self._lock:
                    future, target, staged, new = self._futures.pop(job)
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                    continue
                future.report = outcome
                future.set_result(_finish(target, staged, new))

    def matmul_many(self, pairs):
        """The products of ``pairs`` (a sequence of ``(a, b)``), in order; see matmul_many."""
        self._check()
        return _many(self, pairs)

    def stats(self):
        """Jobs, tasks, staged bytes, workers replaced, failed jobs and arena bytes in use."""
        return self._core.stats()

    @property
    def workers(self):
        return self._core.workers()

    def close(self):
        """Stops the workers; jobs not finished fail with ``shmgemm.PoolClosedError``. Again, or
        in a process other than the pool's: nothing."""
        if os.getpid() != self._pid:
            return
        if not self._core.closed():
            self._core.close()
        collector = self._collector
        if collector is not None and collector is not threading.current_thread():
            collector.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if hasattr(self, "_core"):
                self.close()
        except Exception:
            pass


_pools = weakref.WeakSet()


def _close_pools():
    for pool in list(_pools):
        pool.close()


import atexit  # noqa: E402  (pools close before the interpreter finalizes)
atexit.register(_close_pools)

# Products below this many flops are computed in the calling process (with every core's
# OpenBLAS threads), one after another: a pool job from Python (staging a window, the job
# descriptor, the future) costs ~0.3 ms, more than such a product takes here.
_SMALL_FLOPS = 5e7


def _flops(a, b):
    k = a.shape[-1]
    m = a.shape[-2] if a.ndim > 1 else 1
    n = b.shape[-1] if b.ndim > 1 else 1
    batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))) \
        if a.ndim > 2 or b.ndim > 2 else 1
    return 2.0 * batch * m * n * k


def _many(pool, pairs):
    pairs = [(_operand(a, "a"), _operand(b, "b")) for a, b in pairs]
    flops = [_flops(a, b) for a, b in pairs]
    # Largest first, so that the workers finish together.
    big = sorted((i for i, f in enumerate(flops) if f >= _SMALL_FLOPS), key=lambda i: -flops[i])
    futures = {i: pool.submit(*pairs[i]) for i in big}
    results = [None] * len(pairs)
    # Meanwhile, the small ones here, in process, in one engine call.
    small = [i for i in range(len(pairs)) if i not in futures]
    results_small = _in_process_many([pairs[i] for i in small])
    for i, r in zip(small, results_small):
        results[i] = r
    for i, f in futures.items():
        results[i] = f.result()
    return results


def matmul_many(pairs, *, workers="auto", launch="fork"):
    """Any set of products at once: ``[np.matmul(a, b) for a, b in pairs]``, in parallel.

    Each pair may have its own shapes and dtypes. With ``launch="fork"`` (the default), one
    worker per core is forked once for the whole set and computes its share of the products one
    after another (one OpenBLAS thread each, largest first to the least loaded worker), reading
    the operands where they are and writing the results where they are returned: no worker runs
    one product per round trip, and nothing is copied. With ``workers="auto"``, a set whose
    products average under 50 MFLOP runs in this process instead (on this kind of machine such
    products run no faster on workers: packing the operands dominates them). With ``launch="spawn"``, a Pool's workers
    take the products (operands copied into its arena). Returns the results in the order of
    ``pairs`` (computed by workers, they share one block of memory, freed with the last of them).

    For many windows of one matrix (``a @ b[:, i:i+n]`` for every i), one product and a gather
    is cheaper still: ``(a @ b)[:, i:i+n]`` is the same matrix.
    """
    pairs = list(pairs)
    if launch != "fork":
        count = None if workers == "auto" else max(_workers(workers)[0], 1)
        with Pool(workers=count, launch=launch) as pool:
            return _many(pool, pairs)
    count, in_process = _workers(workers)
    return _engine_many(pairs, workers=count, in_process=in_process)


def _engine_many(pairs, **options):
    typed = [_typed(a, b) for a, b in pairs]
    results, rep = _core.matmul_many([(t[0], t[1]) for t in typed], **options)
    _remember(rep)
    return [_as_numpy_result(r, t[3], t[4]) for r, t in zip(results, typed)]


def _in_process_many(pairs):
    return _engine_many(pairs, in_process=True) if pairs else []
