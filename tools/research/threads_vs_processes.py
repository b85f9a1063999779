#!/usr/bin/env python3
"""Why one-thread workers and OpenBLAS's threads differ: the same square float64 product from
.npy files, in process with 2 OpenBLAS threads against 2 fork and 2 spawn workers of 1 thread
each, alternating, medians of --rounds. Besides the times, each run's resource use as the kernel
counts it for the whole process tree (getrusage of the waited-for shmgemm and its workers):
CPU seconds in user and kernel mode, minor page faults, and voluntary and involuntary context
switches. No hardware counters are needed (this machine's VM has none).

usage: threads_vs_processes.py [--sizes 2000,4000] [--rounds 7] [--shmgemm PATH] [--also PATH]

--also PATH: another build's shmgemm too (its fork and spawn variants), in the same alternation.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = {
    "in process, 2 threads": ["--in-process", "--threads", "2"],
    "fork, 2 workers x 1 thread": ["--workers", "2", "--threads", "1", "--launch", "fork"],
    "spawn, 2 workers x 1 thread": ["--workers", "2", "--threads", "1", "--launch", "spawn"],
}
FIELDS = ["wall", "job", "compute", "user", "sys", "minflt", "nvcsw", "nivcsw"]


def run(exe, args):
    """One run: its figures, from --json and from the rusage of the process tree."""
    t = time.perf_counter()
    proc = subprocess.Popen([exe, "multiply", *args, "--json"], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"threads_vs_processes: shmgemm multiply {' '.join(args)} failed")
    rep = json.loads(out)
    return {"wall": wall, "job": rep["seconds"], "compute": rep["compute_seconds"],
            "user": ru.ru_utime, "sys": ru.ru_stime, "minflt": ru.ru_minflt,
            "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,4000", help="comma-separated N of N x N")
    parser.add_argument("--rounds", type=int, default=7, help="runs of each variant (median)")
    parser.add_argument("--shmgemm", default=shutil.which("shmgemm") or "shmgemm",
                        help="the shmgemm executable (default: the one on PATH)")
    parser.add_argument("--also", help="another build's shmgemm: its workers in the same run")
    args = parser.parse_args()
    variants = {v: (args.shmgemm, a) for v, a in VARIANTS.items()}
    if args.also:
        for v in ("fork, 2 workers x 1 thread", "spawn, 2 workers x 1 thread"):
            variants[f"{v} ({args.also})"] = (args.also, VARIANTS[v])
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"medians of {args.rounds} alternating runs; CPU s, faults and context switches "
          "for the whole process tree")
    print("| N | variant | wall s | job s | compute s | user s | sys s | minor faults | "
          "voluntary cs | involuntary cs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="shmgemm-tvp-") as d:
        for n in sizes:
            a, b, c = (os.path.join(d, x) for x in ("A.npy", "B.npy", "C.npy"))
            for path, seed in ((a, 0), (b, 1)):
                subprocess.run([args.shmgemm, "gen", "--shape", f"{n}x{n}", "--seed", str(seed),
                                "-o", path], check=True, stdout=subprocess.DEVNULL)
            runs = {v: [] for v in variants}
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for v in order:
                    exe, options = variants[v]
                    runs[v].append(run(exe, [a, b, "-o", c, *options]))
            for v, rs in runs.items():
                med = {f: statistics.median(x[f] for x in rs) for f in FIELDS}
                print(f"| {n} | {v} | {med['wall']:.3f} | {med['job']:.3f} | "
                      f"{med['compute']:.3f} | {med['user']:.2f} | {med['sys']:.3f} | "
                      f"{med['minflt']:.0f} | {med['nvcsw']:.0f} | {med['nivcsw']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
