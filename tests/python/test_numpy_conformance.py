"""numpy's own matmul tests, run against shmgemm.matmul: Debian's python3-numpy ships them
(numpy/core/tests/test_multiarray.py), and MatmulCommon and TestMatmul take the function under
test as a class attribute. What cannot apply is skipped here by name, with the reason."""
import pytest

np = pytest.importorskip("numpy")
tm = pytest.importorskip("numpy.core.tests.test_multiarray")

import shmgemm  # noqa: E402

# numpy's `types` is "?bhilqBHILQefdgFDGO". shmgemm multiplies bool (as numpy: OR of ANDs)
# and the twelve dtypes; float16 ("e"), long double ("g", "G") and object ("O") it refuses
# with a TypeError, by design (no BLAS for them). The value tests skip types[0].
TYPES = "?bhilqBHILQfdFD"

NOT_APPLICABLE = {
    "test_matmul_object": "object arrays: shmgemm multiplies numbers in BLAS, not objects",
    "test_matmul_object_type_scalar": "object arrays",
}


class TestMatmulShmgemm(tm.TestMatmul):
    matmul = staticmethod(shmgemm.matmul)
    types = TYPES


# numpy's own tests of what shmgemm refuses by design: each must fail, with the TypeError.
for name, reason in NOT_APPLICABLE.items():
    setattr(TestMatmulShmgemm, name,
            pytest.mark.xfail(strict=True, raises=TypeError, reason=reason)(
                getattr(tm.TestMatmul, name)))


class TestMatmulShmgemmWorkers(tm.MatmulCommon):
    """The common tests again with two forked workers for every product."""
    matmul = staticmethod(lambda a, b, out=None: shmgemm.matmul(a, b, out, workers=2))
    types = TYPES


class _NumpyWithShmgemmMatmul:
    """numpy, but with shmgemm.matmul as np.matmul: for numpy's tests that call np.matmul."""

    matmul = staticmethod(shmgemm.matmul)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("test", [
    lambda: tm.test_matmul_axes(),
    lambda: tm.TestMethods().test_matmul_out(),
    lambda: tm.TestMethods().test_dot_matmul_out(),
], ids=["test_matmul_axes", "TestMethods.test_matmul_out", "TestMethods.test_dot_matmul_out"])
def test_numpys_module_level_matmul_tests(test, monkeypatch):
    monkeypatch.setattr(tm, "np", _NumpyWithShmgemmMatmul())
    test()


class _Sub(np.ndarray):
    pass


_a, _b = np.arange(6.).reshape(2, 3), np.arange(12.).reshape(3, 4)
_v = np.arange(3.)
KEYWORD_CASES = [
    ((np.asfortranarray(_a), np.asfortranarray(_b)), dict(order="K")),
    ((np.asfortranarray(_a), np.asfortranarray(_b)), dict(order="A")),
    ((_a, _b), dict(order="F")), ((_a, _b), dict(order="f")), ((_a, _b), dict(order="X")),
    ((_a, _b), dict(order=3)),
    ((_a, _b), dict(dtype=np.float32)), ((_a, _b), dict(dtype=np.int64)),
    ((_a * 1.7, _b), dict(dtype=np.int64, casting="unsafe")),
    ((_a.astype(np.int32), _b), dict(casting="no")), ((_a, _b), dict(casting="safe")),
    ((_a, _b), dict(casting="nope")),
    ((_a, _b), dict(out=np.empty((2, 4), np.float32), casting="no")),
    ((_a, _b), dict(out=np.empty((2, 4), np.float32), casting="unsafe")),
    ((_a, _b), dict(out=(np.empty((2, 4)),))), ((_a, _b), dict(out=(np.empty((2, 4)),) * 2)),
    ((_a, _b), dict(out=(None,))), ((_a, _b), dict(out=[np.empty((2, 4))])),
    ((_a, _b), dict(subok=False)), ((_a.view(_Sub), _b), {}),
    ((_a.view(_Sub), _b), dict(subok=False)), ((_a.view(_Sub), _b), dict(out=np.empty((2, 4)))),
    ((_a, _b), dict(axis=0)), ((_a, _b), dict(axes=(0, 1))), ((_a, _b), dict(axes=[(0, 1)])),
    ((_a, _b), dict(axes=[(0, 1), (0, 1), (0,)])), ((_a, _b), dict(axes=[(0, 5), (0, 1), (0, 1)])),
    ((_a, _b), dict(axes=[0, (0, 1), (0, 1)])), ((_a, _b), dict(axes=[(1, 0), (1, 0), (1, 0)])),
    ((np.arange(24.).reshape(2, 3, 4), np.arange(20.).reshape(4, 5)),
     dict(axes=[(2, 1), (0, 1), (0, 2)])),
    ((_v, _v), dict(axes=[0, 0])), ((_v, _v), dict(axes=[0, 0, ()])),
    ((_a > 1, _b > 1), dict(dtype=bool)), ((_v, _v), dict(dtype=np.float32)),
    ((_a, _b), dict(where=True)), ((_a, _b), dict(dtype=np.float16)),
]


def _outcome(f, args, keywords):
    try:
        r = f(*args, **keywords)
    except Exception as e:  # noqa: BLE001  (the class and words are what is compared)
        return "raises", isinstance(e, TypeError), isinstance(e, ValueError), str(e)
    flags = (r.flags.c_contiguous, r.flags.f_contiguous) if isinstance(r, np.ndarray) else None
    return "returns", type(r).__name__, np.asarray(r).dtype, flags, np.asarray(r).tolist()


@pytest.mark.parametrize("args, keywords", KEYWORD_CASES, ids=[str(k) for _, k in KEYWORD_CASES])
def test_np_matmul_keywords_as_numpy_takes_them(args, keywords):
    """np.matmul's keywords give numpy's result (type, dtype, order, values) or numpy's error
    (class and words); float16 is shmgemm's one refusal of what numpy computes."""
    got = _outcome(shmgemm.matmul, args, keywords)
    if keywords.get("dtype") is np.float16:
        assert got[:2] == ("raises", True) and "float16" in got[3]
        return
    assert got == _outcome(np.matmul, args, keywords)
