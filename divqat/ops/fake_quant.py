"""``fake_quant``: fake quantization with straight-through and LSQ gradients.

    q = round_half_to_even(x * (1 / s)) + z,  y = (clamp(q, qmin, qmax) - z) * s

bit-identical with ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine`` for
fp16/bf16/fp32 x and an integer zero point (where and why they differ otherwise: floating zero
point, float64 x, NaN x, see :mod:`divqat.reference.fake_quant`);
``dx = dy * [qmin <= q <= qmax]``; LSQ gradients for a scale (and floating zero point) that
require grad, as ``torch._fake_quantize_learnable_per_*_affine`` (Esser et al., ICLR 2020).
The numerics are documented in :mod:`divqat.reference.fake_quant`.

Backends (:mod:`divqat._backend`): "compiled" ``torch.ops.divqat.fake_quant*`` (C++ on CPU,
CUDA on GPU), "triton" ``torch.ops.divqat_triton.fake_quant*``, or the pure-PyTorch
"reference". Each op triple (forward, straight-through backward, LSQ backward) is declared here
with ``_backend.register_op``: its fake implementation, and its autograd formula (the compiled
ops bring the same formulas as C++ autograd kernels, csrc/fake_quant_autograd.cpp), so
``torch.library.opcheck`` and ``torch.compile(fullgraph=True)`` work with every backend.
Double backward: exact for the straight-through estimator (the backward is linear in dy and
piecewise constant in x); a clear error for the LSQ gradients, as in PyTorch.
Scale and zero point stay tensors (no ``.item()``, no host sync).
"""
import torch

from divqat import _backend
from divqat.reference.fake_quant import (
    LSQ_DOUBLE_BACKWARD,
    check_fake_quant_values,
    fake_quant_unchecked,
    validate_fake_quant_args,
)

__all__ = ["fake_quant"]


# The kernels return contiguous tensors whatever the strides of their inputs.
def _fake_quant_fake(x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    return x.new_empty(x.shape)


def _backward_fake(grad, x, scale, zero_point, quant_min, quant_max, axis):
    return x.new_empty(x.shape)


def _lsq_backward_fake(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    zdt = zero_point.dtype if zero_point.is_floating_point() else torch.float32
    return x.new_empty(x.shape), scale.new_empty(scale.shape), zero_point.new_empty(zero_point.shape, dtype=zdt)


def _setup_context(ctx, inputs, output):
    x, scale, zero_point, quant_min, quant_max, axis, grad_factor = inputs
    ctx.save_for_backward(x, scale, zero_point)
    ctx.args = (quant_min, quant_max, axis, grad_factor)


def _backward(ctx, grad):
    """Straight-through dx, or with a scale (or floating zero point) that requires grad, the LSQ
    gradients; the same formula as the compiled ops' C++ autograd (csrc/fake_quant_autograd.cpp)."""
    x, scale, zero_point = ctx.saved_tensors
    quant_min, quant_max, axis, grad_factor = ctx.args
    ops = ctx.ops
    if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
        return ops.fake_quant_backward(grad, x, scale, zero_point, quant_min, quant_max, axis), *([None] * 6)
    dx, dscale, dzero = ops.fake_quant_lsq_backward(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor)
    return dx, dscale, dzero if zero_point.is_floating_point() else None, None, None, None, None


def _straight_through_setup_context(ctx, inputs, output):
    _, x, scale, zero_point, quant_min, quant_max, axis = inputs
    ctx.save_for_backward(x, scale, zero_point)
    ctx.args = (quant_min, quant_max, axis)


def _straight_through_backward(ctx, grad_grad):
    """Double backward of the straight-through estimator: dx = dy * mask(x) is linear in dy
    (its derivative is the same mask) and piecewise constant in x (derivative 0)."""
    x, scale, zero_point = ctx.saved_tensors
    ddy = None
    if ctx.needs_input_grad[0]:
        ddy = ctx.ops.fake_quant_backward(grad_grad, x, scale, zero_point, *ctx.args)
    return ddy, *([None] * 6)


def _lsq_double_backward(ctx, *grads):
    raise RuntimeError(LSQ_DOUBLE_BACKWARD)


# compiled_autograd: csrc/fake_quant_autograd.cpp holds the same three formulas in C++ (no Python
# call per quantizer and step).
_backend.register_op("fake_quant", _fake_quant_fake, _backward, _setup_context, compiled_autograd=True)
_backend.register_op("fake_quant_backward", _backward_fake, _straight_through_backward,
                     _straight_through_setup_context, compiled_autograd=True)
_backend.register_op("fake_quant_lsq_backward", _lsq_backward_fake, _lsq_double_backward, compiled_autograd=True)


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
    if backend == "reference":
        return fake_quant_unchecked(*args)
    return _backend.ops(backend).fake_quant(*args)
