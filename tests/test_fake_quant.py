"""divqat.ops.fake_quant on every backend against PyTorch's own fake-quant ops.

Oracles: ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine`` (forward and
straight-through backward, compared bit for bit), ``torch._fake_quantize_learnable_per_*_affine``
(LSQ gradients), ``torch.autograd.gradcheck`` in float64, ``torch.library.opcheck``.
The Triton backend runs under TRITON_INTERPRET=1 (tests/conftest.py) on small shapes.
"""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_backends import backend, fused_ops  # noqa: F401  (fixtures)

from divqat.ops import fake_quant

RANGES = [(0, 255), (-128, 127), (0, 15), (-8, 7), (0, 3), (-2, 1)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Hypothesis examples per backend: the Triton interpreter costs milliseconds per launch.
EXAMPLES = {"compiled": 60, "reference": 40, "triton": 12}


def _settings(backend, scale=1.0):
    return settings(max_examples=max(1, int(EXAMPLES[backend] * scale)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclasses.dataclass
class Case:
    x: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    quant_min: int
    quant_max: int
    axis: object


def _make_case(shape, axis, qrange, view, dtype, pow2, seed, ties=True):
    """x (possibly a non-contiguous view), scale and zero point: values spread over the range
    and past both ends; with ties, a fifth of x / s lands on k + 0.5 (exactly so for the
    power-of-two scales)."""
    g = torch.Generator().manual_seed(seed)
    qmin, qmax = qrange
    channels = 1 if axis is None else shape[axis]
    if pow2:
        scale = 2.0 ** -torch.randint(2, 8, (channels,), generator=g).float()
    else:
        scale = torch.rand(channels, generator=g) * 0.1 + 0.005
    zero_point = torch.randint(qmin, qmax + 1, (channels,), generator=g, dtype=torch.int32)
    if view == "transposed" and len(shape) >= 2:
        base_shape = list(shape)
        base_shape[-1], base_shape[-2] = base_shape[-2], base_shape[-1]
        make = lambda t: t.transpose(-1, -2)  # noqa: E731
    elif view == "strided":
        base_shape = [2 * shape[0]] + list(shape[1:])
        make = lambda t: t[::2]  # noqa: E731
    else:
        base_shape, make = list(shape), (lambda t: t)
    bshape = [1] * len(shape)
    if axis is not None:
        bshape[axis] = channels
    span = (qmax - qmin) * 0.75
    q = torch.randn(base_shape, generator=g) * span
    if ties:
        q = torch.where(torch.rand(base_shape, generator=g) < 0.2, torch.round(q) + 0.5, q)
    x = make(q) * scale.reshape(bshape) if axis is not None else make(q) * scale
    x = x.to(dtype)
    if axis is None:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    return Case(x, scale, zero_point, qmin, qmax, axis)


@st.composite
def cases(draw, max_side=7, max_dims=5, ties=True):
    ndim = draw(st.integers(1, max_dims))
    shape = draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim))
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    if axis is not None:
        axis %= ndim
    return _make_case(shape, axis, draw(st.sampled_from(RANGES)),
                      draw(st.sampled_from(["contiguous", "transposed", "strided"])),
                      draw(st.sampled_from(DTYPES)), ties and draw(st.booleans()), draw(st.integers(0, 2**31 - 1)),
                      ties)


def native_fake_quant(x, scale, zero_point, quant_min, quant_max, axis):
    """PyTorch's fake quant with an integer zero point."""
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(
            x, scale.float().reshape(1), zero_point.int().reshape(1), quant_min, quant_max)
    return torch.fake_quantize_per_channel_affine(x, scale.float(), zero_point.int(), axis, quant_min, quant_max)


def native_learnable(x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    """PyTorch's LSQ op. One channel goes to the per-tensor op (equal for integer zero points):
    the per-channel op returns a 0-d gradient for a 1-element scale, which autograd rejects.
    Callers keep per-tensor zero points >= 0: the per-tensor backward rounds z as
    int64(z + 0.5), which moves every negative integer z up by one. A 1-D x goes in as (C, 1)
    for the same 0-d gradient reason."""
    if axis is not None and x.dim() == 1 and scale.numel() > 1:
        return native_learnable(x.unsqueeze(1), scale, zero_point, quant_min, quant_max, 0, grad_factor).squeeze(1)
    if axis is None or scale.numel() == 1:
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, scale.reshape(1), zero_point.reshape(1), quant_min, quant_max, grad_factor)
    return torch._fake_quantize_learnable_per_channel_affine(
        x, scale, zero_point, axis, quant_min, quant_max, grad_factor)


def _forward_backward(fn, c, dy):
    x = c.x.detach().clone().requires_grad_()
    y = fn(x)
    y.backward(dy)
    return y.detach(), x.grad


def test_forward_and_straight_through_match_native(backend):
    @_settings(backend)
    @given(c=cases(max_side=7 if backend != "triton" else 5))
    def check(c):
        dy = torch.randn(c.x.shape).to(c.x.dtype)
        args = (c.scale, c.zero_point, c.quant_min, c.quant_max)
        y, dx = _forward_backward(lambda x: fake_quant(x, *args, axis=c.axis), c, dy)
        y_ref, dx_ref = _forward_backward(lambda x: native_fake_quant(x, *args, c.axis), c, dy)
        assert y.dtype == c.x.dtype and y.shape == c.x.shape
        assert torch.equal(y, y_ref)
        assert torch.equal(dx, dx_ref)

    check()


@pytest.mark.parametrize("dtype", DTYPES)
def test_rounding_ties_and_large_values(backend, dtype):
    """Exact .5 ties round to even, and |x / s| up to and past 2**23 (the end of the rounding
    trick's range) matches PyTorch with a 24-bit range."""
    k = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -3.51, 0.0, -0.0])
    big = torch.tensor([2.0**22 + 0.5, 2.0**22 + 1.5, -(2.0**22) - 2.5, 2.0**23 - 0.5, 2.0**23 + 2, 2.0**24 - 3,
                        2.0**25, -(2.0**26)])
    x = (torch.cat([k, big]) if dtype != torch.float16 else k) * 0.25  # fp16 tops out at 65504
    x = x.to(dtype)
    s, z = torch.tensor(0.25), torch.tensor(3, dtype=torch.int32)
    for qmin, qmax in [(-128, 127), (-(2**24), 2**24)]:
        assert torch.equal(fake_quant(x, s, z, qmin, qmax), native_fake_quant(x, s, z, qmin, qmax, None))


def test_infinities_saturate(backend):
    """+-inf saturate to the range ends with a zero straight-through gradient (PyTorch's CPU
    kernel casts q to int64 there, which is undefined, so the oracle is the formula)."""
    x = torch.tensor([float("inf"), -float("inf"), 0.3], requires_grad=True)
    s, z = torch.tensor(0.5), torch.tensor(2, dtype=torch.int32)
    y = fake_quant(x, s, z, 0, 15)
    y.backward(torch.ones(3))
    assert y.tolist() == [(15 - 2) * 0.5, (0 - 2) * 0.5, 0.5]
    assert x.grad.tolist() == [0.0, 0.0, 1.0]


def test_float_zero_point_rounds_half_even_and_clamps(backend):
    """A floating zero point is used as PyTorch's learnable op uses it: round, then clamp."""
    x = torch.linspace(-3, 3, 6 * 5).reshape(6, 5)
    s = torch.full((5,), 0.1)
    z = torch.tensor([2.5, 3.5, -1.7, 300.0, 7.2])
    y = fake_quant(x, s, z, 0, 255, axis=1)
    assert torch.equal(y, native_learnable(x, s, z, 0, 255, 1, 1.0))


def _lsq_grads(fn, x, scale, zero_point, dy):
    x = x.detach().clone().requires_grad_()
    scale = scale.detach().clone().requires_grad_()
    zero_point = zero_point.detach().clone().requires_grad_()
    y = fn(x, scale, zero_point)
    y.backward(dy)
    return y.detach(), x.grad, scale.grad, zero_point.grad


def test_lsq_gradients_match_native_learnable(backend):
    """y and dx bit for bit; dscale and dzero to the rounding of a float32 sum.

    The per-element terms are computed in the same order as PyTorch's kernel, only the sums
    differ (pairwise in PyTorch, lanes and blocks here): both are within n * eps32 * sum|term|
    of the exact sum, so the tolerance is 1e-6 * sum|term|, bounded by sum |dy| * max |q - z| * g.
    fp16/bf16 inputs are compared with the learnable op on their fp32 upcast (it takes fp32 only).
    No exact rounding ties here: PyTorch's learnable backward rounds z + x / s where its forward
    rounds x / s and adds z, so at a tie its gradient belongs to the other q; ours follows the
    forward (see divqat.reference.fake_quant).
    """
    @_settings(backend, 0.5)
    @given(c=cases(max_side=6 if backend != "triton" else 4, max_dims=4, ties=False), g=st.sampled_from([1.0, 0.37]))
    def check(c, g):
        zp = c.zero_point.float()
        if c.zero_point.numel() == 1:
            zp = zp.clamp(min=0)  # see native_learnable
        dy = torch.randn(c.x.shape).to(c.x.dtype)
        scale = c.scale.reshape(1) if c.axis is None else c.scale
        zp = zp.reshape(1) if c.axis is None else zp
        ours = _lsq_grads(lambda x, s, z: fake_quant(x, s, z, c.quant_min, c.quant_max, c.axis, g),
                          c.x, scale, zp, dy)
        ref = _lsq_grads(lambda x, s, z: native_learnable(x, s, z, c.quant_min, c.quant_max, c.axis, g),
                         c.x.float(), scale, zp, dy.float())
        assert torch.equal(ours[0], ref[0].to(c.x.dtype))
        assert torch.equal(ours[1], ref[1].to(c.x.dtype))
        bound = dy.float().abs().sum() * max(c.quant_max - c.quant_min, 1) * g
        for got, want in zip(ours[2:], ref[2:]):
            assert got.shape == want.shape and got.dtype == want.dtype
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(bound) + 1e-7)

    check()


def test_lsq_large_tensor_all_layouts(backend):
    """LSQ on a tensor big enough for several blocks per row (long rows) and many row groups
    (short rows, axis = last), against the learnable op."""
    if backend == "triton":
        shape = (17, 3, 70)
    else:
        shape = (150, 7, 129)
    x = torch.randn(shape) * 2
    dy = torch.randn(shape)
    for axis in (None, 0, 1, 2):
        channels = 1 if axis is None else shape[axis]
        scale = torch.rand(channels) * 0.05 + 0.01
        zp = torch.randint(0, 256, (channels,)).float()
        ours = _lsq_grads(lambda x, s, z: fake_quant(x, s, z, 0, 255, axis, 0.5), x, scale, zp, dy)
        ref = _lsq_grads(lambda x, s, z: native_learnable(x, s, z, 0, 255, axis, 0.5), x, scale, zp, dy)
        assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
        bound = float(dy.abs().sum()) * 255 * 0.5
        for got, want in zip(ours[2:], ref[2:]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * bound)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_expanded_gradient(backend, axis):
    """The gradient of a sum arrives expanded from one value (stride 0); the C++ kernels read it
    in place: results equal those for the same gradient materialized, and the native op's."""
    x = torch.randn(30, 70) * 3
    channels = 1 if axis is None else x.shape[axis]
    scale, zp = torch.rand(channels) * 0.05 + 0.01, torch.randint(0, 256, (channels,)).float()
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    expanded = torch.tensor(0.75).expand(x.shape)
    dense = expanded.contiguous()
    got = _lsq_grads(lambda a, s, z: fake_quant(a, s, z, 0, 255, axis), x, scale, zp, expanded)
    want = _lsq_grads(lambda a, s, z: fake_quant(a, s, z, 0, 255, axis), x, scale, zp, dense)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    x_ste = x.clone().requires_grad_()
    fake_quant(x_ste, scale, zp.int(), 0, 255, axis).sum().backward()
    assert torch.equal(x_ste.grad, _forward_backward(
        lambda v: native_fake_quant(v, scale, zp.int(), 0, 255, axis), Case(x, scale, zp, 0, 255, axis),
        torch.ones(x.shape))[1])


def test_lsq_reduction_is_deterministic(backend):
    """The in-kernel reductions do not depend on the thread count or the run."""
    x = torch.randn(16, 40, 33) if backend != "triton" else torch.randn(4, 10, 33)
    dy = torch.randn_like(x)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            for axis in (None, 1, 2):
                channels = 1 if axis is None else x.shape[axis]
                s = torch.full((channels,), 0.02)
                z = torch.full((channels,), 128.0)
                results.append(_lsq_grads(lambda a, b, c: fake_quant(a, b, c, 0, 255, axis), x, s, z, dy)[2:])
    finally:
        torch.set_num_threads(threads)
    for i in range(3, len(results)):
        for got, want in zip(results[i], results[i % 3]):
            assert torch.equal(got, want)


@pytest.mark.parametrize("axis", [None, 1])
def test_gradcheck_float64(backend, axis):
    """gradcheck where the fake quant is differentiable in the ordinary sense: every x past
    the range, so y = (qmin or qmax - z) * s is linear in s and constant in x, and the LSQ
    gradient dscale = sum dy * (qmin or qmax - z) and dx = 0 are the true derivatives
    (inside the range the rounding makes finite differences zero, and the straight-through
    estimator is not a derivative)."""
    g = torch.Generator().manual_seed(1)
    sign = torch.where(torch.rand(4, 3, generator=g) < 0.5, -1.0, 1.0).double()
    scale = (torch.rand(3 if axis is not None else (), generator=g).double() * 0.1 + 0.05)
    x = (sign * (40 + 10 * torch.rand(4, 3, generator=g).double()) * 0.2).requires_grad_()
    scale.requires_grad_()
    zero_point = torch.full(scale.shape, 2, dtype=torch.int32)
    assert torch.autograd.gradcheck(lambda x, s: fake_quant(x, s, zero_point, -8, 7, axis), (x, scale))


def test_float64_matches_reference_formula(backend):
    """float64 runs in float64 throughout (scale not rounded to fp32)."""
    x = torch.randn(5, 6, dtype=torch.float64) * 3
    s = torch.rand(6, dtype=torch.float64) * 0.1 + 0.0100000001
    z = torch.randint(0, 16, (6,), dtype=torch.int32)
    q = torch.round(x * (1 / s)) + z
    assert torch.equal(fake_quant(x, s, z, 0, 15, axis=1), (q.clamp(0, 15) - z) * s)


def test_empty_tensor(backend):
    x = torch.empty(0, 3, requires_grad=True)
    s = torch.full((3,), 0.1, requires_grad=True)
    z = torch.zeros(3, requires_grad=True)
    y = fake_quant(x, s, z, 0, 255, axis=1)
    y.sum().backward()
    assert y.shape == (0, 3)
    assert torch.equal(s.grad, torch.zeros(3)) and torch.equal(z.grad, torch.zeros(3))


def test_torch_compile_fullgraph(backend):
    """Forward and LSQ backward trace into one graph (no graph break) and match eager."""
    x = torch.randn(8, 5) * 2
    s0, z0 = torch.rand(5) * 0.1 + 0.01, torch.randint(0, 16, (5,)).float()
    dy = torch.randn(8, 5)

    def f(x, s, z):
        return fake_quant(x, s, z, 0, 15, axis=1, grad_factor=0.5) * 2 + 1

    torch._dynamo.reset()  # the backend is chosen while tracing: no graph of another backend
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    eager = _lsq_grads(f, x, s0, z0, dy)
    traced = _lsq_grads(compiled, x, s0, z0, dy)
    for got, want in zip(traced, eager):
        assert torch.equal(got, want)


def test_opcheck(fused_ops):
    x = torch.randn(5, 6).t() * 2  # non-contiguous: the outputs are contiguous, fake and real
    dy = torch.randn(6, 5)
    per_channel = (torch.rand(5) * 0.1 + 0.01, torch.randint(0, 16, (5,)).float(), 0, 15, 1)
    per_tensor = (torch.tensor(0.05), torch.tensor(3, dtype=torch.int32), -8, 7, None)
    for s, z, qmin, qmax, axis in (per_channel, per_tensor):
        torch.library.opcheck(fused_ops.fake_quant.default,
                              (x.clone().requires_grad_(), s.clone().requires_grad_(), z, qmin, qmax, axis, 0.5))
        torch.library.opcheck(fused_ops.fake_quant_backward.default, (dy, x, s, z, qmin, qmax, axis))
        torch.library.opcheck(fused_ops.fake_quant_lsq_backward.default, (dy, x, s, z, qmin, qmax, axis, 0.5))


_GOOD = dict(x=torch.randn(4, 3), scale=torch.full((3,), 0.1), zero_point=torch.zeros(3, dtype=torch.int32),
             quant_min=0, quant_max=255, axis=1, grad_factor=1.0)
_BAD = [
    (dict(x=torch.ones(4, 3, dtype=torch.int32)), "x must be a floating"),
    (dict(x=[1.0, 2.0]), "x must be a torch.Tensor"),
    (dict(scale=torch.tensor([0.1, 0.0, 0.1])), "scale must be > 0"),
    (dict(scale=torch.tensor([0.1, -1.0, 0.1])), "scale must be > 0"),
    (dict(scale=torch.tensor([0.1, float("nan"), 0.1])), "scale must be > 0"),
    (dict(scale=torch.ones(3, dtype=torch.int64)), "scale must be a floating"),
    (dict(scale=torch.full((4,), 0.1)), "scale must be 1-D of length"),
    (dict(scale=torch.full((3,), 0.1, device="meta")), "scale is on meta"),
    (dict(zero_point=torch.zeros(2, dtype=torch.int32)), "zero_point must be 1-D of length"),
    (dict(zero_point=torch.tensor([0, 256, 0], dtype=torch.int32)), "zero_point must lie in"),
    (dict(quant_min=255, quant_max=0), "quant_min must be < quant_max"),
    (dict(quant_min=3, quant_max=3), "quant_min must be < quant_max"),
    (dict(quant_max=2**25), "quant_max must lie in"),
    (dict(quant_min=0.5), "quant_min must be an int"),
    (dict(axis=2), "axis=2 is out of range"),
    (dict(axis=-3), "axis=-3 is out of range"),
    (dict(axis=None), "scale must have exactly one element"),
    (dict(axis=None, scale=torch.tensor(0.1)), "zero_point must have exactly one element"),
    (dict(grad_factor="1"), "grad_factor must be a float"),
    (dict(scale=torch.tensor([0.1, float("inf"), 0.1])), "scale must be > 0 and finite"),
    (dict(zero_point=torch.tensor([0.0, float("nan"), 1.0])), "zero_point must not be NaN"),
    (dict(grad_factor=float("nan")), "grad_factor must be a finite number"),
    (dict(grad_factor=float("inf")), "grad_factor must be a finite number"),
]


@pytest.mark.parametrize("change,match", _BAD, ids=[m for _, m in _BAD])
def test_bad_input_raises_naming_the_argument(backend, change, match):
    kwargs = {**_GOOD, **change}
    with pytest.raises(ValueError, match=match):
        fake_quant(**kwargs)


def test_bad_values_raise_inside_torch_compile(backend):
    """While compiling, the value checks are device asserts (no host sync, no graph break)."""
    torch._dynamo.reset()
    f = torch.compile(lambda x, s, z: fake_quant(x, s, z, 0, 15, axis=1), fullgraph=True, backend="aot_eager")
    x, z = torch.randn(4, 3), torch.zeros(3, dtype=torch.int32)
    assert f(x, torch.full((3,), 0.1), z).shape == (4, 3)
    with pytest.raises(RuntimeError, match="scale must be > 0"):
        f(x, torch.tensor([0.1, 0.0, 0.1]), z)
    with pytest.raises(RuntimeError, match="zero_point must lie in"):
        f(x, torch.full((3,), 0.1), torch.tensor([0, 16, 0], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="scale must be > 0 and finite"):
        f(x, torch.tensor([0.1, float("inf"), 0.1]), z)


def test_compiled_op_checks_shapes_itself():
    """The C++ kernels check what they index with, even when called without the Python checks."""
    with pytest.raises(RuntimeError, match="per-channel scale"):
        torch.ops.divqat.fake_quant(torch.randn(4, 3), torch.ones(2), torch.zeros(2), 0, 255, 1, 1.0)
    with pytest.raises(RuntimeError, match="axis"):
        torch.ops.divqat.fake_quant(torch.randn(4, 3), torch.ones(3), torch.zeros(3), 0, 255, 5, 1.0)


# ---- second derivatives (create_graph=True) ----------------------------------------------------

def test_double_backward_of_straight_through_matches_reference(backend):
    """A gradient penalty through fake_quant: with y = fake_quant(x) and L = sum y^2, the
    straight-through dL/dx = 2 y mask, whose derivative is 2 mask (the STE's dy/dx = mask, and
    mask piecewise constant). The compiled op used to return 0 here without a word."""
    x = torch.tensor([0.31, -0.52, 0.05, 2.0, -3.0], dtype=torch.float64, requires_grad=True)
    y = fake_quant(x, torch.tensor(0.1, dtype=torch.float64), torch.tensor(0), -8, 7)
    (gx,) = torch.autograd.grad((y**2).sum(), x, create_graph=True)
    (ggx,) = torch.autograd.grad(gx.sum(), x)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.equal(gx.detach(), 2 * y.detach() * mask)
    assert torch.equal(ggx, 2 * mask)


@pytest.mark.parametrize("axis", [None, 1])
def test_gradgradcheck_straight_through(backend, axis):
    """gradgradcheck of the straight-through backward in float64: exact in dy (the mask) and 0
    in x (x kept off the mask's edges at q = qmin - 0.5 and qmax + 0.5, in and out of range)."""
    g = torch.Generator().manual_seed(2)
    scale = torch.rand(3 if axis is not None else (), generator=g).double() * 0.1 + 0.05
    q = torch.tensor([[-12.2, -6.7, 0.3], [3.1, 6.2, 11.8], [-0.4, 9.3, -9.6], [5.2, -3.3, 1.7]], dtype=torch.float64)
    x = (q * scale).requires_grad_()
    zero_point = torch.full(scale.shape, 1, dtype=torch.int32)
    assert torch.autograd.gradgradcheck(lambda v: fake_quant(v, scale, zero_point, -8, 7, axis), (x,))


def test_double_backward_of_lsq_raises(backend):
    """Through the LSQ gradients a second derivative is refused with a clear error, as PyTorch's
    learnable ops refuse it, in every backend (no silently wrong numbers)."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    s = torch.full((3,), 0.1, dtype=torch.float64, requires_grad=True)
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y = fake_quant(x, s, z, -8, 7, axis=1)
    gx, gs = torch.autograd.grad((y**2).sum(), (x, s), create_graph=True)
    with pytest.raises(RuntimeError, match="second derivative of the LSQ gradients"):
        torch.autograd.grad(gs.sum() + gx.sum(), s)


# ---- where divqat and PyTorch's fake-quant ops differ, pinned ----------------------------------

def test_float_zero_point_differs_from_torch_non_learnable_per_channel_op(backend):
    """A floating zero point is rounded and clamped (as the learnable ops do), while
    torch.fake_quantize_per_channel_affine uses it raw in round(x / s + z): x = 0.5, s = 1,
    z = 1.0 gives 0.0 here and 1.0 in PyTorch's non-learnable op."""
    x, s, z = torch.tensor([[0.5]]), torch.tensor([1.0]), torch.tensor([1.0])
    assert fake_quant(x, s, z, 0, 255, axis=1).item() == 0.0
    assert torch.fake_quantize_per_channel_affine(x, s, z, 1, 0, 255).item() == 1.0
    assert fake_quant(x, s, z, 0, 255, axis=1).item() == native_learnable(x, s, z, 0, 255, 1, 1.0).item()


def test_float64_per_tensor_is_exact_where_torch_rounds_to_fp32(backend):
    """float64 is computed in float64 (the formula's value exactly); PyTorch's per-tensor op
    rounds the scale and (q - z) * s to fp32, so the two differ by fp32 roundings only."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, generator=g, dtype=torch.float64) * 3
    s, z = torch.tensor(0.0123456789, dtype=torch.float64), torch.tensor(3, dtype=torch.int32)
    ours = fake_quant(x, s, z, -128, 127)
    formula = (torch.clamp(torch.round(x * (1 / s)) + 3, -128, 127) - 3) * s
    theirs = native_fake_quant(x, s, z, -128, 127, None)
    assert torch.equal(ours, formula)
    assert not torch.equal(ours, theirs)
    torch.testing.assert_close(ours, theirs, rtol=2**-23, atol=0)


def test_nan_input_gives_nan_and_zero_gradient(backend):
    """NaN in x propagates to y with a zero straight-through gradient (documented; PyTorch's
    CPU kernel returns (qmin - z) * s instead)."""
    x = torch.tensor([float("nan"), 0.3], requires_grad=True)
    y = fake_quant(x, torch.tensor(0.1), torch.tensor(2, dtype=torch.int32), 0, 15)
    y.backward(torch.ones(2))
    assert torch.isnan(y[0]) and y[1].item() == pytest.approx(0.3)
    assert x.grad.tolist() == [0.0, 1.0]


# ---- ported from PyTorch's TestFakeQuantizeOps (test/quantization/core/test_workflow_ops.py) ----
# Their reference formulas, applied to divqat.fake_quant on every backend.

def _torch_reference(x, scale, zero_point, quant_min, quant_max):
    """_fake_quantize_per_tensor_affine_reference (broadcasting scale and zero point)."""
    return (torch.clamp(torch.round(x * (1.0 / scale) + zero_point), quant_min, quant_max) - zero_point) * scale


def _torch_grad_reference(dy, x, scale, zero_point, quant_min, quant_max):
    """_fake_quantize_per_tensor_affine_grad_reference."""
    xq = torch.round(x * (1.0 / scale) + zero_point)
    return torch.where((xq >= quant_min) & (xq <= quant_max), dy, torch.zeros_like(dy))


def _ported_inputs(seed, shape=(4, 5, 6), per_channel_axis=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 4
    channels = 1 if per_channel_axis is None else shape[per_channel_axis]
    scale = torch.rand(channels, generator=g) * 0.2 + 0.01
    zero_point = torch.randint(0, 256, (channels,), generator=g, dtype=torch.int32)
    return x, scale, zero_point


@pytest.mark.parametrize("seed", [0, 1])
def test_ported_forward_and_backward_per_tensor(backend, seed):
    """test_forward_per_tensor / test_backward_per_tensor."""
    x, scale, zero_point = _ported_inputs(seed)
    x.requires_grad_()
    y = fake_quant(x, scale, zero_point, 0, 255)
    assert torch.equal(y, _torch_reference(x.detach(), scale.item(), zero_point.item(), 0, 255))
    dy = torch.rand(x.shape)
    y.backward(dy)
    assert torch.equal(x.grad, _torch_grad_reference(dy, x.detach(), scale.item(), zero_point.item(), 0, 255))


@pytest.mark.parametrize("axis", [0, 2])
def test_ported_forward_and_backward_per_channel(backend, axis):
    """test_forward_per_channel / test_backward_per_channel."""
    x, scale, zero_point = _ported_inputs(4, per_channel_axis=axis)
    shape = [1, 1, 1]
    shape[axis] = -1
    s, z = scale.reshape(shape), zero_point.reshape(shape).float()
    x.requires_grad_()
    y = fake_quant(x, scale, zero_point, 0, 255, axis=axis)
    assert torch.equal(y, _torch_reference(x.detach(), s, z, 0, 255))
    dy = torch.rand(x.shape)
    y.backward(dy)
    assert torch.equal(x.grad, _torch_grad_reference(dy, x.detach(), s, z, 0, 255))


def test_ported_numerical_consistency_with_quantize_dequantize(backend):
    """test_numerical_consistency_per_tensor / _per_channel: equal to quantize then dequantize."""
    x, scale, zero_point = _ported_inputs(5)
    want = torch.quantize_per_tensor(x, scale.item(), zero_point.item(), torch.quint8).dequantize()
    assert torch.equal(fake_quant(x, scale, zero_point, 0, 255), want)
    x, scale, zero_point = _ported_inputs(6, per_channel_axis=1)
    want = torch.quantize_per_channel(x, scale.double(), zero_point.long(), 1, torch.quint8).dequantize()
    assert torch.equal(fake_quant(x, scale, zero_point, 0, 255, axis=1), want)


def test_ported_fixed_qparams(backend):
    """test_fixed_qparams_fq_module's range: a sigmoid output with scale 1/256, zero point 0."""
    x = torch.rand(64)
    scale, zero_point = torch.tensor(1.0 / 256), torch.tensor(0, dtype=torch.int32)
    assert torch.equal(fake_quant(x, scale, zero_point, 0, 255), _torch_reference(x, 1.0 / 256, 0, 0, 255))


def test_ported_learnable_per_tensor_backward(backend):
    """test_learnable_backward_per_tensor against _fake_quantize_learnable_per_tensor_affine_grad_reference
    (its integer zero point rounding, int(z + 0.5), equals ours for the z >= 0 drawn here)."""
    x, scale, zero_point = _ported_inputs(7)
    z = zero_point.float()
    dy = torch.rand(x.shape)
    _, dx, dscale, dzero = _lsq_grads(lambda a, s, zp: fake_quant(a, s, zp, 0, 255), x, scale, z, dy)
    xq = torch.round(x * (1.0 / scale) + z)
    small, big = xq < 0, xq > 255
    middle = ~(small | big)
    xfq = (xq.clamp(0, 255) - z) * scale
    grad_scale = torch.where(small, 0 - z, torch.where(big, 255 - z, (xfq - x) / scale))
    grad_zero = torch.where(middle, torch.zeros_like(x), -scale.expand_as(x))
    assert torch.equal(dx, torch.where(middle, dy, torch.zeros_like(dy)))
    torch.testing.assert_close(dscale, (grad_scale * dy).sum().reshape(1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dzero, (grad_zero * dy).sum().reshape(1), rtol=1e-4, atol=1e-4)
