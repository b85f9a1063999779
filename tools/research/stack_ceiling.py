#!/usr/bin/env python3
"""How fast can the stack of issue 16's target 3 go with one OpenBLAS call per product?

The stack: N products of a broadcast A (100x200) with B_i (200x200), float64. In numpy, one
OpenBLAS thread per process, operands in memory and C's pages already touched (so no page
faults are timed), one np.matmul call per product:

- 1 process, all N products (B_i streamed from memory);
- 1 process, the same B every call (in cache: the call's own rate);
- P processes at once (forked once, started together each round), N / P products each: the
  ceiling of shmgemm's plan (P one-thread workers, one call per product), without its files.

With --shmgemm PATH it also runs `shmgemm multiply` on the same stack from .npy files, with P
workers, and reports its product time (--json's compute_seconds) and the process tree's CPU
seconds in user and kernel mode. Every variant runs once a round, in turn; medians of --rounds.

usage: stack_ceiling.py [--products 2000] [--processes 2] [--rounds 5] [--shmgemm PATH]
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy loads OpenBLAS
import numpy as np  # noqa: E402

M, K, N_COLS = 100, 200, 200


def operands(count, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((M, K)), rng.random((count, K, N_COLS)), np.zeros((count, M, N_COLS))


def loop(a, b, c, same_b=False):
    for i in range(len(b)):
        np.matmul(a, b[0] if same_b else b[i], out=c[i])


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


class Processes:
    """P one-thread processes, each holding count / P products; run() times one round of all
    of them at once: the slowest one's time."""

    def __init__(self, count, processes):
        self.pipes, self.procs = [], []
        for _ in range(processes):
            parent, child = mp.Pipe()
            p = mp.get_context("fork").Process(target=self.child, args=(child, count // processes))
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)
        for pipe in self.pipes:
            pipe.recv()  # ready: operands made, C's pages touched, OpenBLAS warm

    @staticmethod
    def child(pipe, share):
        a, b, c = operands(share)
        loop(a, b, c)
        pipe.send(0.0)
        while pipe.recv():
            pipe.send(timed(lambda: loop(a, b, c)))

    def run(self):
        for pipe in self.pipes:
            pipe.send(True)
        return max(pipe.recv() for pipe in self.pipes)

    def close(self):
        for pipe in self.pipes:
            pipe.send(False)
        for p in self.procs:
            p.join()


def shmgemm_run(exe, paths, processes):
    """One shmgemm multiply: its compute seconds, and the process tree's user and kernel CPU."""
    pa, pb, pc = paths
    proc = subprocess.Popen([exe, "multiply", pa, pb, "-o", pc, "--json", "--workers",
                             str(processes), "--threads", "1"], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("stack_ceiling: shmgemm multiply failed")
    return json.loads(out)["compute_seconds"], ru.ru_utime, ru.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shmgemm", help="a shmgemm program to run on the same stack")
    args = ap.parse_args()
    count, procs, rounds = args.products, args.processes, args.rounds
    flops = 2.0 * M * K * N_COLS * count

    a, b, c = operands(count)
    loop(a, b, c)
    group = Processes(count, procs)
    names = ["1 process, B_i streamed", "1 process, the same B (in cache)",
             f"{procs} processes at once, {count // procs} products each"]
    runs = [lambda: timed(lambda: loop(a, b, c)), lambda: timed(lambda: loop(a, b, c, True)),
            group.run]
    times = {name: [] for name in names}
    cpu = []
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, f) for f in ("A.npy", "B.npy", "C.npy")]
        if args.shmgemm:
            np.save(paths[0], a)
            np.save(paths[1], b)
            names.append(f"shmgemm multiply, {procs} workers, from files")
            times[names[-1]] = []

            def shmgemm_product():
                cpu.append(shmgemm_run(args.shmgemm, paths, procs))
                return cpu[-1][0]

            runs.append(shmgemm_product)
        for _ in range(rounds):
            for name, run in zip(names, runs):
                times[name].append(run())
    group.close()
    print(f"{count} x ({M}x{K} @ {K}x{N_COLS}) float64, one OpenBLAS call per product, "
          f"medians of {rounds}")
    for name in names:
        s = statistics.median(times[name])
        extra = ""
        if name.startswith("shmgemm"):
            extra = (f"  (CPU: user {statistics.median(x[1] for x in cpu):.2f} s, "
                     f"kernel {statistics.median(x[2] for x in cpu):.2f} s)")
        print(f"  {name:<44} {s:8.4f} s  {flops / s / 1e9:6.1f} GFLOP/s{extra}")


if __name__ == "__main__":
    main()
