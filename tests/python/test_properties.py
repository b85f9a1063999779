"""Property tests (hypothesis): random dtypes, shapes (1-D to 4-D, broadcasting, sizes 0 and
1), orders and strides (steps, negative strides, transposes) and values (small and full-range
integers, NaN, Inf, -0.0), each product against np.matmul: integers bit-identical, floats within
a tolerance scaled by sum |a||b|, NaN in the same places, errors where numpy errors."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import shmgemm  # noqa: E402

DTYPES = [np.dtype(t) for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                "uint64", "float32", "float64", "complex64", "complex128")]


@st.composite
def operand(draw, dtype, shape):
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        small = draw(st.booleans())
        elements = st.integers(0, 9) if small else st.integers(int(info.min), int(info.max))
    elif dtype.kind == "f":
        elements = st.floats(-4, 4, width=dtype.itemsize * 8) | st.sampled_from(
            [np.nan, np.inf, -np.inf, -0.0])
    else:
        part = st.floats(-4, 4, width=dtype.itemsize * 4) | st.sampled_from(
            [np.nan, np.inf, -np.inf, -0.0])
        elements = st.builds(complex, part, part)
    # Drawn larger, then sliced to `shape` with steps, reversed or transposed.
    step = draw(st.sampled_from([1, 1, 2, -1]))
    big = tuple(abs(step) * s + 1 for s in shape)
    x = draw(hnp.arrays(dtype, big, elements=elements))
    x = x[tuple(slice(None, None, step) for _ in shape)][tuple(slice(0, s) for s in shape)]
    if x.ndim >= 2 and draw(st.booleans()):
        x = np.swapaxes(np.swapaxes(x, -1, -2).copy(order="C"), -1, -2)  # Fortran-like core
    return x


@st.composite
def pair(draw):
    m, k, n = (draw(st.integers(0, 6)) for _ in range(3))
    batch = draw(st.lists(st.integers(0, 3), max_size=2))
    def side(core, vector):
        if vector:
            return core[-1:] if core is ka else core[:1]
        own = [d if draw(st.booleans()) else 1 for d in batch[len(batch) - draw(st.integers(0, len(batch))):]]
        return tuple(own) + core
    ka, kb = (m, k), (k, n)
    sa = side(ka, draw(st.integers(0, 9)) == 0)
    sb = side(kb, draw(st.integers(0, 9)) == 0)
    if draw(st.integers(0, 19)) == 0:  # a shape numpy refuses
        sb = (k + 1,) + sb[1:] if len(sb) == 1 else sb[:-2] + (k + 1, sb[-1])
    da, db = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    return draw(operand(da, sa)), draw(operand(db, sb))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(pair(), st.sampled_from([dict(workers=0), dict(workers=2), dict(workers=2, launch="spawn")]))
def test_against_numpy(ab, mode):
    a, b = ab
    with np.errstate(all="ignore"):
        try:
            expect = np.matmul(a, b)
        except ValueError:
            with pytest.raises(ValueError):
                shmgemm.matmul(a, b, **mode)
            return
        got = shmgemm.matmul(a, b, **mode)
    expect, got = np.asarray(expect), np.asarray(got)
    assert got.dtype == expect.dtype and got.shape == expect.shape
    if expect.dtype.kind in "iu":
        assert np.array_equal(got, expect)
        return
    wide = np.complex128 if expect.dtype.kind == "c" else np.float64
    with np.errstate(all="ignore"):
        scale = np.matmul(np.abs(a.astype(wide)), np.abs(b.astype(wide)))
    parts = (np.real, np.imag) if expect.dtype.kind == "c" else (lambda x: x,)
    finite = np.isfinite(scale)
    np.seterr(invalid="ignore")  # inf - inf where both are inf: compared by isnan first
    for part in parts:
        g, e = part(got), part(expect)
        if finite.all():
            assert np.array_equal(np.isnan(g), np.isnan(e))
        ok = np.isnan(e) | (np.abs(g - e) <= 8 * max(a.shape[-1], 1) *
                            np.finfo(expect.dtype).eps * np.real(scale) + 1e-30)
        assert ok[finite].all()


# --- out= that shares memory with the operands ------------------------------------------------

_POOL = []


def _pool():
    """One pool for the aliasing cases (closed when the interpreter exits)."""
    if not _POOL:
        _POOL.append(shmgemm.Pool(2))
    return _POOL[0]


@st.composite
def view_of(draw, base, rows, cols):
    """A rows x cols view of 2-D `base`: shifted, with steps of 1 or 2 (either sign), maybe the
    transpose of a view of the other orientation."""
    transpose = draw(st.booleans())
    r, c = (cols, rows) if transpose else (rows, cols)
    sr, sc = draw(st.sampled_from([1, 1, 2, -1])), draw(st.sampled_from([1, 2, -2]))
    span_r, span_c = abs(sr) * (r - 1) + 1, abs(sc) * (c - 1) + 1
    r0 = draw(st.integers(0, base.shape[0] - span_r))
    c0 = draw(st.integers(0, base.shape[1] - span_c))
    rows_slice = slice(r0, r0 + span_r, sr) if sr > 0 else slice(r0 + span_r - 1,
                                                                 r0 - 1 if r0 else None, sr)
    cols_slice = slice(c0, c0 + span_c, sc) if sc > 0 else slice(c0 + span_c - 1,
                                                                 c0 - 1 if c0 else None, sc)
    v = base[rows_slice, cols_slice]
    assert v.shape == (r, c)
    return v.T if transpose else v


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), st.sampled_from(DTYPES),
       st.sampled_from(["in process", "fork", "spawn", "pool"]))
def test_out_sharing_memory_with_the_operands_gets_numpys_answer(data, dtype, mode):
    m, k, n = (data.draw(st.integers(1, 7)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(-4, 5, (16, 16)) if dtype.kind in "iu" else rng.uniform(-4, 4, (16, 16))
    if dtype.kind == "u":
        values = np.abs(values)
    base = values.astype(dtype)
    if dtype.kind == "c":
        base += 1j * rng.uniform(-4, 4, base.shape).astype(dtype)
    if mode == "pool":
        base = _pool().asarray(base)  # in the arena: workers could write `out` in place
    a = data.draw(view_of(base, m, k))
    b = data.draw(view_of(base, k, n))
    out = data.draw(view_of(base, m, n))
    before = base.copy()
    with np.errstate(all="ignore"):
        expect = np.matmul(a.copy(), b.copy())  # what numpy's out= gives: the operands' values
        if mode == "pool":
            _pool().matmul(a, b, out=out)
        else:
            kw = {"in process": dict(workers=0), "fork": dict(workers=2, launch="fork"),
                  "spawn": dict(workers=2, launch="spawn")}[mode]
            shmgemm.matmul(a, b, out=out, **kw)
    # `out` holds the product; every other element of the base is as it was.
    untouched = np.ones(base.shape, bool)
    np.asarray(untouched)[np.unravel_index(
        (out.__array_interface__["data"][0] - base.__array_interface__["data"][0]) //
        base.itemsize + np.add.outer(np.arange(m) * (out.strides[0] // base.itemsize),
                                     np.arange(n) * (out.strides[1] // base.itemsize)).ravel(),
        base.shape)] = False
    assert np.array_equal(base[untouched], before[untouched])
    if dtype.kind in "iu":
        assert np.array_equal(out, expect)
    else:
        tol = 8 * k * np.finfo(dtype).eps * 16 * 4 * 4
        assert np.abs(out - expect).max() <= tol
