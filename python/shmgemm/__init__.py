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

How workers start (``launch``): ``"auto"`` (the default) forks them where no other thread of
this process may be inside OpenBLAS, and spawns the ``shmgemm-worker`` executable otherwise
(``posix_spawn`` runs no fork handlers; operands outside a pool's arena are then copied once
into shared memory). A fork while another thread computes in OpenBLAS (numpy's ``@`` in a
thread) deadlocks in OpenBLAS's own fork handler, so ``launch="fork"`` with other threads alive
warns once, as CPython 3.12's ``os.fork()`` does. shmgemm's own calls never fork while another
of them is inside OpenBLAS. A ``Pool`` starts its workers once (and replaces a dead one).

shmgemm is a guest in its host: it never changes this process's OpenBLAS kernels, thread count,
environment or signal handlers beyond a call. Products it runs in this process use at most the
host's OpenBLAS thread count (threadpoolctl's limits hold), and whatever a call changes is given
back when it returns. A KeyboardInterrupt stops the call of the thread that receives it.
"""

import concurrent.futures
import contextlib
import json
import math
import numbers
import os
import threading
import time
import warnings
import weakref

import numpy as np

from . import _core
from ._core import (CancelledError, Error, FileError, InterruptedError, InternalError,
                    InvalidArgumentError, PoolClosedError, PoolError, ResourceError, ShapeError,
                    TimeoutError, UnsupportedError, WorkerError)

__version__ = _core.__version__

__all__ = ["matmul", "matmul_many", "multiply_files", "Pool", "limits", "last_report",
           "result_type", "show_config", "Error", "FileError", "InterruptedError", "InternalError",
           "InvalidArgumentError", "PoolClosedError", "PoolError", "ResourceError",
           "ShapeError", "TimeoutError", "UnsupportedError", "WorkerError", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = tuple(np.dtype(name) for name in _core.supported_dtypes().split(", "))
_TAKEN = frozenset(SUPPORTED_DTYPES + (np.dtype(np.bool_),))  # the engine's dtypes, and bool
_local = threading.local()


def last_report():
    """The report of this thread's last product, or None: a dict with the keys of
    ``shmgemm multiply --json`` (the C++ ``shmgemm::to_json``), ``plan`` among them."""
    report = getattr(_local, "report", None)
    if type(report) is tuple:  # numpy's matmul in the calling thread: (a, b shapes, dtype, s)
        report = _core.caller_report(*report)
    return None if report is None else _report_dict(report)


def _report_dict(report):
    return json.loads(report.json())


def _remember(report):
    """Keeps a product's report (the engine's, made a dict only when asked for)."""
    _local.report = report
    return report


# Arguments, checked here in Python's words: a TypeError for the wrong kind of value, a
# ValueError for one out of range, each naming the argument as the signature spells it.

def _whole(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"{name}: {value} is not a whole number {bound}")
    return int(value)


def _choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _timeout(value):
    """Seconds (0.0: no limit) from None or a number of at least 0; inf: no limit."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"timeout: expected a number of seconds or None, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout: {value!r} is not a number of seconds of at least 0 "
                         f"(None or inf: no limit)")
    return float(value)


def _threads(threads):
    if threads is None and _limited:
        threads = _limit("threads")
    return 0 if threads is None else _whole(threads, "threads", 1, _core.max_threads())


def _workers(workers):
    """(worker count for the engine, whether in process): "auto" or None -> the plan's (or
    this thread's limits'); 0 -> none, in this process."""
    if workers is None or isinstance(workers, str) and workers == "auto":
        limited = _limit("workers") if _limited else None
        if limited is not None and limited != "auto":
            return _workers(limited)
        return 0, False
    if isinstance(workers, str):
        raise TypeError(f"workers: {workers!r} is neither 'auto' nor a whole number")
    count = _whole(workers, "workers", 0, 256)
    return count, count == 0


_limited = 0  # limits() blocks open in any thread: only then do calls look for this thread's
_limited_lock = threading.Lock()


def _limit(name):
    """This thread's innermost limits() value of `name` (workers or threads), or None."""
    stack = getattr(_local, "limits", None)
    return stack[-1].get(name) if stack else None


class limits(contextlib.ContextDecorator):
    """Defaults for shmgemm's calls made in this thread inside the block (or the decorated
    function), in threadpoolctl's shape::

        with shmgemm.limits(workers=2, threads=1):
            c = shmgemm.matmul(a, b)        # 2 workers of 1 OpenBLAS thread each

    ``workers`` (0 to 256, or "auto") and ``threads`` (OpenBLAS threads per worker) stand for
    the arguments that ``matmul``, ``matmul_many``, ``multiply_files`` and ``Pool()`` are given
    at their defaults; arguments given explicitly win, and None leaves a setting as it was.
    Blocks nest (the inner one's values win); other threads are not affected. ``workers=0``
    keeps every product in this process; inside a block with limits, ``matmul`` hands no
    product to numpy's own matmul.
    """

    def __init__(self, workers=None, threads=None):
        if workers is not None:
            _workers(workers)  # checked now: a mistake fails at the with statement
        if threads is not None:
            _whole(threads, "threads", 1, _core.max_threads())
        self._settings = {k: v for k, v in (("workers", workers), ("threads", threads))
                          if v is not None}

    def __enter__(self):
        global _limited
        stack = _local.__dict__.setdefault("limits", [])
        stack.append({**(stack[-1] if stack else {}), **self._settings})
        with _limited_lock:
            _limited += 1
        return self

    def __exit__(self, *exc):
        global _limited
        _local.limits.pop()
        with _limited_lock:
            _limited -= 1
        return False

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"shmgemm.limits({settings})"


_fork_warned = False
_LAUNCHES = ("auto", "fork", "spawn")


def _launch(launch, workers=True):
    """`launch` checked; "fork" with other threads alive warns once (workers: whether workers
    may start)."""
    global _fork_warned
    _choice(launch, "launch", _LAUNCHES)
    if launch == "fork" and workers and not _fork_warned and \
            _core.automatic_launch() != "fork":
        _fork_warned = True
        warnings.warn("shmgemm: launch='fork' while this process runs other threads: a fork "
                      "while one of them is inside OpenBLAS deadlocks (launch='auto' spawns "
                      "workers then)", RuntimeWarning, stacklevel=3)
    return launch


def _pairs(pairs):
    """`pairs` as a list of (a, b), or a TypeError naming the item that is not a pair."""
    try:
        items = list(pairs)
    except TypeError:
        raise TypeError(f"pairs: expected a sequence of (a, b) pairs, got "
                        f"{type(pairs).__name__}") from None
    for i, pair in enumerate(items):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pairs: item {i} is not an (a, b) pair but a "
                            f"{type(pair).__name__}")
    return [(a, b) for a, b in items]


def _operand(x, name):
    if type(x) is np.ndarray and x.dtype in _TAKEN:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name}: a numpy.ma.MaskedArray, whose mask shmgemm would ignore; "
                        f"pass np.ma.filled({name}, 0) or {name}.data")
    if isinstance(x, np.matrix):
        raise TypeError(f"{name}: a np.matrix, whose product numpy returns as a np.matrix; "
                        f"shmgemm returns ndarrays: pass np.asarray({name})")
    a = np.asarray(x)
    if a.dtype not in SUPPORTED_DTYPES and a.dtype != np.bool_:
        if a.dtype.kind in "iufc" and a.dtype.newbyteorder("=") in SUPPORTED_DTYPES and \
                not a.dtype.isnative:
            return a.astype(a.dtype.newbyteorder("="))  # byte-swapped: numpy's values, native
        raise TypeError(
            f"{name}: dtype {a.dtype}, which shmgemm does not multiply; "
            f"supported: {', '.join(d.name for d in SUPPORTED_DTYPES)} (and bool)")
    return a


def _without_bools(a, b):
    """bool operands as numpy treats them: 0 and 1 of the other operand's dtype; bool @ bool
    as int64 sums (exact), true where non-zero. Returns (a, b, whether the result is bool)."""
    a_bool, b_bool = a.dtype.char == "?", b.dtype.char == "?"
    if a_bool and b_bool:
        return a.astype(np.int64), b.astype(np.int64), True
    if a_bool:
        a = a.astype(b.dtype)
    elif b_bool:
        b = b.astype(a.dtype)
    return a, b, False


def _dtype_of(x, name):
    """The dtype of an operand, or the dtype a type, dtype or name stands for."""
    if isinstance(x, (np.dtype, type, str)):
        try:
            return np.dtype(x)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
    return _operand(x, name).dtype


def result_type(a, b):
    """np.result_type of two operands, dtypes or types over the supported dtypes
    (``shmgemm.result_type(np.int32, np.float32)`` is float64)."""
    da, db = _dtype_of(a, "a"), _dtype_of(b, "b")
    if da == np.bool_ or db == np.bool_:
        # bool takes the other's dtype (bool with bool stays bool), as in numpy.
        return db if da == np.bool_ else da
    return np.dtype(_core.result_dtype(da, db))


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


def _prepare(a, b, out, casting="same_kind"):
    """The operands as the engine takes them, the array to return, and (when that array cannot
    take the engine's result directly) the array the engine writes, copied into it after."""
    a, b, shape, engine_dtype, dtype = _typed(a, b)
    if out is None:
        out = np.empty(shape, dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError("return arrays must be of ArrayType")
        if not out.flags.writeable:
            raise ValueError("output array is read-only")
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
        if not np.can_cast(dtype, out.dtype, casting):
            raise TypeError(f"Cannot cast ufunc 'matmul' output from {dtype!r} to "
                            f"{out.dtype!r} with casting rule {casting!r}")
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


# The largest m * k * n of a product of float32, float64, complex64 or complex128 matrices or
# vectors of one dtype that matmul hands to numpy's matmul in the calling thread: the engine
# would run it in process too (launching one worker takes longer than the whole product), and
# numpy calls the same OpenBLAS without the engine's costs.
_caller_limits = {np.dtype(c): _core.in_process_flops(np.dtype(c).name) / 2 for c in "fdFD"}
_AUTO = "auto"
_ndarray, _np_matmul, _np_empty, _clock = np.ndarray, np.matmul, np.empty, time.perf_counter


def matmul(a, b, /, out=None, *, workers=_AUTO, launch=_AUTO, threads=None, progress=False,
           timeout=None, report=False, **numpy_keywords):
    """Matrix product of two arrays, as ``np.matmul``, on worker processes.

    Parameters
    ----------
    a, b : array_like
        Operands of any of the supported dtypes (int8 ... uint64, float32, float64, complex64,
        complex128), mixed by numpy's promotion. 1-D operands are a row (``a``) or a column
        (``b``); N-D operands are stacks of matrices whose leading axes broadcast. Any strides:
        C- and Fortran-ordered operands, slices and broadcast views are read where they are
        (never copied with ``launch="fork"``); negative strides are copied once. A stack of
        overlapping windows of one array (``sliding_window_view(b, n, axis=1)`` moved to a
        stack, or ``as_strided``) times one matrix is computed as the one product the windows
        are part of, each window's product copied out of it.
    out : ndarray, optional
        Where to write the result: numpy's result shape, and its dtype (or one numpy casts to).
        Written in place, at its strides; an ``out`` that shares memory with ``a`` or ``b``
        gets numpy's answer too (the product is computed apart, then copied in).
    workers : int or "auto"
        Worker processes (0 to 256); 0: none, the product in this process; "auto": the cost
        model chooses (in process for small products).
    launch : {"auto", "fork", "spawn"}
        How workers start (see the module's docstring).
    threads : int, optional
        OpenBLAS threads per worker (1 to 1024); default: cores / workers. In this process, at
        most the host's OpenBLAS thread count (threadpoolctl's limit, say).
    progress : bool
        Draw a progress bar on stderr for long products, when stderr is a terminal.
    timeout : float, optional
        Seconds after which the workers are killed and ``shmgemm.TimeoutError`` raised (None or
        inf: no limit). A product whose work is all done is returned.
    report : bool
        Return ``(result, report)``: the plan, workers, seconds and bytes copied (the CLI's
        ``--json``). ``shmgemm.last_report()`` gives the same afterwards.
    casting, order, dtype, subok, axes
        ``np.matmul``'s keywords, as numpy takes them: ``dtype`` computes in that dtype (the
        operands cast under ``casting``, "same_kind" by default, which also rules ``out``),
        ``order`` lays out a new result, ``axes`` names the core axes of the operands and the
        result, ``subok`` (True) gives an ndarray subclass's result its type. ``out`` may also
        be numpy's one-array tuple. ``axis`` is refused, as numpy refuses it for matmul.

    Returns
    -------
    ndarray
        ``np.matmul(a, b)``. Products too small for workers to pay (float and complex matrices
        or vectors of one dtype that would run in this process anyway) are numpy's own
        ``np.matmul`` called here, without the engine's costs; ``last_report()`` says so.

    Raises
    ------
    ValueError
        Shapes numpy refuses, with numpy's message (``shmgemm.ShapeError`` is a ValueError);
        an argument out of range.
    TypeError
        float16, object, string or structured dtypes; masked arrays and np.matrix; an argument
        of the wrong kind.
    KeyboardInterrupt
        Ctrl-C while computing: the workers are stopped and nothing is left in /dev/shm. Only
        this call stops: other threads' calls go on.
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
    if type(a) is _ndarray and type(b) is _ndarray and workers is _AUTO and \
            launch is _AUTO and threads is None and progress is False and timeout is None and \
            report is False and not numpy_keywords and not _limited and \
            (out is None or type(out) is _ndarray):
        limit = _caller_limits.get(a.dtype)
        sa, sb = a.shape, b.shape
        if limit is not None and b.dtype is a.dtype and 0 < len(sa) <= 2 and \
                0 < len(sb) <= 2 and sa[-1] == sb[0] and \
                sa[-1] * (sa[0] if len(sa) == 2 else 1) * (sb[1] if len(sb) == 2 else 1) <= limit:
            # What the engine would do, without its costs: numpy's matmul here (no worker of
            # shmgemm's is forked meanwhile).
            start = _clock()
            result = _core.in_caller(_np_matmul, a, b, out)
            _local.report = (sa, sb, a.dtype, _clock() - start)
            return result
    count, in_process = _workers(workers)
    options = dict(workers=count, launch=_launch(launch, not in_process), in_process=in_process,
                   threads=_threads(threads), progress=_flag(progress, "progress"),
                   timeout=_timeout(timeout))

    def run(a, b, out, casting="same_kind", new=False):
        if out is None:
            # Into memory the engine allocates where its workers write it: nothing copied back.
            a, b, _, engine_dtype, dtype = _typed(a, b)
            result, rep = _core.matmul_new(a, b, **options)
            result = _as_numpy_result(result, engine_dtype, dtype)
        else:
            a, b, target, staged = _prepare(a, b, out, casting)
            rep = _core.matmul(a, b, target if staged is None else staged, **options)
            result = _finish(target, staged, new)
        _remember(rep)
        return result

    if numpy_keywords or type(out) is tuple or _subclass(a) or _subclass(b):
        result = _with_numpy_keywords(a, b, out, numpy_keywords, run)
    else:
        result = run(a, b, out)
    return (result, last_report()) if report else result


_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
_AxisError = getattr(np, "exceptions", np).AxisError


def _subclass(x):
    return isinstance(x, np.ndarray) and type(x) is not np.ndarray


def _core_axes(entry, count, item):
    """Entry `item` of np.matmul's `axes`, for an operand or result with `count` core axes."""
    if count == 1 and isinstance(entry, numbers.Integral):
        return (int(entry),)
    if not isinstance(entry, tuple):
        raise TypeError(f"axes item {item} should be a tuple")
    if len(entry) != count:
        raise ValueError(f"axes item {item} should be a tuple with {count} "
                         f"element{'' if count == 1 else 's'}")
    return entry


def _with_numpy_keywords(a, b, out, keywords, run):
    """np.matmul(a, b, out, **keywords) with np.matmul's keywords, as numpy takes them: casting,
    order, dtype, subok, axes, and `out` as a one-array tuple (axis refused, with numpy's words).
    run(a, b, out, casting, new) computes into `out` (None: a new array)."""
    unknown = sorted(keywords.keys() - {"casting", "order", "dtype", "subok", "axes", "axis"})
    if unknown:
        raise TypeError(f"matmul() got an unexpected keyword argument '{unknown[0]}'")
    if keywords.get("axis") is not None:
        raise TypeError("matmul: axis can only be used with a single shared core dimension, not "
                        "with the 3 distinct ones implied by signature (n?,k),(k,m?)->(n?,m?).")
    casting = keywords.get("casting", "same_kind")
    if casting not in _CASTINGS:
        raise ValueError(f"casting must be one of 'no', 'equiv', 'safe', 'same_kind', or "
                         f"'unsafe' (got {casting!r})")
    order = keywords.get("order", "K")
    if not isinstance(order, str):
        raise TypeError(f"order must be str, not {type(order).__name__}")
    if order.upper() not in ("C", "F", "A", "K"):
        raise ValueError(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    if type(out) is tuple:
        if len(out) != 1:
            raise ValueError("The 'out' tuple must have exactly one entry per ufunc output")
        out = out[0]
    # numpy's result type for subclasses: the __array_wrap__ of the input of highest priority.
    subclassed = [x for x in (a, b) if _subclass(x)]
    wrap = max(subclassed, key=lambda x: getattr(x, "__array_priority__", 0.0), default=None) \
        if keywords.get("subok", True) and out is None else None
    x, y = _operand(a, "a"), _operand(b, "b")
    dtype = keywords.get("dtype")
    if dtype is not None or casting != "same_kind":
        compute = result_type(x, y) if dtype is None else np.dtype(dtype)
        for i, v in enumerate((x, y)):
            if not np.can_cast(v.dtype, compute, casting):
                raise TypeError(f"Cannot cast ufunc 'matmul' input {i} from {v.dtype!r} to "
                                f"{compute!r} with casting rule {casting!r}")
        if dtype is not None:
            x = _operand(x.astype(compute, copy=False), "dtype")
            y = y.astype(compute, copy=False)
    axes = keywords.get("axes")
    if axes is not None:
        if not isinstance(axes, list):
            raise TypeError("axes should be a list.")
        cores = (min(x.ndim, 2), min(y.ndim, 2), (x.ndim > 1) + (y.ndim > 1))
        if len(axes) != 3:
            raise ValueError("axes should be a list with an entry for all 3 inputs and outputs; "
                             "entries for outputs can only be omitted if none of them has core "
                             "axes.")
        moved = [_core_axes(e, c, i) for i, (e, c) in enumerate(zip(axes, cores))]
        result_ndim = max(x.ndim - cores[0], y.ndim - cores[1]) + cores[2]
        for entry, ndim in zip(moved, (x.ndim, y.ndim, result_ndim)):
            for axis in entry:
                if not -ndim <= axis < ndim:
                    raise _AxisError(axis, ndim)
        ends = [(), (-1,), (-2, -1)]
        x = np.moveaxis(x, moved[0], ends[cores[0]])
        y = np.moveaxis(y, moved[1], ends[cores[1]])
        result_axes = moved[2]
        if out is not None:
            run(x, y, np.moveaxis(out, result_axes, ends[cores[2]]), casting)
            return out
        result = np.moveaxis(run(x, y, None, casting), ends[cores[2]], result_axes)
    elif out is None and (order.upper() == "F" or (
            order.upper() == "A" and all(v.flags.f_contiguous and not v.flags.c_contiguous
                                         for v in (x, y)))):
        _, _, shape, _, result_dtype = _typed(x, y)
        result = run(x, y, np.empty(shape, result_dtype, order="F"), casting, True)
    else:
        result = run(x, y, out, casting, out is None)
    if wrap is not None and isinstance(result, np.ndarray):
        result = wrap.__array_wrap__(result)
    return result


def multiply_files(a_path, b_path, out_path, *, workers="auto", launch="auto", threads=None,
                   backing="file", inputs="shared", rows_per_step=0, memory=0, retries=0,
                   fsync=False, timeout=None):
    """``shmgemm multiply`` as a function: C = np.matmul(A, B) from .npy files to a .npy file.

    The files are mapped, not read: workers compute straight from A's and B's pages into the
    output's, which replaces ``out_path`` only when complete. Options as the command line's
    (``rows_per_step=0``: only when A, B and C do not fit in memory; ``memory``: the bytes the
    product may keep resident, 0 for the memory available less an eighth: B in column panels or
    A and B in slabs along k when they do not fit, docs/memory.md). Returns the report (a
    dict, the CLI's ``--json`` keys). A missing or unreadable file raises the builtin class
    (``FileNotFoundError``, ``PermissionError``, with ``errno`` and ``filename``), as ``np.load``
    and ``np.save`` do; each is also a ``shmgemm.FileError``.
    """
    _choice(inputs, "inputs", ("shared", "copy"))
    count, in_process = _workers(workers)
    rep = _core.multiply_files(os.fspath(a_path), os.fspath(b_path), os.fspath(out_path),
                               workers=count, in_process=in_process,
                               launch=_launch(launch, not in_process), threads=_threads(threads),
                               backing=_choice(backing, "backing", ("file", "shm")),
                               copy_inputs=(inputs == "copy"),
                               rows_per_step=_whole(rows_per_step, "rows_per_step", 0),
                               memory=_whole(memory, "memory", 0),
                               retries=_whole(retries, "retries", 0, 100),
                               fsync=_flag(fsync, "fsync"), timeout=_timeout(timeout))
    return _report_dict(_remember(rep))


class _PoolFuture(concurrent.futures.Future):
    """A Pool job's Future: ``cancel()`` takes a job that no worker has taken yet off the
    pool's queue (it never runs, and True); a job that runs cannot be cancelled."""

    def __init__(self, pool):
        super().__init__()
        self._pool = pool
        self._job = None

    def result(self, timeout=None):
        self._wait(timeout)
        return super().result(timeout=0)

    def exception(self, timeout=None):
        self._wait(timeout)
        return super().exception(timeout=0)

    def _wait(self, timeout):
        # In slices of 50 ms: a signal (Ctrl-C) may reach any thread of the process, and only
        # the main thread, between two waits, runs Python's handler for it.
        end = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while not self.done():
                left = 0.05 if end is None else min(0.05, end - time.monotonic())
                if left <= 0:
                    return  # result(0) raises TimeoutError
                self._condition.wait(left)

    def cancel(self):
        if self._job is not None and self._pool._core.cancel(self._job):
            super().cancel()
            # As an executor does for a job it will never run: wait() and as_completed() then
            # count it done.
            self.set_running_or_notify_cancel()
            return True
        if self._job is not None and not self.done() and not self.running():
            try:
                self.set_running_or_notify_cancel()  # a worker has it: it runs
            except RuntimeError:
                pass  # it finished meanwhile
        return super().cancel()


class Pool:
    """Persistent worker processes and a shared arena, for many products.

    Parameters
    ----------
    workers : int, optional
        Worker processes (1 to 64; default: one per core).
    launch : {"auto", "fork", "spawn"}
        How workers start; see the module's docstring. With "auto", a worker that replaces a
        dead one is spawned when other threads run.
    threads : int, optional
        OpenBLAS threads per worker (1 to 1024; default: cores / workers).
    arena_bytes : int, optional
        Size of the shared arena (default: half of /dev/shm's free space, reserved page by page
        as arrays are allocated, so a large arena costs nothing until used).
    timeout : float, optional
        Seconds each job may take (None or inf: no limit); a worker still on a late job is
        killed and replaced.

    Use it as a context manager; ``close()`` stops the workers (jobs not finished fail with
    ``shmgemm.PoolClosedError``), and every later call raises ``shmgemm.PoolClosedError``.
    Arrays from ``empty``/``zeros``/``asarray`` live in the arena: workers read and write them
    with no copy, and they stay valid while any view of them exists, even after the pool is
    closed. Thread-safe: any number of threads may submit at once.

    A pool belongs to the process that made it: in a child made by ``os.fork()`` (or a
    ``multiprocessing`` fork), every call raises ``shmgemm.PoolError``, and ``close()``, garbage
    collection and the interpreter's exit do nothing to it there; the parent's pool goes on.
    """

    def __init__(self, workers=None, launch="auto", *, threads=None, arena_bytes=0,
                 timeout=None):
        if workers is None and _limited and _limit("workers") not in (None, "auto", 0):
            workers = _limit("workers")
        count = 0 if workers is None else _whole(workers, "workers", 1, 64)
        self._core = _core.Pool(workers=count, launch=_launch(launch), threads=_threads(threads),
                                arena_bytes=_whole(arena_bytes, "arena_bytes", 0),
                                timeout=_timeout(timeout))
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
        self._check()
        shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
        shape = tuple(_whole(d, "shape", 0) for d in shape)
        return self._core.alloc(np.dtype(dtype), list(shape))

    def zeros(self, shape, dtype=np.float64):
        """A zero-filled C-ordered array of ``shape`` in the pool's arena."""
        return self.empty(shape, dtype)

    def asarray(self, x, dtype=None):
        """A copy of ``x`` in the pool's arena (C order), for operands used many times."""
        self._check()
        x = np.asarray(x, dtype=dtype)
        y = self.empty(x.shape, x.dtype)
        np.copyto(y, x)
        return y

    def matmul(self, a, b, out=None):
        """``np.matmul(a, b)`` on the pool's workers; returns when done (GIL released). A
        KeyboardInterrupt meanwhile stops the job (its workers are replaced) and is raised."""
        if (out is None and type(a) is _ndarray and type(b) is _ndarray and a.dtype is b.dtype
                and a.dtype in _caller_limits and a.ndim == 2 == b.ndim
                and a.shape[1] == b.shape[0]):
            # Two matrices of one float or complex dtype: the engine's own checks (a closed
            # pool, another process) are all this call needs.
            target = _np_empty((a.shape[0], b.shape[1]), a.dtype)
            _local.report = self._core.matmul(a, b, target)
            return target
        self._check()
        a, b, target, staged = _prepare(a, b, out)
        rep = self._core.matmul(a, b, target if staged is None else staged)
        _remember(rep)
        return _finish(target, staged, out is None)

    def submit(self, a, b, out=None):
        """``np.matmul(a, b)`` without waiting: a ``concurrent.futures.Future`` of the result.

        As with ``concurrent.futures``, the product's own errors (shapes, dtypes) are raised
        by the Future's ``result()``, and ``cancel()`` stops a job that has not started (it
        never runs). ``a``, ``b`` and ``out`` are kept alive until the job is done; callbacks,
        ``concurrent.futures.wait`` and ``as_completed`` work as with any Future. A closed pool
        raises ``shmgemm.PoolClosedError`` here.
        """
        self._check()
        future = _PoolFuture(self)
        try:
            a, b, target, staged = _prepare(a, b, out)
            with self._lock:
                job = self._core.submit(a, b, target if staged is None else staged)
                future._job = job
                self._futures[job] = (future, target, staged, out is None)
                if self._collector is None:
                    self._collector = threading.Thread(target=self._collect, daemon=True,
                                                       name="shmgemm-pool-futures")
                    self._collector.start()
        except PoolError:
            raise
        except Exception as e:  # noqa: BLE001  (the job's own failure: the Future's)
            future.set_exception(e)
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
                if isinstance(outcome, CancelledError) or future.cancelled():
                    continue  # cancel() answers for it
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                    continue
                future.report = _report_dict(outcome)
                try:
                    result = _finish(target, staged, new)
                except Exception as e:  # noqa: BLE001  (e.g. out made read-only meanwhile)
                    future.set_exception(e)
                    continue
                future.set_result(result)

    def matmul_many(self, pairs):
        """The products of ``pairs`` (a sequence of ``(a, b)``), in order; see matmul_many."""
        self._check()
        return _many(self, _pairs(pairs))

    def submit_many(self, pairs):
        """``[pool.submit(a, b) for a, b in pairs]``, submitted largest first (so that the
        workers finish together): a ``concurrent.futures.Future`` per pair, in the order of
        ``pairs``, each done when its product is, so that ``concurrent.futures.as_completed``
        gives them as they finish. A pair numpy refuses fails its own Future, as with submit().
        """
        self._check()
        pairs = _pairs(pairs)

        def size(pair):
            try:
                return _flops(*pair)
            except Exception:  # noqa: BLE001  (its Future says why)
                return 0.0
        futures = [None] * len(pairs)
        for i in sorted(range(len(pairs)), key=lambda i: -size(pairs[i])):
            futures[i] = self.submit(*pairs[i])
        return futures

    def stats(self):
        """Jobs, tasks, staged bytes, workers replaced, failed jobs and arena bytes in use."""
        self._check()
        return self._core.stats()

    @property
    def workers(self):
        self._check()
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
        except Exception:  # noqa: BLE001  (nothing may escape a finalizer)
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
    return _core.matmul_flops(np.shape(a), np.shape(b))


def _many(pool, pairs, copy=True):
    pairs = [(_operand(a, "a"), _operand(b, "b")) for a, b in pairs]
    flops = [_flops(a, b) for a, b in pairs]
    # Largest first, so that the workers finish together.
    big = sorted((i for i, f in enumerate(flops) if f >= _SMALL_FLOPS), key=lambda i: -flops[i])
    futures = {i: pool.submit(*pairs[i]) for i in big}
    results = [None] * len(pairs)
    # Meanwhile, the small ones here, in process, in one engine call.
    small = [i for i in range(len(pairs)) if i not in futures]
    results_small = _in_process_many([pairs[i] for i in small], copy)
    for i, r in zip(small, results_small):
        results[i] = r
    for i, f in futures.items():
        results[i] = f.result()
    return results


def matmul_many(pairs, *, workers="auto", launch="auto", copy=True):
    """Any set of products at once: ``[np.matmul(a, b) for a, b in pairs]``, in parallel.

    Each pair may have its own shapes and dtypes. With ``launch="auto"`` (the default) or
    ``"fork"``, one worker per core is forked once for the whole set and computes its share of
    the products one after another (one OpenBLAS thread each, largest first to the least loaded
    worker, a product of more than a worker's share split by its rows), reading the operands
    where they are and writing the results where they are
    returned: no worker runs one product per round trip, and nothing is copied. With
    ``workers="auto"``, a set whose products average under 50 MFLOP runs in this process instead
    (such products run no faster on workers: packing the operands dominates them), and so does
    any set under ``launch="auto"`` while other threads run (a fork is unsafe then). In this
    process, float products that OpenBLAS takes as they are run side by side on one thread per
    core, each on one OpenBLAS thread (OpenBLAS's thread count is 1 for the call, and given back)
    when no other thread runs and no product is more than a thread's share; otherwise one after
    another on OpenBLAS's threads. With
    ``launch="spawn"``, a Pool's workers take the products (operands copied into its arena).
    Returns the results in the order of ``pairs`` (computed by workers, or taking at most 1 MiB
    in all, they lie in one block of memory, freed with the last of them; no two overlap).

    Work the pairs share is found first: one ``a`` times column windows of one array
    (``[(a, b[:, i:i+n]) for i in ...]``, windows that overlap or touch), or row windows of one
    array times one ``b``, are computed as one product over the windows' union, and each
    result is copied out of it: an array of its own, writeable, sharing no memory with another
    result; with ``copy=False`` each is a read-only view of it instead, as
    ``sliding_window_view`` gives windows (no copy: the fastest answer for windows that are
    only read). ``shmgemm.last_report()["plan"]["reason"]`` says what was found. A set of plain
    ndarrays is handed to the engine in one pass, with one allocation for the results.
    """
    pairs = _pairs(pairs)
    count, in_process = _workers(workers)
    _launch(launch, not in_process)
    copy = _flag(copy, "copy")
    if launch == "spawn":
        with Pool(workers=None if workers in ("auto", None) else max(count, 1),
                  launch=launch) as pool:
            return _many(pool, pairs, copy)
    return _engine_many(pairs, workers=count, in_process=in_process, launch=launch, copy=copy)


def show_config(mode="stdout"):
    """What shmgemm runs on here, as ``np.show_config()`` tells numpy's: shmgemm's version,
    OpenBLAS's build and the kernels this process and shmgemm's workers run, the cores it may
    use, the calibration file and the figures the automatic plan uses, and the plan it makes for
    a 4000 x 4000 float64 product from this thread now (planned, not run).

    ``mode="stdout"`` prints it; ``mode="dicts"`` returns it as a dict: ``version``,
    ``openblas``, ``kernels`` (``host``, ``workers``), ``cores``, ``calibration`` (``file``,
    ``source``, ``figures``), ``plan_4000`` (``reason``, ``candidates``, ``workers``,
    ``threads_per_worker``, ``in_process``), ``host`` and ``workers`` (the kernels again) and
    ``advice``.

    The two kernels differ only where OpenBLAS does not know the CPU and falls back to far
    slower ones: the workers then run the CPU's, and ``advice`` says how this process gets them
    too (shmgemm never switches a host's OpenBLAS: another thread may be computing in it).
    """
    _choice(mode, "mode", ("stdout", "dicts"))
    config = json.loads(_core.configuration())
    host, workers = config["kernels"]["host"], config["kernels"]["workers"]
    config["host"], config["workers"] = host, workers
    config["advice"] = "" if host == workers else (
        f"this process runs OpenBLAS's {host} kernels (its fallback on this CPU) and shmgemm's "
        f"workers {workers}: start Python with OPENBLAS_CORETYPE={workers} for numpy and "
        f"shmgemm's in-process products to run them too")
    if mode == "dicts":
        return config
    calibration, plan = config["calibration"], config["plan_4000"]
    print(f"shmgemm {config['version']}")
    print(f"OpenBLAS: {config['openblas']}")
    print(f"  kernels: {host} in this process, {workers} in shmgemm's workers")
    print(f"cores: {config['cores']}")
    exists = os.path.exists(calibration["file"])
    print(f"calibration file: {calibration['file']}"
          f"{'' if exists else ' (none yet: `shmgemm calibrate` measures this machine)'}")
    print(f"  the plan's figures: {calibration['source']}")
    for name, value in calibration["figures"].items():
        print(f"    {name}: {value}")
    print("plan for a 4000 x 4000 float64 product:")
    print(f"  {plan['reason']}")
    for c in plan["candidates"]:
        where = "in process" if c["workers"] == 0 else \
            f"{c['workers']} worker{'s' if c['workers'] > 1 else ''}"
        print(f"    {where} x {c['threads']} thread{'s' if c['threads'] != 1 else ''}: "
              f"{c['predicted_seconds']:.3g} s predicted")
    if config["advice"]:
        print(config["advice"])
    return None


def _engine_many(pairs, **options):
    plain = _core.matmul_many_plain(pairs, **options)
    if plain is not None:
        results, rep = plain
        _remember(rep)
        return results
    typed = [_typed(a, b) for a, b in pairs]
    results, rep = _core.matmul_many([(t[0], t[1]) for t in typed], **options)
    _remember(rep)
    return [_as_numpy_result(r, t[3], t[4]) for r, t in zip(results, typed)]


def _in_process_many(pairs, copy=True):
    return _engine_many(pairs, in_process=True, copy=copy) if pairs else []
