"""pytest set-up for shmgemm's Python tests: the package from the build tree (PYTHONPATH, as
ctest sets it), and a check after each test that nothing of shmgemm is left in /dev/shm."""
import os

import pytest


def shm_names():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("shmgemm-"))


@pytest.fixture(autouse=True)
def nothing_left_in_dev_shm():
    before = shm_names()
    yield
    assert shm_names() == before
