"""Builds the shmgemm package with the project's CMake: the extension shmgemm._core, the
library it uses (libshmgemm, in shmgemm/lib/) and the spawned workers' executable
(shmgemm/libexec/shmgemm/shmgemm-worker, where libshmgemm looks for it beside itself).

    python3 -m venv --system-site-packages venv && . venv/bin/activate
    pip install --no-build-isolation ./python
"""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DBUILD_TESTING=OFF", "-DSHMGEMM_MPI=OFF",
                        f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", str(build), "-j", jobs, "--target", "shmgemm_python",
                        "shmgemm-worker"], check=True)
        package = pathlib.Path(self.get_ext_fullpath(ext.name)).resolve().parent
        (package / "lib").mkdir(parents=True, exist_ok=True)
        (package / "libexec" / "shmgemm").mkdir(parents=True, exist_ok=True)
        built = build / "python" / "shmgemm"
        shutil.copy2(next(built.glob("_core*.so")), self.get_ext_fullpath(ext.name))
        for lib in (build / "lib").glob("libshmgemm.so*"):
            if lib.is_symlink():
                continue
            shutil.copy2(lib, package / "lib" / "libshmgemm.so.0")
        shutil.copy2(build / "bin" / "shmgemm-worker",
                     package / "libexec" / "shmgemm" / "shmgemm-worker")


setup(
    packages=["shmgemm"],
    package_data={"shmgemm": ["py.typed", "*.pyi"]},
    ext_modules=[Extension("shmgemm._core", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
