"""Builds the shmgemm package with the project's CMake: the extension shmgemm._core, the
library it uses (libshmgemm, in shmgemm/lib/), the spawned workers' executable
(shmgemm/libexec/shmgemm/shmgemm-worker, where libshmgemm looks for it beside itself) and the
command line (shmgemm/libexec/shmgemm/shmgemm, which the package's `shmgemm` command runs).

    /usr/bin/python3 -m venv --system-site-packages venv
    venv/bin/pip install --no-build-isolation ./python

SHMGEMM_CMAKE_BUILD=DIR takes the programs from an existing CMake build folder of this source
tree (its targets brought up to date there) instead of a build of its own.
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def require():
    """One line naming what this Python lacks for the build, before anything is built."""
    missing = [m for m in ("numpy", "setuptools", "wheel") if importlib.util.find_spec(m) is None]
    if shutil.which("cmake") is None:
        missing.append("the cmake program")
    if missing:
        sys.exit(f"shmgemm: {sys.executable} lacks {', '.join(missing)} for this build: use "
                 f"Debian's Python in a virtual environment that sees its packages "
                 f"(/usr/bin/python3 -m venv --system-site-packages venv; "
                 f"venv/bin/pip install --no-build-isolation ./python), with the packages of "
                 f"tools/install-deps.sh")


require()

from setuptools import Extension, setup  # noqa: E402  (after the check that it is there)
from setuptools.command.build_ext import build_ext  # noqa: E402


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        jobs = str(os.cpu_count() or 2)
        build = os.environ.get("SHMGEMM_CMAKE_BUILD")
        if build:
            build = pathlib.Path(build).resolve()
        else:
            build = pathlib.Path(self.build_temp).resolve() / "cmake"
            subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build),
                            "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=OFF",
                            "-DSHMGEMM_MPI=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
                           check=True)
        subprocess.run(["cmake", "--build", str(build), "-j", jobs, "--target", "shmgemm_python",
                        "shmgemm-worker", "shmgemm-cli"], check=True)
        package = pathlib.Path(self.get_ext_fullpath(ext.name)).resolve().parent
        (package / "lib").mkdir(parents=True, exist_ok=True)
        (package / "libexec" / "shmgemm").mkdir(parents=True, exist_ok=True)
        built = build / "python" / "shmgemm"
        shutil.copy2(next(built.glob("_core*.so")), self.get_ext_fullpath(ext.name))
        for lib in (build / "lib").glob("libshmgemm.so*"):
            if lib.is_symlink():
                continue
            shutil.copy2(lib, package / "lib" / "libshmgemm.so.0")
        for program in ("shmgemm-worker", "shmgemm"):
            shutil.copy2(build / "bin" / program, package / "libexec" / "shmgemm" / program)


setup(
    packages=["shmgemm"],
    package_data={"shmgemm": ["py.typed", "*.pyi"]},
    ext_modules=[Extension("shmgemm._core", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
