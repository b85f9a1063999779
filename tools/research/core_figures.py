#!/usr/bin/env python3
"""Side-by-side figures for one product: the shmgemm engine against single-process OpenBLAS.

Generates A and B (SIZE x SIZE, float64) with `shmgemm gen`, then runs each variant ROUNDS
times, alternating between variants so all see the same machine, and reports per variant the
median wall seconds of the whole `shmgemm multiply` process, GFLOP/s (2*SIZE^3 / median), the
ratio to one-process OpenBLAS with all cores, and the peak of the summed PSS of the process tree
in one more run of each variant (sampled every INTERVAL ms from /proc/PID/smaps_rollup by this
script, which is not part of the tree; the timed runs are not sampled, since reading smaps_rollup
walks the process's page tables and slowed a 4000^2 product by a third). Standard library only.

usage: core_figures.py [--size 4000] [--rounds 5] [--shmgemm build/bin/shmgemm] [--csv FILE]
"""
import argparse
import shutil
import os
import statistics
import subprocess
import sys
import tempfile
import time


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(root):
    seen, todo = [], [root]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd, interval=None):
    """Runs cmd; returns (wall seconds, peak summed PSS in MiB of its process tree, sampled every
    `interval` ms; 0 without an interval)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    if interval is None:
        p.wait()
    while p.poll() is None:
        peak = max(peak, sum(pss_kib(x) for x in tree(p.pid)))
        time.sleep(interval / 1000)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    if p.returncode != 0:
        sys.exit(f"core_figures: {' '.join(cmd)} failed: {err.strip()}")
    return wall, peak / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=float, default=5, help="PSS sampling interval, ms")
    # The program beside this script's repository (build/bin/shmgemm), else on PATH.
    repo_build = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin",
                              "shmgemm")
    default = repo_build if os.access(repo_build, os.X_OK) else shutil.which("shmgemm")
    ap.add_argument("--shmgemm", default=default,
                    help="the shmgemm program (default: this repository's build/bin/shmgemm, "
                         "else shmgemm on PATH)")
    ap.add_argument("--csv", help="also write the table as CSV")
    args = ap.parse_args()
    if not args.shmgemm or not os.access(args.shmgemm, os.X_OK):
        ap.error(f"--shmgemm {args.shmgemm or ''}: no such program; build it (make) or name it")
    cores = len(os.sched_getaffinity(0))

    variants = [
        ("engine, 1 worker x 1 thread", ["-w", "1", "-t", "1"]),
        ("engine, 2 workers x 1 thread", ["-w", "2", "-t", "1"]),
        ("engine, 1 worker x 2 threads", ["-w", "1", "-t", "2"]),
        ("OpenBLAS in one process, 1 thread", ["--in-process", "-t", "1"]),
        ("OpenBLAS in one process, 2 threads", ["--in-process", "-t", "2"]),
    ]
    with tempfile.TemporaryDirectory(prefix="shmgemm-figures-") as d:
        a, b, c = (os.path.join(d, n) for n in ("A.npy", "B.npy", "C.npy"))
        for path, seed in ((a, 1), (b, 2)):
            subprocess.run([args.shmgemm, "gen", "--shape", f"{args.size}x{args.size}",
                            "--seed", str(seed), "-o", path], check=True)
        walls = {name: [] for name, _ in variants}
        peaks = {name: [] for name, _ in variants}
        for _ in range(args.rounds):
            for name, extra in variants:
                walls[name].append(measure([args.shmgemm, "multiply", a, b, "-o", c, *extra])[0])
        for name, extra in variants:
            peaks[name].append(
                measure([args.shmgemm, "multiply", a, b, "-o", c, *extra], args.interval)[1])

    flops = 2.0 * args.size ** 3
    floor = 3 * args.size * args.size * 8 / 2 ** 20
    ref = statistics.median(walls["OpenBLAS in one process, 2 threads"])
    rows = []
    for name, _ in variants:
        med = statistics.median(walls[name])
        rows.append((name, med, flops / med / 1e9, ref / med, statistics.median(peaks[name])))
    print(f"{args.size}x{args.size} float64, {cores} cores, median of {args.rounds} alternating "
          f"runs; A+B+C = {floor:.0f} MiB")
    print()
    print("| variant | wall s | GFLOP/s | speed vs OpenBLAS 2 threads | peak PSS MiB |")
    print("|---|---|---|---|---|")
    for name, med, gf, ratio, peak in rows:
        print(f"| {name} | {med:.3f} | {gf:.1f} | {ratio:.2f} | {peak:.0f} |")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("variant,wall_s,gflops,speed_vs_openblas,peak_pss_mib\n")
            for r in rows:
                f.write(f"{r[0]},{r[1]:.4f},{r[2]:.2f},{r[3]:.3f},{r[4]:.1f}\n")


if __name__ == "__main__":
    main()
