#!/usr/bin/env python3
"""Peer for `shmgemm bench`: the multiprocessing recipe of the seed documents (a fork Pool whose
workers inherit A and B copy-on-write and write their rows into a shared RawArray), with the
slices fixed (ceiling step, no empty or inverted slices) and np.dot per block of rows.
The timed job: read A and B, multiply, write C.
usage: mp_recipe.py A.npy B.npy C.npy NPROC  -> prints {"seconds": ...}"""
import ctypes
import json
import multiprocessing as mp
import sys
import time

import numpy as np


def to_array(raw, shape, dtype):
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def init(a, b, raw, shape, dtype):
    global ga, gb, gout
    ga, gb = a, b
    gout = to_array(raw, shape, dtype)


def dot_slice(rows):
    np.dot(ga[rows], gb, out=gout[rows])
    return rows


def slices(n, parts):
    step = -(-n // parts)
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def dot(a, b, processes):
    if a.shape[1] != b.shape[0]:
        raise ValueError("wrong shape")
    ctype = ctypes.c_double if a.dtype == np.float64 else ctypes.c_float
    raw = mp.RawArray(ctype, a.shape[0] * b.shape[1])
    shape = (a.shape[0], b.shape[1])
    with mp.get_context("fork").Pool(processes, initializer=init,
                                     initargs=(a, b, raw, shape, a.dtype)) as pool:
        for _ in pool.imap_unordered(dot_slice, slices(a.shape[0], processes)):
            pass
    return to_array(raw, shape, a.dtype)


if __name__ == "__main__":
    a_path, b_path, c_path, procs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    t = time.perf_counter()
    a = np.load(a_path)
    b = np.load(b_path)
    np.save(c_path, dot(a, b, min(procs, a.shape[0])))
    print(json.dumps({"seconds": time.perf_counter() - t}))
