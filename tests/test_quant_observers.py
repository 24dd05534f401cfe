"""Observers against torch.ao.quantization's observers (the oracle), every bit width 2..8."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import observer as tq

from divqat.quant import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    QuantSpec,
    calculate_qparams,
    get_qconfig,
    quant_range,
)

BITS = range(2, 9)


def _torch_observer(cls, bits, signed, symmetric, per_channel, **kw):
    qmin, qmax = quant_range(bits, signed)
    if per_channel:
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    else:
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return cls(dtype=torch.qint8 if signed else torch.quint8, qscheme=scheme, quant_min=qmin, quant_max=qmax, **kw)


def _batches(shape, n=3):
    g = torch.Generator().manual_seed(1)
    # shifted/scaled so some batches are all-positive and ranges differ between batches
    return [torch.randn(shape, generator=g) * (1 + i) + (0.5 * i) for i in range(n)]


def _assert_same(ours, theirs):
    s, z = ours.calculate_qparams()
    ts, tz = theirs.calculate_qparams()
    torch.testing.assert_close(s, ts.float().reshape(s.shape), rtol=0, atol=0)
    assert torch.equal(z.long(), tz.long().reshape(z.shape))
    torch.testing.assert_close(ours.min_val, theirs.min_val.reshape(ours.min_val.shape), rtol=0, atol=0)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("signed,symmetric", [(False, False), (True, False), (True, True)])
def test_per_tensor_observers_match_torch(bits, signed, symmetric):
    for ours, theirs in (
        (MinMaxObserver(bits, signed, symmetric), _torch_observer(tq.MinMaxObserver, bits, signed, symmetric, False)),
        (MovingAverageMinMaxObserver(bits, signed, symmetric),
         _torch_observer(tq.MovingAverageMinMaxObserver, bits, signed, symmetric, False, averaging_constant=0.01)),
    ):
        for x in _batches((4, 5, 3)):
            ours(x)
            theirs(x)
            _assert_same(ours, theirs)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("signed,symmetric", [(False, False), (True, True)])
@pytest.mark.parametrize("ch_axis", [0, 1])
def test_per_channel_observers_match_torch(bits, signed, symmetric, ch_axis):
    shape = (6, 4, 3, 3)
    c = shape[ch_axis]
    for ours, theirs in (
        (PerChannelMinMaxObserver(c, bits, signed, symmetric, ch_axis),
         _torch_observer(tq.PerChannelMinMaxObserver, bits, signed, symmetric, True, ch_axis=ch_axis)),
        (MovingAveragePerChannelMinMaxObserver(c, bits, signed, symmetric, ch_axis, averaging_constant=0.3),
         _torch_observer(tq.MovingAveragePerChannelMinMaxObserver, bits, signed, symmetric, True,
                         ch_axis=ch_axis, averaging_constant=0.3)),
    ):
        for x in _batches(shape):
            ours(x)
            theirs(x)
            _assert_same(ours, theirs)


def test_quant_range_and_unobserved_defaults():
    assert quant_range(8, True) == (-128, 127)
    assert quant_range(8, False) == (0, 255)
    assert quant_range(4, True) == (-8, 7)
    assert quant_range(2, False) == (0, 3)
    s, z = MinMaxObserver().calculate_qparams()  # nothing observed: PyTorch's (1, 0)
    assert s.tolist() == [1.0] and z.tolist() == [0]
    # a constant zero tensor hits the eps floor of the scale, as in PyTorch
    s, z = calculate_qparams(torch.zeros(1), torch.zeros(1), 0, 255, symmetric=False)
    assert s.item() == torch.finfo(torch.float32).eps and z.item() == 0


def test_empty_input_is_ignored():
    obs = MovingAverageMinMaxObserver()
    obs(torch.empty(0, 3))
    assert not bool(obs.has_observed())
    obs(torch.tensor([-1.0, 2.0]))
    assert obs.min_val.item() == -1.0 and obs.max_val.item() == 2.0


@pytest.mark.parametrize("bits", [0, 1, 9, 16, 8.0, True, "8"])
def test_bad_bits_raise(bits):
    with pytest.raises(ValueError, match="bits"):
        MinMaxObserver(bits)
    with pytest.raises(ValueError, match="bits"):
        get_qconfig(weight_bits=bits)
    with pytest.raises(ValueError, match="act_bits"):
        get_qconfig(act_bits=bits)


def test_bad_observer_arguments_raise():
    with pytest.raises(ValueError, match="signed"):
        MinMaxObserver(8, signed=False, symmetric=True)
    with pytest.raises(ValueError, match="num_channels"):
        PerChannelMinMaxObserver(0)
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="channels"):
        PerChannelMinMaxObserver(3)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="averaging_constant"):
        QuantSpec(averaging_constant=1.5)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4),  # PyTorch needs >= 2-D per channel
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
    moving=st.booleans(),
    magnitude=st.floats(1e-6, 1e3),
    offset=st.floats(-2.0, 2.0),
    data=st.data(),
)
def test_observers_match_torch_property(shape, bits, symmetric, moving, magnitude, offset, data):
    """Any shape (single elements, one column), any scale, transposed (non-contiguous) inputs."""
    ch_axis = data.draw(st.integers(0, len(shape) - 1))
    g = torch.Generator().manual_seed(len(shape) * 7 + bits)
    xs = [(torch.randn(shape[::-1], generator=g) * magnitude + offset * magnitude).permute(
        *reversed(range(len(shape)))) for _ in range(2)]
    signed = symmetric or bits % 2 == 0
    if moving:
        ours = MovingAveragePerChannelMinMaxObserver(shape[ch_axis], bits, signed, symmetric, ch_axis)
        theirs = _torch_observer(tq.MovingAveragePerChannelMinMaxObserver, bits, signed, symmetric, True,
                                 ch_axis=ch_axis, averaging_constant=0.01)
    else:
        ours = PerChannelMinMaxObserver(shape[ch_axis], bits, signed, symmetric, ch_axis)
        theirs = _torch_observer(tq.PerChannelMinMaxObserver, bits, signed, symmetric, True, ch_axis=ch_axis)
    for x in xs:
        ours(x)
        theirs(x)
        _assert_same(ours, theirs)


def _observer_kinds():
    """(name, factory) of every observer class, per tensor and per channel along axis 1."""
    return [
        ("minmax", lambda b, sg, sy: MinMaxObserver(b, sg, sy)),
        ("moving", lambda b, sg, sy: MovingAverageMinMaxObserver(b, sg, sy, averaging_constant=0.3)),
        ("per-channel", lambda b, sg, sy: PerChannelMinMaxObserver(4, b, sg, sy, ch_axis=1)),
        ("moving per-channel",
         lambda b, sg, sy: MovingAveragePerChannelMinMaxObserver(4, b, sg, sy, ch_axis=1, averaging_constant=0.3)),
    ]


def _fused_inputs(dtype):
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(5, 4, 3, 2, generator=g) * (1 + i) + 0.7 * i for i in range(3)]
    xs += [torch.rand(5, 4, 3, 2, generator=g) + 2, -torch.rand(5, 4, 3, 2, generator=g) - 2,  # one-signed
           torch.zeros(5, 4, 3, 2), torch.full((5, 4, 3, 2), float("inf")), torch.empty(0, 4, 3, 2)]
    return [x.to(dtype) for x in xs]


@pytest.mark.parametrize("kind", [k for k, _ in _observer_kinds()])
@pytest.mark.parametrize("bits,signed,symmetric", [(8, False, False), (8, True, True), (4, True, False), (2, True, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fused_observation_equals_the_python_observer(kind, bits, signed, symmetric, dtype):
    """``observe_into`` (one call of the C++ kernel divqat::observe_qparams_) updates the statistics
    and writes the qparams exactly as ``forward`` + ``calculate_qparams`` do, batch after batch:
    the Python path is itself checked against torch.ao's observers above."""
    make = dict(_observer_kinds())[kind]
    fused, python = make(bits, signed, symmetric), make(bits, signed, symmetric)
    n = fused.min_val.numel()
    scale, zero_point = torch.zeros(n), torch.full((n,), 7, dtype=torch.int32)
    for x in _fused_inputs(dtype):
        assert fused._fusable(x, scale)  # the compiled kernels are built: the fused path runs
        fused.observe_into(x, scale, zero_point)
        python(x)
        ps, pz = python.calculate_qparams()
        torch.testing.assert_close(fused.min_val, python.min_val, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(fused.max_val, python.max_val, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(scale, ps, rtol=0, atol=0)
        assert torch.equal(zero_point, pz)


def test_fused_observation_of_an_unobserved_observer_and_a_float_zero_point():
    """Nothing observed yet (empty batch): scale 1, zero point 0, as PyTorch; a learnable (float)
    zero point receives the integer value."""
    obs = MovingAverageMinMaxObserver(8, False, False)
    scale, zero_point = torch.full((1,), 5.0), torch.full((1,), 3.5)
    obs.observe_into(torch.empty(0), scale, zero_point)
    assert scale.item() == 1.0 and zero_point.item() == 0.0
    obs.observe_into(torch.tensor([-1.0, 3.0]), scale, zero_point)
    s, z = obs.calculate_qparams()
    assert scale.item() == s.item() and zero_point.item() == float(z.item())


def test_fused_observation_checks_channels():
    obs = PerChannelMinMaxObserver(4, 8, True, True, ch_axis=1)
    with pytest.raises(ValueError, match="observer expects 4 channels along axis 1"):
        obs.observe_into(torch.randn(2, 3), torch.ones(4), torch.zeros(4, dtype=torch.int32))
