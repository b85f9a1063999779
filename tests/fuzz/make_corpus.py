#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (committed in tests/fuzz/corpus/). Standard library
only; rerun it after changing the formats."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def npy(dict_text, major=1, pad=True):
    h = dict_text
    pre = 10 if major == 1 else 12
    if pad:
        h += " " * ((64 - (pre + len(h) + 1) % 64) % 64)
    h += "\n"
    n = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + n + h.encode("latin1")


def write(folder, name, data):
    os.makedirs(os.path.join(here, "corpus", folder), exist_ok=True)
    with open(os.path.join(here, "corpus", folder, name), "wb") as f:
        f.write(data)


d = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"
write("npy_header", "v1_c", npy(d) + b"\0" * 96)
write("npy_header", "v2_f", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (5, 2), }", 2))
write("npy_header", "v3", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }", 3))
write("npy_header", "scalar", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }"))
write("npy_header", "nd", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5), }"))
write("npy_header", "int64", npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 3), }"))
write("npy_header", "bigendian", npy("{'descr': '>f8', 'fortran_order': False, 'shape': (3, 3), }"))
write("npy_header", "object", npy("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }"))
write("npy_header", "structured",
      npy("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }"))
write("npy_header", "py2_long", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 4L)}"))
write("npy_header", "overflow",
      npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"))
write("npy_header", "truncated", npy(d)[:40])
write("npy_header", "nopad", npy(d, pad=False))

# Job descriptor patches: (u32 offset, u64 value) records.
write("job_descriptor", "valid", b"")
write("job_descriptor", "bad_magic", struct.pack("<IQ", 0, 0))
write("job_descriptor", "bad_version", struct.pack("<IQ", 8, 99))
write("job_descriptor", "truncated", b"\xff\x10\x00\x00")
write("job_descriptor", "big_ld", struct.pack("<IQ", 48 + 16, 2**62))
write("job_descriptor", "workers", struct.pack("<IQ", 16, 0xFFFFFFFF00000003))
