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
