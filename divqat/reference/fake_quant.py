"""Pure-PyTorch fake quantization: the fallback backend and the companion of the tests' oracle
(PyTorch's native ``torch.fake_quantize_per_*_affine`` ops).

Formula (docs/science.md §2; Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018), with s > 0, integer z, [qmin, qmax]:

    inv  = 1 / s                      (fp32, multiply, never divide per element)
    q    = round_half_to_even(x * inv) + z
    y    = (clamp(q, qmin, qmax) - z) * s
    mask = qmin <= q <= qmax          (on the pre-clamp q)

Backward: straight-through, ``dx = dy * mask`` (Bengio et al. 2013). When scale (and a
floating zero point) require grad, the LSQ gradients (Esser et al., "Learned Step Size
Quantization", ICLR 2020; PyTorch's ``_fake_quantize_learnable_per_*_affine``)::

    dscale = sum dy * ((qmin - z) if q < qmin, (qmax - z) if q > qmax, (y - x) * inv otherwise) * g
    dzero  = sum dy * (-s if q outside [qmin, qmax] else 0) * g

summed over the tensor (per-tensor) or over every dimension but ``axis`` (per-channel).

Numerics shared by every backend (they are what PyTorch's CPU kernels compute):
- x of dtype fp16/bf16/fp32 is computed in fp32 (scale rounded to fp32) and y rounded once to
  x's dtype, which is what PyTorch's fake-quant ops do for fp16/bf16 too (the tests compare them
  bit for bit). Its learnable (LSQ) backward takes fp32 only, so fp16/bf16 LSQ gradients are
  those of the fp32 upcast. float64 x is computed in float64 throughout (scale not rounded),
  which makes gradcheck meaningful; PyTorch rounds the scale to fp32 there, and its per-tensor
  op rounds (q - z) * s to fp32 as well, so float64 results differ from PyTorch's by up to an
  fp32 rounding of y (tests pin it).
- A floating zero point is rounded half to even and clamped to [qmin, qmax], as PyTorch's
  learnable ops do; PyTorch's non-learnable per-channel op, given a floating zero point,
  computes round(x / s + z) with z neither rounded nor clamped instead (x = 0.5, s = 1, z = 1.0:
  PyTorch 1.0, here 0.0; tests pin it). An integer zero point must lie in [qmin, qmax], for
  which both agree bit for bit.
- Invalid values are refused with a ValueError naming the argument: scale <= 0, NaN or +inf,
  a NaN floating zero point, a non-finite grad_factor. NaN in x gives NaN in y and a zero
  straight-through gradient (PyTorch's CPU kernel returns (qmin - z) * s there).
- Double backward (create_graph=True): the straight-through dx = dy * mask is linear in dy
  (derivative: the same mask) and piecewise constant in x (derivative 0), exactly, in every
  backend; through the LSQ gradients it raises, as PyTorch's learnable ops do.
- ``q`` is carried in the compute dtype, so |quant_min|, |quant_max| <= 2**24. Saturation is
  correct for every finite x and for +-inf (PyTorch's CPU kernel casts the float q to int64,
  which is undefined for |x / s| >= 2**63; there the results may differ).
- LSQ: PyTorch's per-tensor backward rounds the zero point as trunc(z + 0.5) and adds it before
  rounding, nearbyint(z + x * inv); here the backward uses the forward's q and z, so dx of the
  LSQ backward equals the straight-through dx. They agree whenever z is an integer and
  x * inv + z is not within one ulp of a rounding tie.
"""
import math

import torch

__all__ = ["fake_quant", "validate_fake_quant_args", "check_fake_quant_values", "compute_dtype", "quantize_codes"]

_QLIMIT = 2**24
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def compute_dtype(dtype):
    """fp32 for fp16/bf16/fp32 inputs, float64 for float64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_qparam(name, t, x, axis):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must share a device")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be a real floating or integer tensor, got {t.dtype}")
    if axis is None:
        if t.numel() != 1:
            raise ValueError(
                f"{name} must have exactly one element for per-tensor fake quant (axis=None), "
                f"got shape {tuple(t.shape)}"
            )
    elif t.dim() != 1 or t.shape[0] != x.shape[axis]:
        raise ValueError(
            f"{name} must be 1-D of length x.shape[axis]={x.shape[axis]} (axis={axis}), "
            f"got shape {tuple(t.shape)}"
        )


def validate_fake_quant_args(x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    """Check the types, shapes and devices of ``fake_quant``'s arguments (all backends share
    this; the values of scale and zero point are ``check_fake_quant_values``'s); return the axis
    normalized to [0, x.dim()) or None. Raises ValueError naming the bad argument.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise ValueError(f"x must be a floating tensor (fp16, bf16, fp32 or fp64), got {x.dtype}")
    for name, v in (("quant_min", quant_min), ("quant_max", quant_max)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int, got {v!r}")
        if abs(v) > _QLIMIT:
            raise ValueError(f"{name} must lie in [-2**24, 2**24] (q is carried in fp32), got {v}")
    if quant_min >= quant_max:
        raise ValueError(f"quant_min must be < quant_max, got quant_min={quant_min}, quant_max={quant_max}")
    if isinstance(grad_factor, bool) or not isinstance(grad_factor, (int, float)):
        raise ValueError(f"grad_factor must be a float, got {grad_factor!r}")
    if not math.isfinite(grad_factor):
        raise ValueError(f"grad_factor must be a finite number, got {grad_factor}")
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an int or None, got {axis!r}")
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"axis={axis} is out of range for x with {x.dim()} dimensions")
        axis %= x.dim()
    _check_qparam("scale", scale, x, axis)
    _check_qparam("zero_point", zero_point, x, axis)
    if not scale.is_floating_point():
        raise ValueError(f"scale must be a floating tensor, got {scale.dtype}")
    return axis


def check_fake_quant_values(scale, zero_point, quant_min, quant_max):
    """scale > 0 and finite everywhere, a floating zero point not NaN, an integer zero point in
    [quant_min, quant_max]: ValueError on the host for CPU tensors (no sync needed); for CUDA
    tensors and while torch.compile traces, ``torch._assert_async`` device asserts, which never
    synchronize (a failure there is a RuntimeError raised asynchronously). The C++ CPU kernels
    make the same checks themselves."""
    checks = [(torch.all((scale > 0) & (scale < float("inf"))), "scale must be > 0 and finite (not NaN or inf) everywhere")]
    if zero_point.is_floating_point():
        checks.append((torch.all(~torch.isnan(zero_point)), "zero_point must not be NaN"))
    else:
        checks.append((torch.all((zero_point >= quant_min) & (zero_point <= quant_max)),
                       f"zero_point must lie in [quant_min, quant_max] = [{quant_min}, {quant_max}]"))
    on_host = scale.device.type == "cpu" and not torch.compiler.is_compiling()
    for ok, message in checks:
        if on_host and not ok:
            raise ValueError(message)
        if not on_host:
            torch._assert_async(ok, f"divqat.fake_quant: {message}")


def _qparams(x, scale, zero_point, quant_min, quant_max, axis):
    """(scale, inv, z) in the compute dtype, shaped to broadcast against x."""
    ct = compute_dtype(x.dtype)
    s = scale.to(torch.float32).to(ct) if ct == torch.float32 else scale.to(ct)
    inv = torch.reciprocal(s)
    z = torch.round(zero_point.to(ct)).clamp(quant_min, quant_max)
    shape = [1] * x.dim() if axis is not None else []
    if axis is not None:
        shape[axis] = -1
    return s.reshape(shape), inv.reshape(shape), z.reshape(shape)


def _quantize(x, s, inv, z, quant_min, quant_max):
    """The pre-clamp q and the fake-quantized value in the compute dtype."""
    xc = x.to(inv.dtype)
    q = torch.round(xc * inv) + z
    return xc, q, (q.clamp(quant_min, quant_max) - z) * s


def quantize_codes(x, scale, zero_point, quant_min, quant_max, axis):
    """The integer codes clamp(round_half_even(x * (1 / s)) + z, qmin, qmax), as floats of the
    compute dtype (what an int8 export stores; the fake-quantized value is (codes - z) * s)."""
    s, inv, z = _qparams(x, scale, zero_point, quant_min, quant_max, axis)
    return _quantize(x, s, inv, z, quant_min, quant_max)[1].clamp(quant_min, quant_max)


def fake_quant_forward(x, scale, zero_point, quant_min, quant_max, axis):
    """y (dtype of x) and the straight-through mask (bool); arguments already validated."""
    s, inv, z = _qparams(x, scale, zero_point, quant_min, quant_max, axis)
    _, q, y = _quantize(x, s, inv, z, quant_min, quant_max)
    return y.to(x.dtype), (q >= quant_min) & (q <= quant_max)


def fake_quant_lsq_backward(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    """(dx, dscale, dzero): the straight-through dx and the LSQ gradients summed per tensor or
    per channel, in the dtypes of x, scale and zero_point (dzero is float32 for an integer
    zero point). Element terms follow PyTorch's evaluation order; the sums run in float64."""
    s, inv, z = _qparams(x, scale, zero_point, quant_min, quant_max, axis)
    xc, q, yq = _quantize(x, s, inv, z, quant_min, quant_max)
    dy = grad.to(inv.dtype)
    g = torch.tensor(grad_factor, dtype=inv.dtype)
    lo, hi = q < quant_min, q > quant_max
    inside = (q >= quant_min) & (q <= quant_max)
    ds = torch.where(lo, dy * (quant_min - z), torch.where(hi, dy * (quant_max - z), dy * (yq - xc) * inv)) * g
    dz = torch.where(inside, torch.zeros_like(dy), dy * -1 * s * g)
    dims = [d for d in range(x.dim()) if d != axis]

    def reduce(t, dtype, shape):  # float64 sum over every dim but axis (sum([]) would sum all)
        t = t.to(torch.float64)
        return (t.sum(dims) if dims else t).to(dtype).reshape(shape)

    dscale = reduce(ds, scale.dtype, scale.shape)
    dzero = reduce(dz, zero_point.dtype if zero_point.is_floating_point() else torch.float32, zero_point.shape)
    return (dy * inside).to(x.dtype), dscale, dzero


LSQ_DOUBLE_BACKWARD = (
    "divqat.fake_quant: the second derivative of the LSQ gradients (scale or a floating zero_point "
    "requiring grad, with create_graph=True) is not supported, as in PyTorch's _fake_quantize_learnable "
    "ops; detach the scale and zero point for the double backward"
)


class _LsqBackward(torch.autograd.Function):
    """The LSQ backward as an op: a double backward through it is refused, as by the fused
    backends' fake_quant_lsq_backward and by PyTorch."""

    @staticmethod
    def forward(ctx, grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
        return fake_quant_lsq_backward(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(LSQ_DOUBLE_BACKWARD)


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
        y, mask = fake_quant_forward(x, scale, zero_point, quant_min, quant_max, axis)
        ctx.save_for_backward(x, scale, zero_point, mask)
        ctx.args = (quant_min, quant_max, axis, grad_factor)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, scale, zero_point, mask = ctx.saved_tensors
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return grad * mask, None, None, None, None, None, None
        quant_min, quant_max, axis, grad_factor = ctx.args
        dx, dscale, dzero = _LsqBackward.apply(grad, x, scale, zero_point, quant_min, quant_max, axis, grad_factor)
        return dx, dscale, dzero if zero_point.is_floating_point() else None, None, None, None, None


def fake_quant_unchecked(x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    """``fake_quant`` after validation (axis already normalized)."""
    return _FakeQuant.apply(x, scale, zero_point, quant_min, quant_max, axis, float(grad_factor))


def fake_quant(x, scale, zero_point, quant_min, quant_max, axis=None, grad_factor=1.0):
    """Fake-quantize ``x`` per tensor (``axis=None``; 1-element scale/zero_point) or per
    channel along ``axis`` (1-D scale/zero_point of length ``x.shape[axis]``); see the module
    docstring for the formula and gradients. Pure PyTorch."""
    axis = validate_fake_quant_args(x, scale, zero_point, quant_min, quant_max, axis, grad_factor)
    check_fake_quant_values(scale, zero_point, quant_min, quant_max)
    return fake_quant_unchecked(x, scale, zero_point, quant_min, quant_max, axis, grad_factor)
