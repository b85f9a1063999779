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
