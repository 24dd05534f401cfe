"""QAT modules that ``prepare_qat`` puts in place of float layers. Each owns the fake quantizer
of its output (``output_fake_quant``), applied after the fused ReLU, so one module is one
integer kernel of the converted model (QLinearConv, QLinearAdd, QLinearAveragePool).

Conv-BN folding (Krishnamoorthi, "Quantizing deep convolutional networks for efficient
inference: a whitepaper", 2018, §3.2; Jacob et al., CVPR 2018, §3.2), exactly as
``torch.ao.nn.intrinsic.qat.ConvBn2d`` computes it (its default single-pass approximation)::

    sigma  = sqrt(running_var + eps),   f = gamma / sigma             (per output channel)
    y_conv = conv(x, FQ_w(W * f)) / f  (+ conv bias)     computed as conv(x, FQ_w(W * f) / f)
    y      = BN(y_conv)               training: batch statistics, running statistics updated
                                      eval:     running statistics
           -> in eval mode y = conv(x, FQ_w(W_fold)) + b_fold with
              W_fold = W * f,  b_fold = beta + (b - running_mean) * f

so the weight that is fake-quantized during training is the folded weight the integer model
stores. In eval mode (with fake quantization on, given the input quantizer's scale s1, which
prepare_qat wires in) QATConv2d and QATLinear compute exactly what the integer model computes
(Jacob et al. 2018, §2.4: the bias is int32 on the grid s1 * s2)::

    y = conv(x, FQ_w(W_fold)) + round(b_fold / (s1 * s2)) * (s1 * s2)

so the fake-quantized model and the converted integer model agree up to float-vs-integer
accumulation. Training keeps the float bias (as torch.ao and Jacob et al. §3 do).

``freeze_bn_stats`` stops the running-statistics update (and uses them) for the last epochs
(the switch is saved in the state dict). A BatchNorm2d that follows no convolution is treated
as a depthwise 1x1 convolution with fixed unit weights followed by that BatchNorm, which folds
the same way.
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QATConv2d", "QATLinear", "QATAdd", "QATAvgPool2d"]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class _QuantizedOutput(nn.Module):
    """A module whose result goes through the fused ReLU (if any) and ``output_fake_quant``."""

    def _output(self, y):
        """``y`` is a fresh tensor no backward formula needs (the output of BN, conv, linear or
        add), so the ReLU runs in place: one pass over it, no new buffer."""
        return self.output_fake_quant(F.relu(y, inplace=True) if self.relu else y)


class _WeightedQAT(_QuantizedOutput):
    """What QATConv2d and QATLinear share: the int32 bias of the integer model."""

    def integer_bias(self, input_scale):
        """(codes, step): the folded bias as int32 codes (float tensor) on the grid
        step = s1 * s2 (per output channel), codes = round(b_fold / step)."""
        step = input_scale.detach().float() * self.weight_fake_quant.scale.detach().float()
        codes = torch.round(self.folded_bias().detach().float() / step).clamp(_INT32_MIN, _INT32_MAX)
        return codes, step

    def _integer_eval(self, input_scale):
        return input_scale is not None and not self.training and self.weight_fake_quant.fake_quant_enabled


class QATConv2d(_WeightedQAT):
    """Conv2d (+ folded BatchNorm2d) (+ ReLU) with a fake-quantized (folded) weight and output."""

    def __init__(self, conv, bn, relu, weight_fake_quant, output_fake_quant):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"prepare_qat supports Conv2d with explicit zero padding, got {conv}")
        if bn is not None and (not bn.affine or not bn.track_running_stats):
            raise ValueError(f"prepare_qat needs BatchNorm2d(affine=True, track_running_stats=True), got {bn}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation, self.groups = conv.padding, conv.dilation, conv.groups
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=conv.weight.requires_grad)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.bn = None if bn is None else _copy_bn(bn)
        self.relu = bool(relu)
        self.freeze_bn = False
        self.weight_fake_quant = weight_fake_quant
        self.output_fake_quant = output_fake_quant

    @classmethod
    def from_batchnorm(cls, bn, relu, weight_fake_quant, output_fake_quant):
        """A standalone BatchNorm2d (+ ReLU) as a fixed identity depthwise conv followed by it."""
        c = bn.num_features
        conv = nn.Conv2d(c, c, 1, groups=c, bias=False)
        conv.weight.data.fill_(1.0)
        conv.weight.requires_grad_(False)
        return cls(conv, bn, relu, weight_fake_quant, output_fake_quant)

    def _conv(self, x, weight):
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _bn_factor(self):
        return self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)

    def _weight_and_factor(self):
        """(W, None) without BN, else (W * f, f) with f = gamma / sigma shaped (C_out, 1, 1, 1)."""
        if self.bn is None:
            return self.weight, None
        factor = self._bn_factor().reshape(-1, 1, 1, 1)
        return self.weight * factor, factor

    def quantized_weight_input(self):
        """The float weight that ``weight_fake_quant`` sees: W, or W * gamma / sigma with BN."""
        return self._weight_and_factor()[0]

    def folded_bias(self):
        """b_fold of the module docstring (running statistics), or the conv bias (zeros if none)."""
        bias = self.bias if self.bias is not None else torch.zeros(self.out_channels, device=self.weight.device)
        if self.bn is None:
            return bias
        return self.bn.bias + (bias - self.bn.running_mean) * self._bn_factor()

    def forward(self, x, input_scale=None):
        weight, factor = self._weight_and_factor()
        w = self.weight_fake_quant(weight)
        if self._integer_eval(input_scale):
            codes, step = self.integer_bias(input_scale)
            y = self._conv(x, w) + (codes * step).reshape(1, -1, 1, 1)
        elif factor is None:
            y = self._add_bias(self._conv(x, w))
        else:
            # conv(x, FQ_w(W * f)) / f, the division applied to the weight (linear in it): one
            # pass over C_out * C_in * k * k weights instead of two over the N * C_out * H * W
            # activations (forward and backward) and a reduction for the gradient of f
            y = self.bn(self._add_bias(self._conv(x, w / factor)))
        return self._output(y)

    def _add_bias(self, y):
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1)

    def freeze_bn_stats(self):
        """Use (and stop updating) the BN running statistics, whatever the training mode."""
        if self.bn is not None:
            self.freeze_bn = True
            self.bn.eval()
        return self

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_bn:
            self.bn.eval()
        return self

    def get_extra_state(self):
        return torch.tensor([self.freeze_bn])  # a tensor for torch.onnx.export, as FakeQuantize's

    def set_extra_state(self, state):
        if bool(state["freeze_bn"] if isinstance(state, dict) else state[0]):
            self.freeze_bn_stats()

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, bn={self.bn is not None}, relu={self.relu}")


def _copy_bn(bn):
    copy = nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum, device=bn.weight.device)
    copy.load_state_dict(bn.state_dict())
    copy.train(bn.training)
    return copy


class QATLinear(_WeightedQAT):
    """Linear (+ ReLU) with a fake-quantized weight and output."""

    def __init__(self, linear, relu, weight_fake_quant, output_fake_quant):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.relu = bool(relu)
        self.weight_fake_quant = weight_fake_quant
        self.output_fake_quant = output_fake_quant

    def quantized_weight_input(self):
        return self.weight

    def folded_bias(self):
        return self.bias if self.bias is not None else torch.zeros(self.out_features, device=self.weight.device)

    def forward(self, x, input_scale=None):
        bias = self.bias
        if self._integer_eval(input_scale):
            codes, step = self.integer_bias(input_scale)
            bias = codes * step
        y = F.linear(x, self.weight_fake_quant(self.weight), bias)
        return self._output(y)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, relu={self.relu}"


class QATAdd(_QuantizedOutput):
    """Elementwise sum of two fake-quantized tensors (+ ReLU), output fake-quantized."""

    def __init__(self, relu, output_fake_quant):
        super().__init__()
        self.relu = bool(relu)
        self.output_fake_quant = output_fake_quant

    def forward(self, a, b):
        y = a + b
        return self._output(y)

    def extra_repr(self):
        return f"relu={self.relu}"


class QATAvgPool2d(nn.Module):
    """Average pooling (AvgPool2d, or AdaptiveAvgPool2d to 1x1) with its own output quantizer.

    The mean of quantized values is off the grid, so it is re-quantized with its own observed
    range (an integer model runs QLinearAveragePool / QLinearGlobalAveragePool).
    """

    def __init__(self, pool, output_fake_quant):
        super().__init__()
        if isinstance(pool, nn.AdaptiveAvgPool2d):
            size = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
            if tuple(size) != (1, 1):
                raise ValueError(f"prepare_qat supports AdaptiveAvgPool2d only with output size 1, got {pool}")
        elif pool.divisor_override is not None:
            raise ValueError(f"prepare_qat does not support AvgPool2d(divisor_override=...), got {pool}")
        self.pool = pool
        self.output_fake_quant = output_fake_quant

    @property
    def is_global(self):
        return isinstance(self.pool, nn.AdaptiveAvgPool2d)

    def forward(self, x):
        return self.output_fake_quant(self.pool(x))
