"""What the root-only script tests share: messages, skips, and memory cgroups."""
import contextlib
import os
import subprocess
import sys
import time

SKIP = 77


def say(*words):
    print(*words, flush=True)


def sh(*argv, check=True, **kw):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


class MemoryCgroup:
    """A memory cgroup limited to `limit` bytes (v1 where mounted, else v2), or none (dir None)."""

    def __init__(self, name, limit):
        self.dir = None
        for root, file in (("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
                           ("/sys/fs/cgroup", "memory.max"),
                           ("/sys/fs/cgroup/unified", "memory.max")):
            if not os.path.exists(f"{root}/cgroup.procs"):
                continue
            try:
                os.mkdir(f"{root}/{name}")
            except OSError:
                continue
            try:
                with open(f"{root}/{name}/{file}", "w") as f:
                    f.write(str(limit))
                with open(f"{root}/{name}/{file}") as f:
                    if int(f.read()) == limit:
                        self.dir, self.v1 = f"{root}/{name}", file.endswith("in_bytes")
                        return
            except (OSError, ValueError):
                pass
            os.rmdir(f"{root}/{name}")

    def peak(self):
        name = "memory.max_usage_in_bytes" if self.v1 else "memory.peak"
        with contextlib.suppress(OSError, ValueError), open(f"{self.dir}/{name}") as f:
            return int(f.read())
        return None

    def remove(self):
        if self.dir is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)

    def failures(self):
        """How often usage reached the limit (v1 failcnt, v2 memory.events max)."""
        if self.v1:
            with open(f"{self.dir}/memory.failcnt") as f:
                return int(f.read())
        with open(f"{self.dir}/memory.events") as f:
            return int(dict(line.split() for line in f if line.strip()).get("max", 0))


def skip(why):
    """Exit 77 (skipped), or 1 where every test must run (SHMGEMM_REQUIRE_ALL=1, as in CI)."""
    required = os.environ.get("SHMGEMM_REQUIRE_ALL") == "1"
    say(f"{'cannot run where every test must' if required else 'skipped'}: {why}")
    sys.exit(1 if required else SKIP)
