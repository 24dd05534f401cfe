"""A fingerprint of the code that computes an experiment's cells.

``code_fingerprint()`` is the package version plus the first 12 hex digits of a SHA-256 over
every divqat Python source and every compiled-kernel source (``csrc/``, ``triton_kernels/``
beside the package in a source checkout): each file's path relative to its root and its
bytes, in sorted order. Any edit to any of them gives another fingerprint; the cell cache
(:mod:`divqat.experiments.cells`) puts it into every cell's key, so cells computed by other
code are not silently reused.
"""
import functools
import hashlib
from pathlib import Path

import divqat

PACKAGE = Path(divqat.__file__).resolve().parent
KERNEL_DIRS = ("csrc", "triton_kernels")
SOURCE_SUFFIXES = (".py", ".cpp", ".cu", ".cuh", ".h", ".hpp")


def source_files(package=PACKAGE):
    """(root, path) of every source the fingerprint covers, sorted by relative path."""
    roots = [package] + [package.parent / d for d in KERNEL_DIRS if (package.parent / d).is_dir()]
    files = [(root, p) for root in roots for p in root.rglob("*")
             if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts]
    return sorted(files, key=lambda rp: (rp[0].name, str(rp[1].relative_to(rp[0]))))


def source_hash(package=PACKAGE):
    """SHA-256 (first 12 hex digits) over the relative paths and bytes of ``source_files``."""
    digest = hashlib.sha256()
    for root, path in source_files(package):
        digest.update(f"{root.name}/{path.relative_to(root)}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def code_fingerprint():
    """``"<version>+<source hash>"`` of the running divqat (computed once per process)."""
    return f"{divqat.__version__}+{source_hash()}"
