"""Which implementation serves an op call: the compiled C++/CUDA kernels, Triton, or the
pure-PyTorch reference.

``DIVQAT_BACKEND`` (read at call time) is one of ``cuda`` (default for CUDA tensors),
``triton`` (CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1``), ``torch`` (the
reference). CPU tensors use the C++ kernels unless ``torch`` or ``triton`` is asked for.
When a compiled extension is missing, the reference serves and one warning says so.
"""
import importlib
import os
import warnings

import torch

BACKENDS = ("cuda", "triton", "torch")

_loaded = {}
_warned = set()


def _load_extension(name):
    """Import ``divqat.<name>`` once; return True when its kernels are registered."""
    if name not in _loaded:
        try:
            importlib.import_module(f"divqat.{name}")
            _loaded[name] = True
        except ImportError as exc:
            _loaded[name] = False
            _warn_once(
                name,
                f"divqat: the compiled extension divqat.{name} is not available ({exc}); "
                "the pure-PyTorch reference serves instead. Build it with "
                "`pip install --no-build-isolation -e .`.",
            )
    return _loaded[name]


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def requested_backend():
    """The backend named by ``DIVQAT_BACKEND``, or None when unset."""
    name = os.environ.get("DIVQAT_BACKEND", "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"DIVQAT_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def triton_usable(device):
    """Triton runs on CUDA tensors, and on CPU tensors only under TRITON_INTERPRET=1."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def select(device):
    """Return 'compiled', 'triton' or 'torch' for tensors on ``device``."""
    want = requested_backend()
    if want == "torch":
        return "torch"
    if want == "triton":
        if not triton_usable(device):
            raise RuntimeError(
                "DIVQAT_BACKEND=triton needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors"
            )
        return "triton"
    if device.type == "cuda":
        return "compiled" if _load_extension("_cuda") else "torch"
    if device.type == "cpu":
        return "compiled" if _load_extension("_C") else "torch"
    return "torch"


def load_compiled_kernels():
    """Import the compiled extensions now — called when an op module is imported, so that no
    first import happens inside a ``torch.compile`` region. Loads ``divqat._cuda`` too where
    CUDA is available; returns True when the CPU kernels (and so the op schemas) are present."""
    if torch.cuda.is_available():
        _load_extension("_cuda")
    return _load_extension("_C")

