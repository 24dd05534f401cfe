"""Which implementation serves an op call, and the one place where every backend's ops are
loaded and get their fake implementations and autograd formulas.

Backends (``DIVQAT_BACKEND``, read at call time; unset = the default rule below):

- ``compiled``: divqat's compiled extension, ``torch.ops.divqat.*`` — the C++ kernels
  (``divqat._C``) for CPU tensors, the CUDA kernels (``divqat._cuda``) for CUDA tensors.
  The default for both. ``cuda`` is accepted as its former name.
- ``triton``: the Triton kernels, ``torch.ops.divqat_triton.*`` (package
  ``divqat.triton_kernels``), for CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
- ``reference``: the pure-PyTorch reference (:mod:`divqat.reference`), any device.
  ``torch`` is accepted as its former name.

Where the compiled extension is missing, the reference serves and one warning says so.

Loading policy, the same for every op and backend: each op module declares its ops once with
:func:`register_op` (fake implementation, and an autograd formula unless the extension brings
its own C++ autograd kernel). ``import divqat.ops`` then loads every backend that can run now
(:func:`load_available`): the compiled extensions, and the Triton kernels where Triton is
installed and usable (a CUDA device, or ``TRITON_INTERPRET=1`` already set: the kernels must be
defined after it). A backend selected later (e.g. ``TRITON_INTERPRET`` set after the import) is
loaded on its first call, by the same :func:`load`, which ``torch.compile`` runs instead of tracing.
"""
import importlib
import importlib.util
import os
import warnings

import torch

BACKENDS = ("compiled", "triton", "reference")
ALIASES = {"cuda": "compiled", "torch": "reference"}  # the names of divqat <= 0.1

# backend -> (modules whose import defines its ops, torch.ops namespace)
_MODULES = {
    "compiled": (("divqat._C",), "divqat"),
    "triton": (("divqat.triton_kernels",), "divqat_triton"),
}

_loaded = {}  # backend or module name -> bool
_errors = {}  # module name -> why its import failed
_declared = []  # (op name, fake, backward, setup_context, compiled_autograd) of every op
_warned = set()


def register_op(name, fake, backward=None, setup_context=None, compiled_autograd=False):
    """Declare op ``name`` (e.g. ``"fake_quant"``) of every fused backend: its fake (meta)
    implementation and, when ``backward`` is given, its autograd formula
    (``torch.library.register_autograd``; not for the compiled backend when
    ``compiled_autograd``: the extension brings the same formula as a C++ autograd kernel).
    ``setup_context`` may be None; the formula finds its backend's op namespace in ``ctx.ops``.
    Applied to each backend's namespace when it is loaded, now or later."""
    declaration = (name, fake, backward, setup_context, compiled_autograd)
    _declared.append(declaration)
    for backend, ok in list(_loaded.items()):
        if ok and backend in _MODULES:
            _attach(backend, *declaration)


def _attach(backend, name, fake, backward, setup_context, compiled_autograd):
    namespace = _MODULES[backend][1]
    ops = getattr(torch.ops, namespace)
    if not hasattr(ops, name):
        return  # this backend does not define the op
    qualname = f"{namespace}::{name}"
    torch.library.register_fake(qualname)(fake)
    if backward is None or (compiled_autograd and backend == "compiled"):
        return

    def setup(ctx, inputs, output):
        ctx.ops = ops
        if setup_context is not None:
            setup_context(ctx, inputs, output)

    torch.library.register_autograd(qualname, backward, setup_context=setup)


def _import(module):
    """Import ``module`` once; False (with one warning) if it fails."""
    if module not in _loaded:
        try:
            importlib.import_module(module)
            _loaded[module] = True
        except ImportError as exc:
            _loaded[module] = False
            _errors[module] = f"{module}: {exc}"
            fallback = "the pure-PyTorch reference serves instead" if module.startswith("divqat._") else "not used"
            _warn_once(
                module,
                f"divqat: {module} is not available ({exc}); {fallback}. Build and install divqat "
                "with `pip install --no-build-isolation -e .`.",
            )
    return _loaded[module]


@torch.compiler.assume_constant_result
def load(backend):
    """Load ``backend`` ("compiled" or "triton") once and attach the declared fake and autograd
    registrations to its ops; True when its ops are available. ``torch.compile`` calls this
    while tracing rather than tracing an import."""
    if backend not in _loaded:
        ok = all(_import(m) for m in _MODULES[backend][0])
        _loaded[backend] = ok
        if ok:
            for declaration in _declared:
                _attach(backend, *declaration)
    return _loaded[backend]


def _why(backend):
    return "; ".join(_errors[m] for m in _MODULES[backend][0] if m in _errors)


def _load_cuda_extension():
    return _import("divqat._cuda")


def load_available():
    """Load every backend that can run now (see the module docstring)."""
    if torch.cuda.is_available():
        _load_cuda_extension()
    load("compiled")
    if importlib.util.find_spec("triton") is not None and (
        torch.cuda.is_available() or triton_usable(torch.device("cpu"))
    ):
        load("triton")


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def requested_backend():
    """The backend named by ``DIVQAT_BACKEND`` (former names mapped), or None when unset."""
    name = os.environ.get("DIVQAT_BACKEND", "").strip().lower()
    if not name:
        return None
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(
            f"DIVQAT_BACKEND must be one of {BACKENDS} (or the former names {tuple(ALIASES)}), got {name!r}"
        )
    return name


def triton_usable(device):
    """Triton runs on CUDA tensors, and on CPU tensors only under TRITON_INTERPRET=1."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def select(device):
    """Return 'compiled', 'triton' or 'reference' for tensors on ``device``."""
    want = requested_backend()
    if want == "reference":
        return "reference"
    if want == "triton":
        if not triton_usable(device):  # a setting of the user's: one line, not a traceback
            raise ValueError(
                f"DIVQAT_BACKEND=triton needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors (got {device.type} "
                "tensors): unset DIVQAT_BACKEND or use a CUDA device"
            )
        if not load("triton"):
            raise RuntimeError(f"DIVQAT_BACKEND=triton, but the Triton kernels did not load ({_why('triton')})")
        return "triton"
    if device.type == "cuda":
        return "compiled" if load("compiled") and _load_cuda_extension() else "reference"
    if device.type == "cpu":
        return "compiled" if load("compiled") else "reference"
    return "reference"


def ops(backend):
    """The ``torch.ops`` namespace of the fused ``backend`` ("compiled" or "triton"), loaded."""
    load(backend)
    return getattr(torch.ops, _MODULES[backend][1])
