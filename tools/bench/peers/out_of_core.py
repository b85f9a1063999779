#!/usr/bin/env python3
"""Peers for `shmgemm bench --out-of-core`: A @ B from .npy files larger than memory, as a numpy
user would write it, the operands opened with np.load(mmap_mode="r") and C written into a .npy
file opened with np.lib.format.open_memmap.
- dask: dask.array over the memory-mapped arrays, its automatic chunks, da.store into C.
- numpy-slabs: C summed over slabs of 8192 along k, each slab's product with numpy.
usage: out_of_core.py dask|numpy-slabs A.npy B.npy C.npy  -> prints {"seconds": ...}"""
import json
import sys
import time

import numpy as np

recipe, a_path, b_path, c_path = sys.argv[1:5]
t = time.perf_counter()
a = np.load(a_path, mmap_mode="r")
b = np.load(b_path, mmap_mode="r")
c = np.lib.format.open_memmap(c_path, mode="w+", dtype=np.result_type(a, b),
                              shape=(a.shape[0], b.shape[1]))
if recipe == "dask":
    import dask.array as da

    da.store(da.from_array(a, chunks="auto") @ da.from_array(b, chunks="auto"), c, lock=False)
else:
    depth = 8192
    for k0 in range(0, a.shape[1], depth):
        c += a[:, k0:k0 + depth] @ b[k0:k0 + depth]
c.flush()
print(json.dumps({"seconds": time.perf_counter() - t}))
