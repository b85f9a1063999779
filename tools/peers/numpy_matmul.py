#!/usr/bin/env python3
"""Peer for `shmgemm bench`: numpy's A @ B, one process (OpenBLAS threads inside).
The timed job is the engine's: read A and B, multiply, write C.
usage: numpy_matmul.py A.npy B.npy C.npy  -> prints {"seconds": ...}"""
import json
import sys
import time

import numpy as np

a_path, b_path, c_path = sys.argv[1:4]
t = time.perf_counter()
a = np.load(a_path)
b = np.load(b_path)
np.save(c_path, a @ b)
print(json.dumps({"seconds": time.perf_counter() - t}))
