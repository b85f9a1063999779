#!/usr/bin/env python3
"""Peer for `shmgemm bench`: numpy's np.matmul(A, B), one process (OpenBLAS threads inside).
The timed job is the engine's: read A and B, multiply, write C; the product alone is reported
too, as matmul_seconds.
usage: numpy_matmul.py A.npy B.npy C.npy  -> prints {"seconds": ..., "matmul_seconds": ...}"""
import json
import sys
import time

import numpy as np

a_path, b_path, c_path = sys.argv[1:4]
t = time.perf_counter()
a = np.load(a_path)
b = np.load(b_path)
with np.errstate(all="ignore"):
    t_matmul = time.perf_counter()
    c = np.matmul(a, b)
    t_matmul = time.perf_counter() - t_matmul
np.save(c_path, c)
print(json.dumps({"seconds": time.perf_counter() - t, "matmul_seconds": t_matmul}))
