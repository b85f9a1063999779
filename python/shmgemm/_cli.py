"""The ``shmgemm`` command of an installed package: the command-line program built with it."""
import os
import pathlib
import sys


def main():
    exe = pathlib.Path(__file__).resolve().parent / "libexec" / "shmgemm" / "shmgemm"
    if not os.access(exe, os.X_OK):
        sys.exit(f"shmgemm: {exe} is missing: this copy of the package was not built with its "
                 f"command line (pip install ./python builds both)")
    os.execv(exe, ["shmgemm", *sys.argv[1:]])
