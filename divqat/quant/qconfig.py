"""Quantization configurations: how weights and activations are fake-quantized.

The default matches PyTorch's x86/fbgemm QAT configuration
(``torch.ao.quantization.get_default_qat_qconfig("x86")``) for weights: qint8 per-output-channel
symmetric, range [-128, 127] (the full signed range, not the "restricted" [-127, 127]; zero point
0), moving-average per-channel min/max observer with averaging constant 0.01. Activations are
quint8 per-tensor affine with a moving-average min/max observer (averaging constant 0.01) over
the full range [0, 255]. PyTorch's x86 config sets ``reduce_range=True`` for activations
([0, 127]) to avoid the int16 saturation of the VPMADDUBSW instruction on CPUs without VNNI;
docs/science.md §2 fixes the full range instead (ONNX Runtime on VNNI CPUs, AVX512-VNNI/AVX-VNNI,
accumulates u8 x s8 products in int32 without saturation).

Scale of the symmetric weights: the observers' formula max(|m|, |M|) / 127.5 (that of
``torch.ao.quantization.FakeQuantize`` with ``MovingAveragePerChannelMinMaxObserver``, and of
PyTorch's conversion). PyTorch's x86 preset wraps the observer in ``FusedMovingAvgObsFakeQuantize``
whose C++ kernel picks max(-m / 128, M / 127) instead (at most 0.4% apart); divqat keeps the
observer formula so observers, fake quantization and conversion share one definition.

Lower bit widths (2..8) keep the same schemes: b-bit weights use [-2^(b-1), 2^(b-1) - 1],
b-bit activations [0, 2^b - 1]; the converted integer model stores them in int8/uint8.
"""
from dataclasses import asdict, dataclass

from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    quant_range,
)

__all__ = ["QuantSpec", "QConfig", "default_qconfig", "get_qconfig"]


@dataclass(frozen=True)
class QuantSpec:
    """One quantizer: bit width, scheme and observer.

    ``averaging_constant=None`` selects a running min/max observer, a float in (0, 1] the
    moving-average observer. ``per_channel`` quantizes along axis 0 (output channels of a
    weight). ``learnable`` turns on LSQ (see divqat.quant.fake_quantize).
    """

    bits: int = 8
    signed: bool = False
    symmetric: bool = False
    per_channel: bool = False
    averaging_constant: float = 0.01
    learnable: bool = False

    def __post_init__(self):
        quant_range(self.bits, self.signed)
        if self.symmetric and not self.signed:
            raise ValueError("symmetric quantization needs signed=True")
        if self.averaging_constant is not None and not 0.0 < self.averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must lie in (0, 1] or be None, got {self.averaging_constant!r}")

    def make(self, num_channels=1):
        """A fresh FakeQuantize for a tensor with ``num_channels`` output channels."""
        kw = dict(bits=self.bits, signed=self.signed, symmetric=self.symmetric)
        moving = self.averaging_constant is not None
        if self.per_channel:
            cls = MovingAveragePerChannelMinMaxObserver if moving else PerChannelMinMaxObserver
            kw["num_channels"] = num_channels
        else:
            cls = MovingAverageMinMaxObserver if moving else MinMaxObserver
        if moving:
            kw["averaging_constant"] = self.averaging_constant
        return FakeQuantize(cls(**kw), learnable=self.learnable)


@dataclass(frozen=True)
class QConfig:
    """Weight and activation quantizers of a model; ``to_dict``/``from_dict`` for config files."""

    weight: QuantSpec
    activation: QuantSpec

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(weight=QuantSpec(**d["weight"]), activation=QuantSpec(**d["activation"]))


def get_qconfig(weight_bits=8, act_bits=8, learnable=False):
    """Per-channel symmetric signed ``weight_bits`` weights, per-tensor affine unsigned
    ``act_bits`` activations, moving-average min/max observers (c = 0.01); LSQ if ``learnable``."""
    for name, bits in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        try:
            quant_range(bits, True)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return QConfig(
        weight=QuantSpec(bits=weight_bits, signed=True, symmetric=True, per_channel=True, learnable=learnable),
        activation=QuantSpec(bits=act_bits, signed=False, symmetric=False, per_channel=False, learnable=learnable),
    )


def default_qconfig(bits=8):
    """PyTorch x86 QAT defaults at ``bits`` for weights and activations (see module docstring)."""
    return get_qconfig(weight_bits=bits, act_bits=bits)
