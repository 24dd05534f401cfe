"""Switches for the phases of quantization-aware training on a prepared model.

Typical schedule (Krishnamoorthi 2018, §3.2; Jacob et al. 2018): train with observers and BN
statistics updating, then for the last epochs ``freeze_bn`` (fold with the running statistics)
and ``freeze_observers`` (fixed scales), so the trained weights fit the final quantization grid.
``calibrate`` runs post-training calibration (observers on, model in eval mode).
"""
import torch

from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.qat_modules import QATConv2d

__all__ = ["freeze_bn", "freeze_observers", "enable_observers", "disable_fake_quant", "enable_fake_quant",
           "calibrate"]


def _set(model, attr, value):
    for m in model.modules():
        if isinstance(m, FakeQuantize):
            setattr(m, attr, value)
    return model


def freeze_observers(model):
    """Stop every observer: scales and zero points stay as they are (returns ``model``)."""
    return _set(model, "observer_enabled", False)


def enable_observers(model):
    """Let every observer update again while the model trains (returns ``model``)."""
    return _set(model, "observer_enabled", True)


def disable_fake_quant(model):
    """Make every FakeQuantize the identity: the prepared model computes in float (returns ``model``)."""
    return _set(model, "fake_quant_enabled", False)


def enable_fake_quant(model):
    """Turn fake quantization back on (returns ``model``)."""
    return _set(model, "fake_quant_enabled", True)


def freeze_bn(model):
    """Fold every BatchNorm with its running statistics from now on, and stop updating them."""
    for m in model.modules():
        if isinstance(m, QATConv2d):
            m.freeze_bn_stats()
    return model


@torch.no_grad()
def calibrate(model, batches):
    """Observe activations and weights on ``batches`` (an iterable of input tensors or of
    (input, target) pairs) with the model in eval mode; returns ``model`` (left in eval mode)."""
    model.eval()
    _set(model, "calibrating", True)
    try:
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        _set(model, "calibrating", False)
    return model
