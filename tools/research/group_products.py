#!/usr/bin/env python3
"""A broadcast A against a stack of B_i, one thread, in numpy: one OpenBLAS call per product,
the same B every time (the call's own rate, operands in cache), and G products grouped into one
call (B_i copied side by side, one GEMM, C's blocks copied back). Medians of 5, alternating.
It answers whether grouping products pays here (issue 16, target 3).

usage: OPENBLAS_NUM_THREADS=1 group_products.py [N]   (N products of 100x200 @ 200x200; 500)"""
import statistics
import sys
import time

import numpy as np

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
rng = np.random.default_rng(1)
A = rng.random((100, 200))
B = rng.random((N, 200, 200))
C = np.empty((N, 100, 200))
FLOPS = 2 * 100 * 200 * 200 * N


def loop():
    for i in range(N):
        np.matmul(A, B[i], out=C[i])


def same_b():
    for i in range(N):
        np.matmul(A, B[0], out=C[i])


def grouped(g_max):
    def run():
        bg_all = np.empty((200, g_max, 200))
        cg_all = np.empty((100, g_max * 200))
        for i in range(0, N, g_max):
            g = min(g_max, N - i)
            bg = bg_all[:, :g, :]
            np.copyto(bg, B[i:i + g].transpose(1, 0, 2))
            cg = cg_all[:, :g * 200]
            np.matmul(A, bg.reshape(200, g * 200), out=cg)
            np.copyto(C[i:i + g], cg.reshape(100, g, 200).transpose(1, 0, 2))
    return run


cases = [("one call per product", loop), ("the same B every call", same_b)]
cases += [(f"{g} products per call", grouped(g)) for g in (2, 4, 8, 16, 32)]
times = {name: [] for name, _ in cases}
for _ in range(5):
    for name, f in cases:
        t = time.perf_counter()
        f()
        times[name].append(time.perf_counter() - t)
        if name == "one call per product":
            reference = C.copy()
        elif name != "the same B every call":
            assert np.allclose(C, reference)
for name, _ in cases:
    t = statistics.median(times[name])
    print(f"{name:24s} {t * 1e3:8.1f} ms {FLOPS / t / 1e9:6.1f} GFLOP/s")
