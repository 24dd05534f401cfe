"""``fake_quant``: fake quantization with straight-through and LSQ gradients.

    q = round_half_to_even(x * (1 / s)) + z,  y = (clamp(q, qmin, qmax) - z) * s

bit-identical with ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine``;
``dx = dy * [qmin <= q <= qmax]``; LSQ gradients for a scale (and floating zero point) that
require grad, as ``torch._fake_quantize_learnable_per_*_affine`` (Esser et al., ICLR 2020).
The numerics are documented in :mod:`divqat.reference.fake_quant`.

Backends (``divqat._backend.select``): the compiled kernels ``torch.ops.divqat.fake_quant*``
(C++ on CPU, CUDA on GPU), the Triton kernels ``torch.ops.divqat_triton.fake_quant*``, or the
pure-PyTorch reference. Each op triple (forward, straight-through backward, LSQ backward)
gets its fake implementation here and its autograd formula here (Triton) or in C++ (compiled,
csrc/fake_quant_autograd.cpp), so ``torch.library.opcheck`` and ``torch.compile(fullgraph=True)``
work with every backend. Scale and zero point stay tensors (no ``.item()``, no host sync).
"""
import importlib

import torch

from divqat import _backend
from divqat.reference.fake_quant import check_fake_quant_values, fake_quant_unchecked, validate_fake_quant_args

__all__ = ["fake_quant"]

_triton_ops = []


def _register_fakes(ops):
    """Attach fake implementations to one backend's op triple."""

    # The kernels return contiguous tensors whatever the strides of their inputs.
    @torch.library.register_fake(ops.fake_quant)
    def _(x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
        return x.new_empty(x.shape)

    @torch.library.register_fake(ops.fake_quant_backward)
    def _(grad, x, scale, zero_point, quant_min, quant_max, axis):
        return x.new_empty(x.shape)

    @torch.library.register_fake(ops.fake_quant_lsq_backward)
    def _(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
        zdt = zero_point.dtype if zero_point.is_floating_point() else torch.float32
        return x.new_empty(x.shape), scale.new_empty(scale.shape), zero_point.new_empty(zero_point.shape, dtype=zdt)


def _register_autograd(ops):
    """Attach the autograd formula to one backend's ``fake_quant`` (the compiled ops have the
    same formula as a C++ autograd kernel, csrc/fake_quant_autograd.cpp)."""

    def setup_context(ctx, inputs, output):
        x, scale, zero_point, quant_min, quant_max, axis, grad_factor = inputs
        ctx.save_for_backward(x, scale, zero_point)
        ctx.args = (quant_min, quant_max, axis, grad_factor)

    def backward(ctx, grad):
        x, scale, zero_point = ctx.saved_tensors
        quant_min, quant_max, axis, grad_factor = ctx.args
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            dx = ops.fake_quant_backward(grad, x, scale, zero_point, quant_min, quant_max, axis)
            return dx, None, None, None, None, None, None
        dx, dscale, dzero = ops.fake_quant_lsq_backward(
            grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor
        )
        return dx, dscale, dzero if zero_point.is_floating_point() else None, None, None, None, None

    torch.library.register_autograd(ops.fake_quant, backward, setup_context=setup_context)


class _Ops:
    """The three ops of one backend, looked up in a ``torch.ops`` namespace."""

    def __init__(self, namespace):
        self.fake_quant = namespace.fake_quant.default
        self.fake_quant_backward = namespace.fake_quant_backward.default
        self.fake_quant_lsq_backward = namespace.fake_quant_lsq_backward.default


def _register_compiled():
    if _backend.load_compiled_kernels() and hasattr(torch.ops.divqat, "fake_quant"):
        _register_fakes(_Ops(torch.ops.divqat))


def _triton():
    """The Triton op triple, imported (and registered) on first use: the kernels must be
    defined after TRITON_INTERPRET is set, and triton is an optional dependency."""
    if not _triton_ops:
        importlib.import_module("triton_kernels.fake_quant")
        _triton_ops.append(_Ops(torch.ops.divqat_triton))
        _register_fakes(_triton_ops[0])
        _register_autograd(_triton_ops[0])
    return _triton_ops[0]


@torch.compiler.assume_constant_result
def _triton_loaded():
    """Load the Triton ops; torch.compile runs this while tracing instead of tracing the import."""
    _triton()
    return True


_register_compiled()


def fake_quant(x, scale, zero_point, quant_min, quant_max, axis=None, grad_factor=1.0):
    """Fake-quantize ``x`` with scale ``scale`` and zero point ``zero_point`` onto the integer
    range [``quant_min``, ``quant_max``].

    Args:
        x: fp16, bf16, fp32 or fp64 tensor of any shape and strides.
        scale: positive floating tensor; one element (per tensor, ``axis=None``) or 1-D of
            length ``x.shape[axis]`` (per channel).
        zero_point: integer tensor in [quant_min, quant_max], or floating (rounded half to even
            and clamped, as LSQ learns it); same shape rule as ``scale``.
        quant_min, quant_max: the integer range, ``quant_min < quant_max``, |.| <= 2**24.
        axis: channel dimension for per-channel quantization, or None.
        grad_factor: multiplies the LSQ gradients of scale and zero point.

    Returns a tensor like ``x``. Differentiable in x (straight-through); when ``scale`` or a
    floating ``zero_point`` requires grad, in them too (LSQ).
    """
    axis = validate_fake_quant_args(x, scale, zero_point, quant_min, quant_max, axis, grad_factor)
    backend = _backend.select(x.device)
    # In eager mode the C++ CPU kernels check the values of scale and zero point themselves;
    # elsewhere, and while torch.compile traces (device asserts, no host read), they are checked here.
    if not (backend == "compiled" and x.device.type == "cpu" and not torch.compiler.is_compiling()):
        check_fake_quant_values(scale, zero_point, quant_min, quant_max)
    args = (x, scale, zero_point, quant_min, quant_max, axis, float(grad_factor))
    if backend == "compiled":
        return torch.ops.divqat.fake_quant(*args)
    if backend == "triton":
        _triton_loaded()
        return torch.ops.divqat_triton.fake_quant(*args)
    return fake_quant_unchecked(*args)
