"""Runs the blocks of README.md and docs/*.md that are marked as examples, each in a fresh
temporary folder, with the build's programs first on PATH and its Python package on PYTHONPATH.
Fails naming the file and line of the first block that fails.

A marker is a line just before the fence:
  <!-- example -->        a sh or python block, run every time; a cpp block is compiled into a
                          program (its #include lines first, the rest as the body of main),
                          linked with the build's libshmgemm, and run;
  <!-- example: mpi -->   run when the build has shmgemm-mpi, skipped (and counted) otherwise;
  <!-- example: slow -->  a measurement (minutes): run only with --slow (`make docs-examples`);
  <!-- example: setup --> a sh block of what a reader does once, in the repository's root, before
                          the file's other blocks (the README's PATH); not run by itself.
README.md's blocks run in a shell that has only what its setup block says: this process's PATH
without the build's programs, no PYTHONPATH, then the setup's lines, run in SOURCE_DIR (with
`$PWD/build` read as BUILD_DIR, for builds elsewhere). docs/*.md's blocks run with the build's
programs first on PATH and its Python package on PYTHONPATH.
Slow blocks run in a folder holding `tools` and `python` (links to the source's) and an empty
`docs`, so that the commands run as the docs show them, from the repository's root, without
touching the source tree.

usage: readme_examples.py SOURCE_DIR BUILD_DIR [CXX [CXXFLAGS]] [--slow] [--only=FILE]
                         [--cmake-consumer=PREFIX]
  --only=docs/x.md: the blocks of that file alone
  --cmake-consumer=PREFIX: instead, builds the cpp blocks of README.md and docs/library.md as
      one CMake project that finds the copy of shmgemm installed in PREFIX (find_package) and
      sets no C++ standard of its own, and runs each program
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

args = [a for a in sys.argv[1:] if not a.startswith("--")]
slow = "--slow" in sys.argv[1:]
only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
source, build = (os.path.abspath(p) for p in args[:2])
cxx = args[2] if len(args) > 2 else "c++"
cxxflags = shlex.split(args[3]) if len(args) > 3 else []
files = [os.path.join(source, "README.md")] + sorted(
    os.path.join(source, "docs", f) for f in os.listdir(os.path.join(source, "docs"))
    if f.endswith(".md"))
block = re.compile(r"<!-- example(?:: (mpi|slow|setup))? -->\n```(sh|python|cpp)\n(.*?)```", re.S)
env = dict(os.environ, PATH=os.path.join(build, "bin") + os.pathsep + os.environ["PATH"],
           PYTHONPATH=os.path.join(build, "python"))
# A build without the Python package (the sanitizer and fuzz builds) runs the other blocks only.
has_python = os.path.isdir(os.path.join(build, "python", "shmgemm"))
has_mpi = os.path.exists(os.path.join(build, "bin", "shmgemm-mpi"))


def setup_env(text):
    """The environment a reader of `text` has after its setup block: this process's own, less
    the build's programs and Python package, then the setup's lines run in the source folder."""
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bare["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                   if os.path.abspath(p) != os.path.join(build, "bin"))
    setups = [m.group(3) for m in block.finditer(text) if m.group(1) == "setup"]
    if not setups:
        return bare
    script = "\n".join(setups).replace("$PWD/build", build)
    r = subprocess.run(["sh", "-eu", "-c", script + '\nenv -0'], cwd=source, env=bare,
                       capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in r.stdout.split("\0") if "=" in item)


def cpp_program(code, folder):
    """Compiles a cpp block: #include lines at the top, every other line inside main."""
    lines = code.splitlines()
    includes = [l for l in lines if l.startswith("#include")]
    body = [l for l in lines if not l.startswith("#include")]
    path = os.path.join(folder, "example.cpp")
    with open(path, "w") as f:
        f.write("\n".join(includes + ["int main() {"] + body + ["}"]) + "\n")
    lib = os.path.join(build, "lib")
    subprocess.run([cxx, "-std=c++20", *cxxflags, "-I", os.path.join(source, "engine", "include"),
                    "-I", os.path.join(source, "common", "include"), path, "-o", os.path.join(folder, "example"), f"-L{lib}", "-lshmgemm",
                    f"-Wl,-rpath,{lib}"], check=True, capture_output=True, text=True)
    return [os.path.join(folder, "example")]


consumer = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--cmake-consumer=")]
if consumer:
    # The imported target names each include folder once.
    import glob
    for targets in glob.glob(os.path.join(consumer[0], "lib*", "**", "shmgemmTargets.cmake"),
                             recursive=True):
        for m in re.finditer(r'INTERFACE_INCLUDE_DIRECTORIES "([^"]*)"', open(targets).read()):
            folders = m.group(1).split(";")
            if len(folders) != len(set(folders)):
                print(f"{targets}: the include folders {folders} repeat", file=sys.stderr)
                sys.exit(1)
    programs = []
    with tempfile.TemporaryDirectory(prefix="shmgemm-consumer-") as d:
        for path in (os.path.join(source, "README.md"), os.path.join(source, "docs", "library.md")):
            text = open(path).read()
            for m in block.finditer(text):
                if m.group(2) != "cpp":
                    continue
                lines = m.group(3).splitlines()
                includes = [l for l in lines if l.startswith("#include")]
                body = [l for l in lines if not l.startswith("#include")]
                name = f"example{len(programs)}"
                line = text.count("\n", 0, m.start()) + 2
                programs.append((name, f"{os.path.relpath(path, source)}:{line}"))
                with open(os.path.join(d, name + ".cpp"), "w") as f:
                    f.write("\n".join(includes + ["int main() {"] + body + ["}"]) + "\n")
        with open(os.path.join(d, "CMakeLists.txt"), "w") as f:
            f.write("cmake_minimum_required(VERSION 3.25)\nproject(consumer LANGUAGES CXX)\n"
                    "find_package(shmgemm CONFIG REQUIRED)\n" +
                    "".join(f"add_executable({n} {n}.cpp)\n"
                            f"target_link_libraries({n} PRIVATE shmgemm::shmgemm)\n"
                            for n, _ in programs))
        for step in (["cmake", "-S", d, "-B", os.path.join(d, "build"),
                      f"-DCMAKE_PREFIX_PATH={consumer[0]}"],
                     ["cmake", "--build", os.path.join(d, "build"), "-j"]):
            r = subprocess.run(step, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"the consumer project failed: {' '.join(step)}\n{r.stdout}{r.stderr}",
                      file=sys.stderr)
                sys.exit(1)
        for name, where in programs:
            r = subprocess.run([os.path.join(d, "build", name)], capture_output=True, text=True,
                               timeout=600)
            if r.returncode != 0:
                print(f"{where}: the example, built by a consumer project, failed (exit "
                      f"{r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
                sys.exit(1)
    # docs/library.md's complete project, its files as written there, built and run.
    with tempfile.TemporaryDirectory(prefix="shmgemm-project-") as d:
        text = open(os.path.join(source, "docs", "library.md")).read()
        files = re.findall(r"<!-- project: (\S+) -->\n```\w+\n(.*?)```", text, re.S)
        if sorted(name for name, _ in files) != ["CMakeLists.txt", "main.cpp"]:
            print("docs/library.md: the project's CMakeLists.txt and main.cpp are not both "
                  "there", file=sys.stderr)
            sys.exit(1)
        for name, content in files:
            with open(os.path.join(d, name), "w") as f:
                f.write(content)
        for step in (["cmake", "-S", d, "-B", os.path.join(d, "build"),
                      f"-DCMAKE_PREFIX_PATH={consumer[0]}"],
                     ["cmake", "--build", os.path.join(d, "build")],
                     [os.path.join(d, "build", "products")]):
            r = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                print(f"docs/library.md's project failed: {' '.join(step)}\n{r.stdout}{r.stderr}",
                      file=sys.stderr)
                sys.exit(1)
        if not r.stdout.startswith("c[0] = 200 on 2 workers"):
            print(f"docs/library.md's project printed {r.stdout!r}", file=sys.stderr)
            sys.exit(1)
    print(f"{len(programs)} C++ examples built by a consumer project that sets no C++ "
          f"standard, and ran; docs/library.md's project built as written, and ran")
    sys.exit(0)

ran, skipped = 0, []
for path in files:
    if only and os.path.relpath(path, source) not in only:
        continue
    text = open(path).read()
    file_env = setup_env(text) if os.path.basename(path) == "README.md" else env
    for m in block.finditer(text):
        line = text.count("\n", 0, m.start()) + 2
        tag, kind, code = m.groups()
        if tag == "setup":
            continue
        where = f"{os.path.relpath(path, source)}:{line}"
        reason = ("no Python package in this build" if kind == "python" and not has_python else
                  "no shmgemm-mpi in this build" if tag == "mpi" and not has_mpi else
                  "a measurement: run with --slow (make docs-examples)" if tag == "slow" and
                  not slow else None)
        if reason:
            skipped.append(f"{where}: {reason}")
            continue
        with tempfile.TemporaryDirectory(prefix="shmgemm-readme-") as d:
            if tag == "slow":
                for folder in ("tools", "python"):
                    os.symlink(os.path.join(source, folder), os.path.join(d, folder))
                os.mkdir(os.path.join(d, "docs"))
            try:
                argv = (["sh", "-eu", "-c", code] if kind == "sh" else
                        ["/usr/bin/python3", "-c", code] if kind == "python" else
                        cpp_program(code, d))
                run_env = file_env
                if tag == "mpi":
                    # Under AddressSanitizer (make sanitize): Open MPI 4.1 leaks some 3,300
                    # allocations at MPI_Finalize, outside shmgemm's code (see test_mpi.cpp).
                    run_env = dict(run_env, ASAN_OPTIONS=(run_env.get("ASAN_OPTIONS", "") +
                                                      ":detect_leaks=0").lstrip(":"))
                r = subprocess.run(argv, cwd=d, env=run_env, capture_output=True, text=True,
                                   timeout=3600 if tag == "slow" else 600)
            except subprocess.CalledProcessError as e:
                r = e
            if tag == "slow":
                print(f"{where}:\n{code}{r.stdout}{r.stderr}", flush=True)
        if r.returncode != 0:
            print(f"{where}: the {kind} example failed (exit {r.returncode}):\n"
                  f"{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        ran += 1
if ran == 0:
    print("no examples found", file=sys.stderr)
    sys.exit(1)
print(f"{ran} examples ran" + (f"; {len(skipped)} skipped:" if skipped else ""))
for s in skipped:
    print(f"  {s}")
