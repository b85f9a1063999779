#!/usr/bin/env python3
"""Why OpenBLAS's threads lose to worker processes on a skinny product read from files (issue 16,
target 7): one np.dot of A (M x K) and B (K x N), float64, each in a fresh process, with 1 and 2
OpenBLAS threads, on operands

  mapped     np.load(mmap_mode='r') of .npy files in the page cache (as shmgemm maps them)
  touched    the same mapping with every page read first (no faults left in the product)
  memory-4k  copied into this process's memory, 4 KiB pages (numpy's hugepage advice off)
  memory-2m  copied into this process's memory, numpy's default (huge pages where THP allows)

with --c, a C program (compiled here with cc, linked with -lopenblas) that maps the files and
calls cblas_dgemm at once, free and with its caller and OpenBLAS's pool thread pinned to two
CPUs (openblas_setaffinity); and, with --shmgemm, that shmgemm's `multiply` of the same files in process (1 and 2 threads)
and with 2 fork workers of 1 thread (compute_seconds of --json: mapping the files and the
product). Variants alternate round by round;
medians of --rounds, milliseconds of the product alone.

usage: /usr/bin/python3 tools/research/skinny_threads.py [--shape 50x100000x60] [--rounds 12] [--c]
                                                [--shmgemm build/bin/shmgemm]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import sys, time, numpy as np
how, a_path, b_path = sys.argv[1:4]
if how == 'memory-4k':
    np.core.multiarray._set_madvise_hugepage(False)
a = np.load(a_path, mmap_mode='r')
b = np.load(b_path, mmap_mode='r')
if how == 'touched':
    for x in (a, b):
        flat = x.reshape(-1)
        float(flat[::512].sum())  # one element of every 4 KiB page
elif how.startswith('memory'):
    a, b = np.array(a), np.array(b)
t = time.perf_counter()
np.dot(a, b)
print((time.perf_counter() - t) * 1e3)
"""

C_PROGRAM = r"""
#define _GNU_SOURCE
#include <cblas.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int openblas_setaffinity(int, size_t, cpu_set_t*);
static const double* map(const char* path, long offset) {
  int fd = open(path, O_RDONLY);
  off_t size = lseek(fd, 0, SEEK_END);
  char* p = mmap(0, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  return (const double*)(p + offset);
}
int main(int argc, char** argv) {
  int m = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]);
  if (atoi(argv[7])) {  /* the caller on one CPU, the pool's first thread on another */
    cpu_set_t s;
    CPU_ZERO(&s); CPU_SET(0, &s); sched_setaffinity(0, sizeof s, &s);
    CPU_ZERO(&s); CPU_SET(1, &s); openblas_setaffinity(0, sizeof s, &s);
  }
  const double* a = map(argv[4], atol(argv[6]));
  const double* b = map(argv[5], atol(argv[6]));
  double* c = malloc(sizeof(double) * m * n);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%f\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6);
  return 0;
}
"""


def data_offset(path):
    with open(path, 'rb') as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--shape', default='50x100000x60', help='MxKxN (default 50x100000x60)')
    ap.add_argument('--rounds', type=int, default=12, help='runs of each variant (median)')
    ap.add_argument('--shmgemm', help='a shmgemm executable to run beside numpy')
    ap.add_argument('--c', action='store_true', help='also the C program (needs cc)')
    args = ap.parse_args()
    m, k, n = (int(x) for x in args.shape.split('x'))
    with tempfile.TemporaryDirectory(dir=os.environ.get('TMPDIR', '/var/tmp')) as d:
        a_path, b_path, c_path = (os.path.join(d, f) for f in ('A.npy', 'B.npy', 'C.npy'))
        rng = np.random.default_rng(1)
        np.save(a_path, rng.random((m, k)))
        np.save(b_path, rng.random((k, n)))
        variants = [(how, t) for how in ('mapped', 'touched', 'memory-4k', 'memory-2m')
                    for t in (1, 2)]
        if args.c:
            source, exe = os.path.join(d, 'probe.c'), os.path.join(d, 'probe')
            with open(source, 'w') as f:
                f.write(C_PROGRAM)
            subprocess.run(['cc', '-O2', source, '-o', exe, '-lopenblas'], check=True)
            offset = data_offset(a_path)
            assert offset == data_offset(b_path)
            variants += [('C, cblas_dgemm', 1), ('C, cblas_dgemm', 2), ('C, pinned', 2)]
        if args.shmgemm:
            variants += [('shmgemm in process', 1), ('shmgemm in process', 2),
                         ('shmgemm fork 2 workers', 1)]
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for how, t in variants:
                env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t))
                if how.startswith('C,'):
                    out = subprocess.run([exe, str(m), str(k), str(n), a_path, b_path, str(offset),
                                          '1' if how == 'C, pinned' else '0'], env=env,
                                         check=True, capture_output=True, text=True).stdout
                    times[(how, t)].append(float(out))
                elif how.startswith('shmgemm'):
                    extra = (['--in-process', '--threads', str(t)] if 'in process' in how else
                             ['--workers', '2', '--launch', 'fork', '--threads', '1'])
                    out = subprocess.run([args.shmgemm, 'multiply', a_path, b_path, '-o', c_path,
                                          '--json'] + extra, env=env, check=True,
                                         capture_output=True, text=True).stdout
                    times[(how, t)].append(json.loads(out)['compute_seconds'] * 1e3)
                else:
                    out = subprocess.run([sys.executable, '-c', CHILD, how, a_path, b_path],
                                         env=env, check=True, capture_output=True,
                                         text=True).stdout
                    times[(how, t)].append(float(out))
    print(f'{m}x{k}x{n} float64, medians of {args.rounds} (ms, the product alone)')
    for how in dict.fromkeys(h for h, _ in variants):
        row = {t: statistics.median(times[(how, t)]) for h, t in variants if h == how}
        text = '   '.join(f'{t} thread{"s" if t > 1 else ""} {v:7.2f}' for t, v in row.items())
        ratio = f'   1 thread / 2 threads {row[1] / row[2]:.2f}' if len(row) == 2 else ''
        print(f'  {how:24s} {text}{ratio}')


if __name__ == '__main__':
    main()
