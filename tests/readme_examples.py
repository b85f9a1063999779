"""Runs the shell and Python blocks of README.md and docs/*.md that are marked as examples (a
`<!-- example -->` line just before the fence), each in a fresh temporary folder, with the build's
shmgemm first on PATH and its Python package on PYTHONPATH. Fails naming the file and line of the
first block that fails.

usage: readme_examples.py SOURCE_DIR BUILD_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

source, build = (os.path.abspath(p) for p in sys.argv[1:3])
files = [os.path.join(source, "README.md")] + sorted(
    os.path.join(source, "docs", f) for f in os.listdir(os.path.join(source, "docs"))
    if f.endswith(".md"))
block = re.compile(r"<!-- example -->\n```(sh|python)\n(.*?)```", re.S)
env = dict(os.environ, PATH=os.path.join(build, "bin") + os.pathsep + os.environ["PATH"],
           PYTHONPATH=os.path.join(build, "python"))
# A build without the Python package (the sanitizer and fuzz builds) runs the shell blocks only.
has_python = os.path.isdir(os.path.join(build, "python", "shmgemm"))
ran = skipped = 0
for path in files:
    text = open(path).read()
    for m in block.finditer(text):
        line = text.count("\n", 0, m.start()) + 2
        kind, code = m.groups()
        if kind == "python" and not has_python:
            skipped += 1
            continue
        with tempfile.TemporaryDirectory(prefix="shmgemm-readme-") as d:
            argv = ["sh", "-eu", "-c", code] if kind == "sh" else ["/usr/bin/python3", "-c", code]
            r = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            print(f"{os.path.relpath(path, source)}:{line}: the {kind} example failed "
                  f"(exit {r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        ran += 1
if ran == 0:
    print("no examples found", file=sys.stderr)
    sys.exit(1)
print(f"{ran} examples ran" + (f"; {skipped} Python examples skipped (no Python package in "
                                f"this build)" if skipped else ""))
