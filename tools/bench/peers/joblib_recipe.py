#!/usr/bin/env python3
"""Peer for `shmgemm bench`: the joblib row-block recipe of the seed documents (parallel_dot:
joblib Parallel over blocks of rows of A, the whole B sent to every worker, np.vstack), with
np.array_split so that any row count works. The timed job: read A and B, multiply, write C.
usage: joblib_recipe.py A.npy B.npy C.npy N_JOBS  -> prints {"seconds": ...}"""
import json
import sys
import time

import numpy as np
from joblib import Parallel, delayed


def parallel_dot(a, b, n_jobs):
    parallelizer = Parallel(n_jobs=n_jobs)
    tasks = (delayed(np.dot)(block, b) for block in np.array_split(a, n_jobs))
    return np.vstack(parallelizer(tasks))


a_path, b_path, c_path, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
a = np.load(a_path)
b = np.load(b_path)
np.save(c_path, parallel_dot(a, b, min(jobs, a.shape[0])))
print(json.dumps({"seconds": time.perf_counter() - t}))
