#!/usr/bin/python3
"""shmgemm-mpi across three "nodes" made on this machine.

Each node is a process holding network, mount and UTS namespaces of its own: its own hostname
(n1, n2, n3), its own /dev/shm and temporary folder (tmpfs; TMPDIR for the processes mpirun
starts there: /tmp itself stays the machine's, where the build may be), and an interface eth0
at 10.77.0.1N joined by
a veth pair to a bridge in this test's own network namespace (10.77.0.1, where mpirun runs).
mpirun starts its daemons on the nodes through plm_rsh_agent, a script that enters a node's
namespaces (the stand-in for ssh); the ranks talk over TCP between nodes (btl_tcp_if_include
the nodes' network) and through shared memory within one. The operands and the output are in a
folder every node sees at the same path (the build folder's file system: the shared file
system).

Usage: mpi_nodes.py SHMGEMM_CLI WORK_DIR (shmgemm-mpi beside SHMGEMM_CLI), or
mpi_nodes.py SHMGEMM_CLI WORK_DIR --run COMMAND... to run COMMAND on the nodes instead of the
cases, "{hostfile}" in it replaced by a hostfile of two slots a node (bench --mpi --hostfile). Needs root
(namespaces), ip, nsenter, unshare and mpirun; elsewhere it skips (exit 77) and says why.
Everything it makes lives in namespaces that end with it: a killed test leaves no interface,
mount or process behind.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from script_support import MemoryCgroup, say, sh, skip

NET = "10.77.0"
NODES = ("n1", "n2", "n3")
NODE_MEMORY = 128 << 20  # each node's memory cgroup, for the case whose B is larger
INSIDE = "SHMGEMM_NODES_INSIDE"


class Node:
    """A process in namespaces of its own: the node lives as long as it does."""

    def __init__(self, index, work, memory_limit):
        self.name = f"n{index}"
        self.tmp = os.path.join(work, f"{self.name}-tmp")
        os.mkdir(self.tmp)
        # The processes mpirun starts here join it when SHMGEMM_NODE_CGROUPS is set.
        self.cgroup = MemoryCgroup(f"shmgemm-node-{self.name}-{os.getpid()}", memory_limit)
        self.address = f"{NET}.1{index}"
        self.veth = f"shmgemm-v{index}"
        script = (f"hostname {self.name} && "
                  f"mount -t tmpfs -o mode=1777 {self.name}-shm /dev/shm && "
                  f"mount -t tmpfs -o mode=1777 {self.name}-tmp {self.tmp} && "
                  "echo ready && exec sleep 100000")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--uts", "--propagation", "private", "sh", "-c",
             script], stdout=subprocess.PIPE, text=True)
        if self.holder.stdout.readline().strip() != "ready":
            raise RuntimeError(f"node {self.name} did not start")
        self.pid = self.holder.pid
        self.netns = os.readlink(f"/proc/{self.pid}/ns/net")
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns",
           str(self.pid))
        sh("ip", "link", "set", self.veth, "master", "shmgemm-br", "up")
        self.enter("sh", "-c", f"ip link set lo up && ip addr add {self.address}/24 dev eth0 && "
                               "ip link set eth0 up")

    def enter(self, *argv, check=True):
        return sh("nsenter", "-t", str(self.pid), "-n", "-m", "-u", "--", *argv, check=check)

    def processes(self):
        """The pids running in this node (its network namespace), the holder aside."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/net") == self.netns:
                    found.append(int(entry))
        return found

    def ranks(self):
        names = {}
        for pid in self.processes():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/comm") as f:
                    names[pid] = f.read().strip()
        return [pid for pid, name in names.items() if name.startswith("shmgemm-mpi")]

    def leftovers(self):
        """What the job left in this node's /dev/shm and temporary folder."""
        out = self.enter("ls", "-A", "/dev/shm", self.tmp).stdout.split()
        return [x for x in out if not x.endswith(":")]

    def stop(self):
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()
        self.cgroup.remove()


class Cluster:
    def __init__(self, work, cli):
        self.work, self.cli = work, cli
        sh("mount", "--make-rprivate", "/")
        sh("hostname", "head")
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "shmgemm-br", "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", "shmgemm-br")
        sh("ip", "link", "set", "shmgemm-br", "up")
        hosts = os.path.join(work, "hosts")
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1 localhost\n{NET}.1 head\n")
            f.writelines(f"{NET}.1{i} n{i}\n" for i in range(1, len(NODES) + 1))
        sh("mount", "--bind", hosts, "/etc/hosts")
        self.nodes = []
        for i in range(1, len(NODES) + 1):
            self.nodes.append(Node(i, work, NODE_MEMORY))
        self.agent = os.path.join(work, "enter-node")
        with open(self.agent, "w") as f:
            f.write("#!/bin/sh\n# mpirun's rsh agent: runs a command in a node's namespaces\n"
                    "host=$1; shift\ncase $host in\n")
            f.writelines(f"  {n.name}) pid={n.pid} tmp={n.tmp} "
                         f"procs={n.cgroup.dir}/cgroup.procs ;;\n" for n in self.nodes)
            f.write('  *) echo "enter-node: no node $host" >&2; exit 255 ;;\nesac\n'
                    'if [ -n "$SHMGEMM_NODE_CGROUPS" ]; then echo $$ > "$procs" || exit 255; fi\n'
                    'exec nsenter -t "$pid" -n -m -u -- env TMPDIR="$tmp" sh -c "$*"\n')
        os.chmod(self.agent, 0o755)
        # Open MPI's settings for these nodes, as a user puts them in the environment.
        self.settings = {"OMPI_MCA_plm_rsh_agent": self.agent,
                         "OMPI_MCA_plm_rsh_no_tree_spawn": "1", "OMPI_MCA_btl": "self,vader,tcp",
                         "OMPI_MCA_btl_tcp_if_include": f"{NET}.0/24",
                         "OMPI_MCA_oob_tcp_if_include": f"{NET}.0/24"}

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def multiply(self, slots, args, background=False, env=None):
        """`shmgemm multiply --launch mpi` on `slots` ({node: ranks}), from this namespace, with
        Open MPI's settings for these nodes in its environment, as a user sets them."""
        hostfile = os.path.join(self.work, "hostfile")
        with open(hostfile, "w") as f:
            f.writelines(f"{n} slots={s}\n" for n, s in slots.items() if s > 0)
        argv = [self.cli, "multiply", *args, "--launch", "mpi", "--hostfile", hostfile,
                "--workers", str(sum(slots.values()))]
        env = {**os.environ, **self.settings, **(env or {})}
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)

    def mpirun(self, slots, args, limited=False):
        """`mpirun shmgemm-mpi multiply args` on `slots`, Open MPI's settings as multiply()'s."""
        hostfile = os.path.join(self.work, "hostfile")
        with open(hostfile, "w") as f:
            f.writelines(f"{n} slots={s}\n" for n, s in slots.items() if s > 0)
        program = os.path.join(os.path.dirname(self.cli), "shmgemm-mpi")
        argv = ["mpirun", "-q", "--allow-run-as-root", "--hostfile", hostfile,
                "-n", str(sum(slots.values())), program, "multiply", *args]
        env = {**os.environ, **self.settings}
        if limited:
            env["SHMGEMM_NODE_CGROUPS"] = "1"
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)

    def stop(self):
        for n in self.nodes:
            n.stop()


class Failures:
    def __init__(self):
        self.count = 0

    def check(self, ok, what):
        if not ok:
            self.count += 1
            say(f"FAIL: {what}")
        return ok


def write(path, array):
    np.save(path, array)
    return path


def cases(cluster, cli, work, fail):
    rng = np.random.default_rng(29)
    even = {"n1": 2, "n2": 2, "n3": 2}

    def nothing_left(what):
        for n in cluster.nodes:
            deadline = time.monotonic() + 10
            while n.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
            fail.check(not n.processes(), f"{what}: processes left on {n.name}: "
                                          f"{n.processes()}")
            fail.check(not n.leftovers(), f"{what}: left in {n.name}'s /dev/shm or TMPDIR: "
                                          f"{n.leftovers()}")

    def product(name, a, b, slots=even, exact=False, bits=True):
        ap, bp = write(f"{work}/{name}-A.npy", a), write(f"{work}/{name}-B.npy", b)
        out, one = f"{work}/{name}-C.npy", f"{work}/{name}-C1.npy"
        r = cluster.multiply(slots, [ap, bp, "-o", out, "--threads", "1"])
        ranks = sum(slots.values())
        if not fail.check(r.returncode == 0, f"{name} on {ranks} ranks: exit {r.returncode}: "
                                             f"{r.stderr.strip()}"):
            return
        got = np.load(out)
        want = a @ b
        if exact:
            fail.check(got.dtype == want.dtype and np.array_equal(got, want),
                       f"{name}: not numpy's exact {want.dtype} product")
        else:
            # OpenBLAS's bits depend on its thread count: one process with one thread, as
            # each rank has here.
            sh(cli, "multiply", ap, bp, "-o", one, "--in-process", "--threads", "1")
            fail.check(not bits or np.load(one).tobytes() == got.tobytes(),
                       f"{name}: not bit-identical to one process's product")
            tol = 1e-4 if want.dtype in (np.float32, np.complex64) else 1e-10
            fail.check(got.dtype == want.dtype and got.shape == want.shape and
                       np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()),
                       f"{name}: not a @ b")
        say(f"ok: {name}, {ranks} ranks on {len([s for s in slots.values() if s])} nodes")
        nothing_left(name)

    product("float64", rng.standard_normal((1000, 700)), rng.standard_normal((700, 900)))
    product("uneven rows", rng.standard_normal((997, 301)), rng.standard_normal((301, 403)))
    product("a node with one rank", rng.standard_normal((401, 200)),
            rng.standard_normal((200, 77)), slots={"n1": 2, "n2": 1, "n3": 2})
    # (A block of one row is a matrix-vector product to OpenBLAS: its own summation order.)
    product("fewer rows than ranks", rng.standard_normal((3, 50)), rng.standard_normal((50, 9)),
            bits=False)
    full = np.iinfo(np.int64)
    product("int64 full range", rng.integers(full.min, full.max, (301, 200), dtype=np.int64,
                                             endpoint=True),
            rng.integers(full.min, full.max, (200, 150), dtype=np.int64, endpoint=True),
            exact=True)
    ufull = np.iinfo(np.uint64)
    product("uint64 full range", rng.integers(0, ufull.max, (250, 120), dtype=np.uint64,
                                              endpoint=True),
            rng.integers(0, ufull.max, (120, 99), dtype=np.uint64, endpoint=True), exact=True)

    product("stacks, B broadcast, int32 @ float32",
            rng.integers(-1000, 1000, (3, 201, 100), dtype=np.int32),
            rng.standard_normal((100, 80)).astype(np.float32))
    product("stacks of int64", rng.integers(full.min, full.max, (2, 50, 40), dtype=np.int64,
                                            endpoint=True),
            rng.integers(full.min, full.max, (2, 40, 30), dtype=np.int64, endpoint=True),
            exact=True)
    product("a vector @ a matrix, complex64", rng.standard_normal(300).astype(np.complex64),
            rng.standard_normal((300, 40)).astype(np.complex64), bits=False)

    # Grids of row and column panels: B need not fit in a node.
    def grid(name, a, b, args, want_grid, exact=False):
        # (A column panel of B is a narrower product to OpenBLAS: its own blocking, numpy's
        # result to rounding.)
        ap, bp = write(f"{work}/{name}-A.npy", a), write(f"{work}/{name}-B.npy", b)
        out = f"{work}/{name}-C.npy"
        r = cluster.mpirun(even, [ap, bp, "-o", out, "--threads", "1", "--json", *args])
        if not fail.check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr.strip()}"):
            return
        report = json.loads(r.stdout)
        fail.check(report["mpi"]["grid"] == want_grid and report["mpi"]["b_from"] == "panel",
                   f"{name}: grid {report['mpi']['grid']}, B from {report['mpi']['b_from']}")
        got, want = np.load(out), a @ b
        if exact:
            fail.check(got.dtype == want.dtype and np.array_equal(got, want),
                       f"{name}: not numpy's exact {want.dtype} product")
        else:
            fail.check(np.abs(got - want).max() <= 1e-12 * a.shape[1] * np.abs(want).max(),
                       f"{name}: not a @ b")
        say(f"ok: {name}, grid {report['mpi']['grid']}, {report['mpi']['memory_per_rank']} bytes "
            "a rank")
        nothing_left(name)

    grid("3x2 grid, float64", rng.standard_normal((500, 300)), rng.standard_normal((300, 401)),
         ["--grid", "3x2"], [3, 2])
    grid("2x3 grid, int64 full range",
         rng.integers(full.min, full.max, (120, 90), dtype=np.int64, endpoint=True),
         rng.integers(full.min, full.max, (90, 100), dtype=np.int64, endpoint=True),
         ["--grid", "2x3"], [2, 3], exact=True)
    # B of 8 MB against 3 MB a rank: rows only would hold 4.2 MB a rank (B once per node), the
    # 1 x 6 grid 1.9 MB and reads fewer bytes than 2 x 3.
    grid("a grid chosen by --memory-per-rank", rng.standard_normal((60, 1000)),
         rng.standard_normal((1000, 1000)), ["--memory-per-rank", "3M"], [1, 6])
    r = cluster.mpirun(even, [f"{work}/float64-A.npy", f"{work}/float64-B.npy", "-o",
                              f"{work}/never.npy", "--memory-per-rank", "100K"])
    # (mpirun's own warning when a daemon it starts has already changed its process group:
    # Open MPI's, not the job's.)
    lines = [line for line in r.stderr.strip().splitlines()
             if "plm:rsh: Warning: setpgid" not in line]
    fail.check(r.returncode != 0 and len(lines) == 1 and
               "--memory-per-rank 100 KiB: too little" in r.stderr and
               not os.path.exists(f"{work}/never.npy"),
               f"--memory-per-rank too small: exit {r.returncode}: {r.stderr!r}")

    # B 1.5 times a node's memory: each node's processes in a memory cgroup of 128 MiB, B of
    # 192 MB. Rows only would hold all of B on every node; the grid holds a panel per rank.
    if all(n.cgroup.dir for n in cluster.nodes):
        a, b = rng.standard_normal((200, 8000)), rng.standard_normal((8000, 3000))
        ap, bp = write(f"{work}/big-A.npy", a), write(f"{work}/big-B.npy", b)
        out = f"{work}/big-C.npy"
        r = cluster.mpirun(even, [ap, bp, "-o", out, "--json"], limited=True)
        if fail.check(r.returncode == 0, f"B larger than a node: exit {r.returncode}: "
                                         f"{r.stderr.strip()}"):
            report = json.loads(r.stdout)
            got = np.load(out)
            fail.check(report["mpi"]["grid"][1] > 1, f"B larger than a node: grid "
                                                     f"{report['mpi']['grid']}")
            fail.check(np.abs(got - a @ b).max() <= 1e-9 * np.abs(a @ b).max(),
                       "B larger than a node: not a @ b")
            peaks = [n.cgroup.peak() for n in cluster.nodes]
            say(f"ok: B of {b.nbytes >> 20} MiB, nodes of {NODE_MEMORY >> 20} MiB: grid "
                f"{report['mpi']['grid']}, {report['mpi']['memory_per_rank'] >> 20} MiB a rank "
                f"planned, node peaks {[p >> 20 if p else None for p in peaks]} MiB")
        os.remove(bp)
        nothing_left("B larger than a node")
    elif os.environ.get("SHMGEMM_REQUIRE_ALL") == "1":
        fail.check(False, "no memory cgroup could be made for the nodes")
    else:
        say("skipped: B larger than a node (no memory cgroup could be made for the nodes)")

    # Faults, on a product long enough to be hit while it runs.
    big = 2500
    ap = write(f"{work}/fault-A.npy", rng.standard_normal((big, big)))
    bp = write(f"{work}/fault-B.npy", rng.standard_normal((big, big)))
    out = f"{work}/fault-C.npy"
    for fault in ("ranks killed", "link down"):
        with open(out, "w") as f:
            f.write("the output as it was\n")
        victim = cluster.node("n2")
        start = time.monotonic()
        # With the link down, Open MPI's daemon on n2 is told nothing: it ends when its TCP
        # keepalives find mpirun gone, unless its connection holds unsent data (then TCP
        # retransmits for a quarter of an hour). Keepalives off here: the cut-off ranks' own
        # end (3 x 10 s after rank 0's last heartbeat) must end the daemon too.
        p = cluster.multiply(even, [ap, bp, "-o", out, "--timeout", "30"], background=True,
                             env={"OMPI_MCA_oob_tcp_keepalive_time": "0"}
                             if fault == "link down" else None)
        # Once the temporary output exists, the ranks are past MPI's start-up and exchange
        # heartbeats. (A node lost during MPI_Init is Open MPI's to find: its keepalives.)
        def temporary():
            return [f for f in os.listdir(work) if f.startswith(".fault-C.npy")
                    and f.endswith(".tmp")]
        deadline = time.monotonic() + 60
        while not temporary() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        if fault == "ranks killed":
            for pid in victim.ranks():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            sh("ip", "link", "set", victim.veth, "down")
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            fail.check(False, f"{fault}: mpirun still running after 60 s")
        took = time.monotonic() - start
        lines = [x for x in err.splitlines() if x.strip()]
        fail.check(p.returncode == 1, f"{fault}: exit {p.returncode}")
        fail.check(len(lines) == 1 and "n2" in err and
                   any(w in err for w in ("rank 2", "rank 3", "ranks 2, 3")),
                   f"{fault}: not one line naming node n2 and its rank: {err!r}")
        with open(out) as f:
            fail.check(f.read() == "the output as it was\n", f"{fault}: the output changed")
        left = [f for f in os.listdir(work) if f.startswith(".fault-C.npy")]
        fail.check(not left, f"{fault}: left beside the output: {left}")
        if fault == "link down":
            deadline = time.monotonic() + 50
            while victim.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
            fail.check(not victim.processes(), f"link down: still running on n2 while cut off: "
                                               f"{victim.processes()}")
            say(f"link down: nothing of the job on n2 {time.monotonic() - start:.1f} s after "
                "the start")
            sh("ip", "link", "set", victim.veth, "up")
        for n in cluster.nodes:  # what the job left, ended so that the next case starts clean
            deadline = time.monotonic() + 30
            while n.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
        nothing_left(fault)
        for n in cluster.nodes:
            for pid in n.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            n.enter("sh", "-c", f"rm -rf /dev/shm/* {n.tmp}/* {n.tmp}/.[!.]*", check=False)
        say(f"{fault}: exit {p.returncode} after {took:.1f} s: {err.strip()[:300]}")


def run_on_nodes(cluster, work, command):
    """COMMAND with {hostfile} (two slots on each node) and Open MPI's settings for the nodes in
    its environment: `shmgemm bench --mpi --hostfile {hostfile} --ranks 6` on the three nodes."""
    hostfile = os.path.join(work, "bench-hostfile")
    with open(hostfile, "w") as f:
        f.writelines(f"{n.name} slots=2\n" for n in cluster.nodes)
    argv = [arg.replace("{hostfile}", hostfile) for arg in command]
    return subprocess.run(argv, env={**os.environ, **cluster.settings}).returncode


def main():
    command = sys.argv[4:] if len(sys.argv) > 4 and sys.argv[3] == "--run" else None
    if len(sys.argv) != 3 and command is None:
        sys.exit(__doc__)
    cli, work_root = sys.argv[1:3]
    if os.environ.get(INSIDE) is None:
        if os.geteuid() != 0:
            skip("needs root to make the nodes' namespaces")
        for tool in ("ip", "nsenter", "unshare", "mpirun"):
            if shutil.which(tool) is None:
                skip(f"no {tool} on PATH")
        if subprocess.run(["unshare", "-n", "-m", "-u", "true"]).returncode != 0:
            skip("this machine does not let root make network namespaces")
        # Namespaces of its own (processes, network, mounts, hostname): what it makes ends
        # with it, whatever happens.
        r = subprocess.run(["unshare", "-p", "-f", "-n", "-m", "-u", "--mount-proc",
                            "--kill-child", sys.executable, *sys.argv],
                           env={**os.environ, INSIDE: "1"})
        sys.exit(r.returncode)
    work = tempfile.mkdtemp(prefix="mpi-nodes-", dir=work_root)
    cluster = None
    fail = Failures()
    try:
        cluster = Cluster(work, cli)
        if command is not None:
            code = run_on_nodes(cluster, work, command)
            cluster.stop()
            cluster = None
            sys.exit(code)
        cases(cluster, cli, work, fail)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    say("all passed" if fail.count == 0 else f"{fail.count} failed")
    sys.exit(1 if fail.count else 0)


if __name__ == "__main__":
    main()
