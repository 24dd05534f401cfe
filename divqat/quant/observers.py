"""Range observers: running min/max statistics and the affine quantization parameters they imply.

The formulas are PyTorch's (``torch.ao.quantization.observer``, ``_calculate_qparams``), for a
range [qmin, qmax] and observed min/max ``m, M`` (per tensor, or per channel along ``ch_axis``)::

    m- = min(m, 0),  M+ = max(M, 0)                  (the range always contains 0)
    affine:    s = max((M+ - m-) / (qmax - qmin), eps)
               z = clamp(qmin - round_half_even(m- / s), qmin, qmax)
    symmetric: s = max(max(-m-, M+) / ((qmax - qmin) / 2), eps),   z = 0
    eps = torch.finfo(float32).eps

with an observer that has seen nothing giving s = 1, z = 0. Min-max observers keep the running
extremes, moving-average observers an exponential average (Jacob et al., "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, §3.2;
Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference", 2018)::

    m <- m + c * (min(x) - m),   M <- M + c * (max(x) - M)      (c = averaging_constant)

initialised with the first batch's extremes. The integer range comes from the bit width:
signed b bits -> [-2^(b-1), 2^(b-1) - 1], unsigned -> [0, 2^b - 1] (``reduce_range`` is not
used). Symmetric quantization is defined for signed ranges only (zero point 0).

Every update is tensor arithmetic (``torch.where`` instead of a Python test on the statistics),
so observing never synchronizes with the device. Per-channel observers are sized at
construction (``num_channels``), so their state dicts load without resizing.
"""
import torch
from torch import nn

from divqat import _backend
from divqat.checks import check_int, check_real

__all__ = [
    "MIN_BITS",
    "MAX_BITS",
    "quant_range",
    "calculate_qparams",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
]

MIN_BITS = 2
MAX_BITS = 8
_EPS = torch.finfo(torch.float32).eps


def quant_range(bits, signed):
    """(qmin, qmax) of a ``bits``-bit integer: signed two's complement or unsigned."""
    check_int("bits", bits, MIN_BITS, MAX_BITS)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def calculate_qparams(min_val, max_val, quant_min, quant_max, symmetric):
    """(scale float32, zero_point int32) from observed extremes; see the module docstring.

    Entries never observed (min = +inf and max = -inf) get scale 1 and zero point 0, as in
    PyTorch. The result has the shape of ``min_val``. Runs once per observed batch for every
    quantizer, so it is written with few (tiny) tensor operations: clamps against 0 and eps
    rather than maxima against materialized constant tensors (the same values).
    """
    unobserved = torch.isposinf(min_val) & torch.isneginf(max_val)
    min_neg, max_pos = min_val.clamp(max=0.0), max_val.clamp(min=0.0)
    if symmetric:
        max_pos = torch.maximum(-min_neg, max_pos)
        scale = (max_pos / (float(quant_max - quant_min) / 2)).clamp_(min=_EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((max_pos - min_neg) / float(quant_max - quant_min)).clamp_(min=_EPS)
        zero_point = (quant_min - torch.round(min_neg / scale).to(torch.int32)).clamp_(quant_min, quant_max)
        zero_point = zero_point.masked_fill_(unobserved, 0)
    return scale.masked_fill_(unobserved, 1.0).to(torch.float32), zero_point


class _Observer(nn.Module):
    """Shared state of every observer: the integer range, the scheme and min/max buffers.

    ``num_channels`` is 1 for per-tensor observers (buffers of shape (1,)); per-channel
    observers reduce over every dimension but ``ch_axis``.
    """

    per_channel = False
    averaging_constant = None

    def __init__(self, bits=8, signed=False, symmetric=False, ch_axis=0, num_channels=1,
                 averaging_constant=None):
        super().__init__()
        self.quant_min, self.quant_max = quant_range(bits, signed)
        if symmetric and not signed:
            raise ValueError("symmetric quantization needs a signed range: pass signed=True")
        check_int("num_channels", num_channels, 1)
        if not self.per_channel and num_channels != 1:
            raise ValueError(f"num_channels must be 1 for a per-tensor observer, got {num_channels}")
        check_real("averaging_constant", averaging_constant, 0, 1, low_open=True, optional=True)
        self.bits, self.signed, self.symmetric = bits, signed, symmetric
        self.ch_axis = ch_axis
        if averaging_constant is not None:
            self.averaging_constant = float(averaging_constant)
        self.register_buffer("min_val", torch.full((num_channels,), float("inf")))
        self.register_buffer("max_val", torch.full((num_channels,), float("-inf")))

    def _batch_extremes(self, x):
        """(min, max) of x over the reduced dimensions: 0-d per tensor, (C,) per channel."""
        x = x.detach().to(self.min_val.dtype)
        if not self.per_channel:
            return torch.aminmax(x)  # 0-d: broadcasts against the (1,) buffers
        self._check_channels(x)
        return torch.aminmax(x.movedim(self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1), dim=1)

    def _check_channels(self, x):
        if x.shape[self.ch_axis] != self.min_val.numel():
            raise ValueError(
                f"observer expects {self.min_val.numel()} channels along axis {self.ch_axis}, "
                f"got input of shape {tuple(x.shape)}"
            )

    def forward(self, x):
        """Update the statistics with ``x`` (an empty x is ignored) and return x unchanged."""
        if x.numel() == 0:
            return x
        lo, hi = self._batch_extremes(x)
        if self.averaging_constant is None:
            torch.minimum(lo, self.min_val, out=self.min_val)
            torch.maximum(hi, self.max_val, out=self.max_val)
        else:
            c = self.averaging_constant
            first = torch.isposinf(self.min_val) & torch.isneginf(self.max_val)
            torch.where(first, lo, self.min_val + c * (lo - self.min_val), out=self.min_val)
            torch.where(first, hi, self.max_val + c * (hi - self.max_val), out=self.max_val)
        return x

    def calculate_qparams(self):
        """(scale, zero_point) of shape (num_channels,) from the current statistics."""
        return calculate_qparams(self.min_val, self.max_val, self.quant_min, self.quant_max, self.symmetric)

    @torch.no_grad()
    def observe_into(self, x, scale, zero_point):
        """Observe ``x`` and write ``calculate_qparams()`` into ``scale`` and ``zero_point`` in
        place: one call of the fused C++ kernel ``divqat::observe_qparams_`` (the same numbers,
        bit for bit) where it applies, else ``forward`` and ``calculate_qparams``."""
        if self._fusable(x, scale):
            axis = None
            if self.per_channel:
                self._check_channels(x)
                axis = self.ch_axis % x.dim()
            torch.ops.divqat.observe_qparams_(x, self.min_val, self.max_val, scale, zero_point,
                                              self.averaging_constant, self.quant_min, self.quant_max,
                                              self.symmetric, axis)
            return
        self(x)
        new_scale, new_zero_point = self.calculate_qparams()
        scale.copy_(new_scale)
        zero_point.copy_(new_zero_point)

    def _fusable(self, x, scale):
        """The fused kernel takes CPU tensors, float32 statistics and scale, in eager mode."""
        return (x.device.type == "cpu" and _backend.select(x.device) == "compiled"
                and self.min_val.dtype == torch.float32 and scale.dtype == torch.float32
                and scale.is_contiguous() and not torch.compiler.is_compiling())

    def has_observed(self):
        """Bool tensor: every channel has seen at least one value."""
        return torch.all(torch.isfinite(self.min_val) & torch.isfinite(self.max_val))

    def extra_repr(self):
        return (f"bits={self.bits}, signed={self.signed}, symmetric={self.symmetric}, "
                f"qrange=[{self.quant_min}, {self.quant_max}], channels={self.min_val.numel()}")


class MinMaxObserver(_Observer):
    """Per-tensor running min/max (``torch.ao.quantization.MinMaxObserver``)."""

    def __init__(self, bits=8, signed=False, symmetric=False):
        super().__init__(bits, signed, symmetric)


class MovingAverageMinMaxObserver(_Observer):
    """Per-tensor moving-average min/max (``torch.ao.quantization.MovingAverageMinMaxObserver``)."""

    def __init__(self, bits=8, signed=False, symmetric=False, averaging_constant=0.01):
        super().__init__(bits, signed, symmetric, averaging_constant=averaging_constant)


class PerChannelMinMaxObserver(_Observer):
    """Running min/max per channel along ``ch_axis`` (``torch.ao.quantization.PerChannelMinMaxObserver``)."""

    per_channel = True

    def __init__(self, num_channels, bits=8, signed=True, symmetric=True, ch_axis=0):
        super().__init__(bits, signed, symmetric, ch_axis, num_channels)


class MovingAveragePerChannelMinMaxObserver(_Observer):
    """Moving-average min/max per channel
    (``torch.ao.quantization.MovingAveragePerChannelMinMaxObserver``)."""

    per_channel = True

    def __init__(self, num_channels, bits=8, signed=True, symmetric=True, ch_axis=0, averaging_constant=0.01):
        super().__init__(bits, signed, symmetric, ch_axis, num_channels, averaging_constant)
