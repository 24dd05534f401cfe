"""FakeQuantize against torch.fake_quantize_* (forward, straight-through and LSQ gradients),
its observer/fake-quant switches, and the qconfig presets against PyTorch's x86 QAT config."""
import math

import pytest
import torch
from torch.ao.quantization import FakeQuantize as FakeQuantizeTorch
from torch.ao.quantization import MovingAveragePerChannelMinMaxObserver as MovingAveragePerChannelMinMaxObserverTorch
from torch.ao.quantization import get_default_qat_qconfig

from divqat.quant import (
    FakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    default_qconfig,
    get_qconfig,
)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_per_tensor_forward_and_grad_match_torch(bits):
    fq = FakeQuantize(MovingAverageMinMaxObserver(bits)).train()
    x = (torch.randn(8, 5) * 3).requires_grad_()
    y = fq(x)
    s, z = fq.observer.calculate_qparams()
    xr = x.detach().clone().requires_grad_()
    ref = torch.fake_quantize_per_tensor_affine(xr, s, z, fq.quant_min, fq.quant_max)
    assert torch.equal(y, ref)
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g)
    assert torch.equal(x.grad, xr.grad)


@pytest.mark.parametrize("bits", [3, 8])
def test_per_channel_forward_matches_torch(bits):
    w = torch.randn(6, 3, 3, 3)
    fq = FakeQuantize(MovingAveragePerChannelMinMaxObserver(6, bits)).train()
    y = fq(w)
    ref = torch.fake_quantize_per_channel_affine(w, fq.scale, fq.zero_point, 0, fq.quant_min, fq.quant_max)
    assert torch.equal(y, ref)
    assert torch.all(fq.zero_point == 0) and fq.scale.shape == (6,)


def test_observer_switches_and_eval_does_not_observe():
    fq = FakeQuantize(MovingAverageMinMaxObserver()).train()
    fq(torch.tensor([-1.0, 3.0]))
    scale = fq.scale.clone()
    fq.eval()
    fq(torch.tensor([-10.0, 30.0]))  # evaluation never changes the quantization parameters
    assert torch.equal(fq.scale, scale)
    fq.train()
    fq.observer_enabled = False
    fq(torch.tensor([-10.0, 30.0]))
    assert torch.equal(fq.scale, scale)
    fq.fake_quant_enabled = False
    x = torch.randn(7)
    assert torch.equal(fq(x), x)
    fq.observer_enabled = True
    fq(torch.tensor([-10.0, 30.0]))
    assert fq.scale.item() > scale.item()  # observing again moved the range
    # the switches travel with the state dict
    other = FakeQuantize(MovingAverageMinMaxObserver())
    other.load_state_dict(fq.state_dict())
    assert other.fake_quant_enabled is False and torch.equal(other.scale, fq.scale)


def test_learnable_lsq_gradients_match_torch():
    torch.manual_seed(3)
    fq = FakeQuantize(MovingAverageMinMaxObserver(4), learnable=True).train()
    x = torch.randn(16, 10) * 2
    fq(x)  # first observed batch initialises scale/zero point, then the observer switches off
    assert fq.observer_enabled is False
    assert isinstance(fq.scale, torch.nn.Parameter) and fq.scale.requires_grad and fq.zero_point.requires_grad
    scale0 = fq.scale.detach().clone()
    xs = (x * 1.5).requires_grad_()
    y = fq(xs)
    torch.testing.assert_close(fq.scale.detach(), scale0)  # not re-observed
    g = torch.randn_like(y)
    y.backward(g)
    factor = 1.0 / math.sqrt(x.numel() * 15)  # LSQ: 1 / sqrt(N * Q_P)
    xr = (x * 1.5).requires_grad_()
    s = scale0.clone().requires_grad_()
    z = fq.zero_point.detach().clone().requires_grad_()
    ref = torch._fake_quantize_learnable_per_tensor_affine(xr, s, z, 0, 15, factor)
    ref.backward(g)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(xs.grad, xr.grad)
    torch.testing.assert_close(fq.scale.grad, s.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fq.zero_point.grad, z.grad, rtol=1e-5, atol=1e-6)


def test_learnable_scale_stepped_below_zero_is_clamped_to_eps():
    fq = FakeQuantize(MovingAverageMinMaxObserver(8), learnable=True).train()
    x = torch.randn(32, 4)
    fq(x)
    with torch.no_grad():
        fq.scale.fill_(-0.1)  # an optimizer step through zero
    y = fq(x)
    eps = torch.finfo(torch.float32).eps
    assert fq.scale.item() == eps
    z = torch.round(fq.zero_point.detach()).long()
    torch.testing.assert_close(y, torch.fake_quantize_per_tensor_affine(x, eps, int(z), 0, 255), rtol=0, atol=0)


def test_default_qconfig_matches_pytorch_x86_qat_weights():
    ours = default_qconfig()
    x86 = get_default_qat_qconfig("x86").weight()
    w = ours.weight.make(num_channels=4)
    assert (w.quant_min, w.quant_max) == (x86.quant_min, x86.quant_max) == (-128, 127)
    assert x86.qscheme == torch.per_channel_symmetric and w.observer.symmetric and w.axis == 0
    assert w.observer.averaging_constant == x86.activation_post_process.averaging_constant == 0.01
    a = ours.activation.make()
    assert (a.quant_min, a.quant_max) == (0, 255) and a.axis is None and not a.observer.symmetric
    assert a.observer.averaging_constant == 0.01
    # the same observer in PyTorch's (non-fused) FakeQuantize sees the same weights identically
    theirs = FakeQuantizeTorch(observer=MovingAveragePerChannelMinMaxObserverTorch, quant_min=-128, quant_max=127,
                               dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    w.train()
    for i in range(3):
        x = torch.randn(4, 2, 3, 3) * (i + 1)
        assert torch.equal(w(x), theirs(x))
    torch.testing.assert_close(w.scale, theirs.scale, rtol=0, atol=0)
    assert torch.equal(w.zero_point.long(), theirs.zero_point.long())


def test_get_qconfig_bits_and_round_trip():
    q = get_qconfig(weight_bits=4, act_bits=6, learnable=True)
    w, a = q.weight.make(3), q.activation.make()
    assert (w.quant_min, w.quant_max) == (-8, 7) and (a.quant_min, a.quant_max) == (0, 63)
    assert w.learnable and a.learnable
    assert QConfig.from_dict(q.to_dict()) == q
    assert default_qconfig(5) == get_qconfig(5, 5)
