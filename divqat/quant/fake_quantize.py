"""FakeQuantize: an observer plus ``divqat.ops.fake_quant`` with the current scale/zero point.

Forward (docs/science.md §2; Jacob et al., CVPR 2018)::

    if observing:  observer(x);  (scale, zero_point) <- observer.calculate_qparams()   (one fused call)
    if fake-quant enabled:  y = (clamp(round(x / scale) + z, qmin, qmax) - z) * scale
                            (straight-through gradient inside the range)

Observing happens only while the module is in training mode and its observer is enabled, so
evaluating a model never changes its quantization parameters; ``calibrate`` (divqat.quant.prepare)
turns observation on in eval mode for post-training calibration.

Learnable quantization (LSQ: Esser et al., "Learned Step Size Quantization", ICLR 2020): scale
and zero point are Parameters, initialised from the observer on the first observed batch, after
which the observer switches itself off and the step size is trained with the gradient of
docs/science.md §2 scaled by the LSQ factor

    g = 1 / sqrt(N * qmax)

where N is the number of elements sharing one scale (``x.numel()`` per tensor, ``x.numel() / C``
per channel) and qmax the upper end of the integer range (LSQ's Q_P).

Scale and zero point stay tensors (buffers, or Parameters when learnable); nothing in forward
reads a tensor value on the host. The observer/fake-quant switches are Python flags saved in the
state dict as extra state, so a reloaded model resumes in the same phase.
"""
import math

import torch
from torch import nn

from divqat.ops import fake_quant

__all__ = ["FakeQuantize"]


class FakeQuantize(nn.Module):
    """Fake quantization driven by ``observer`` (any divqat.quant.observers observer).

    Args:
        observer: the range observer; its bit width, signedness, scheme and channel axis define
            the quantizer.
        learnable: LSQ — scale and (for affine schemes) zero point become trainable Parameters.
    """

    def __init__(self, observer, learnable=False):
        super().__init__()
        self.observer = observer
        self.quant_min, self.quant_max = observer.quant_min, observer.quant_max
        self.axis = observer.ch_axis if observer.per_channel else None
        self.learnable = bool(learnable)
        n = observer.min_val.numel()
        scale, zero_point = torch.ones(n), torch.zeros(n, dtype=torch.int32)
        if self.learnable:
            self.scale = nn.Parameter(scale)
            # a symmetric scheme keeps its zero point fixed at 0
            self.zero_point = nn.Parameter(zero_point.float(), requires_grad=not observer.symmetric)
        else:
            self.register_buffer("scale", scale)
            self.register_buffer("zero_point", zero_point)
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self.calibrating = False

    @property
    def bits(self):
        return self.observer.bits

    def forward(self, x):
        if self.observer_enabled and (self.training or self.calibrating):
            self.observer.observe_into(x, self.scale, self.zero_point)
            if self.learnable:
                self.observer_enabled = False
        if not self.fake_quant_enabled:
            return x
        grad_factor = 1.0
        if self.learnable:
            self._keep_scale_positive()
            per_scale = x.numel() // self.scale.numel()
            grad_factor = 1.0 / math.sqrt(max(per_scale, 1) * self.quant_max)
        return fake_quant(x, self.scale, self.zero_point, self.quant_min, self.quant_max,
                          axis=self.axis, grad_factor=grad_factor)

    @torch.no_grad()
    def _keep_scale_positive(self):
        """A learned scale can step through zero; clamp it to float32 eps in place, as
        PyTorch's ``_LearnableFakeQuantize`` does, so fake quantization stays defined."""
        self.scale.clamp_(min=torch.finfo(torch.float32).eps)

    @torch.no_grad()
    def integer_qparams(self):
        """(scale float32, zero_point int64) as used by the forward pass: a learned zero point is
        rounded half to even and clamped to [qmin, qmax], as ``fake_quant`` does."""
        zero_point = torch.round(self.zero_point.float()).clamp(self.quant_min, self.quant_max)
        return self.scale.detach().float().clone(), zero_point.long()

    def get_extra_state(self):
        # a bool tensor, not a dict: torch.onnx.export (torch.jit._unique_state_dict) detaches
        # every state-dict entry
        return torch.tensor([self.observer_enabled, self.fake_quant_enabled])

    def set_extra_state(self, state):
        if isinstance(state, dict):  # state dicts saved before the tensor form
            state = [state["observer_enabled"], state["fake_quant_enabled"]]
        self.observer_enabled, self.fake_quant_enabled = (bool(v) for v in state)

    def extra_repr(self):
        return (f"qrange=[{self.quant_min}, {self.quant_max}], axis={self.axis}, learnable={self.learnable}, "
                f"observer_enabled={self.observer_enabled}, fake_quant_enabled={self.fake_quant_enabled}")
