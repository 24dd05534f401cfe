"""Build an integer ONNX model (QOperator format) from a prepared, trained QAT model.

Integer-arithmetic-only inference (Jacob et al., "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, §2): with real value
r = s (q - z), a layer with input (s1, z1), per-output-channel weights (s2[c], z2 = 0) and
output (s3, z3) computes in integers

    acc[c] = sum_k (q1 - z1) * q2[c, k] + bias_q[c],     bias_q[c] = round(b[c] / (s1 * s2[c]))  (int32)
    q3[c]  = clamp(round(acc[c] * s1 * s2[c] / s3) + z3, qmin, qmax)

which ONNX Runtime runs as QLinearConv (u8 activations x s8 weights, int32 accumulation).
The graph is built directly with ``onnx.helper``, one integer node per QAT module:

    input FakeQuantize     -> Mul(1/s) + QuantizeLinear(scale 1, z)   (exactly round(x * (1/s)) + z)
    QATConv2d              -> QLinearConv (BN folded: W_fold, b_fold of qat_modules)
    QATLinear              -> Unsqueeze + QLinearConv 1x1 + Flatten
    QATAdd                 -> com.microsoft QLinearAdd
    QATAvgPool2d           -> com.microsoft QLinearGlobalAveragePool / QLinearAveragePool
    MaxPool2d, Flatten     -> MaxPool, Flatten on uint8 (order preserving, same scale)
    ReLU (not fused)       -> Clip(q, min=z) on uint8
    output                 -> DequantizeLinear (float logits)

The quantized weights are computed with the fake quantizer's own formula
q = clamp(round(w * (1/s)) + z, qmin, qmax), so they are the values the QAT model trained with
(b-bit weights are stored as int8 values inside [-2^(b-1), 2^(b-1) - 1]). A fused ReLU is
the clamp at the output zero point (a ReLU output's observed minimum is 0, so z3 = 0; a learned
z3 > 0 gets an explicit Clip); activations of fewer than 8 bits get a Clip to [qmin, qmax].
Normalize runs in float before the first quantizer. The bias codes come from the QAT module's
own ``integer_bias`` (the eval-mode fake-quantized model uses the same int32 bias), so the two
models differ only where float and integer accumulation round a value to different codes,
which the shared bias rounding makes rare.
"""
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from divqat.models.layers import Normalize
from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.onnx_graph import GraphBuilder
from divqat.quant.prepare import called_module, is_passthrough
from divqat.quant.qat_modules import QATAdd, QATAvgPool2d, QATConv2d, QATLinear
from divqat.reference.fake_quant import quantize_codes

__all__ = ["build_int8_onnx", "OPSET", "INPUT_NAME", "OUTPUT_NAME"]

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class _Value:
    """An ONNX value: its name and, when it holds uint8 codes, its (scale, zero_point)."""

    def __init__(self, name, qparams=None):
        self.name, self.qparams = name, qparams


class _GraphBuilder(GraphBuilder):
    def qparam_inputs(self, qparams):
        scale, zero_point = qparams
        return [self.const("scale", np.float32(scale)), self.const("zero_point", np.uint8(zero_point))]


def _act_qparams(fq):
    """(scale, zero_point) of a per-tensor activation quantizer as Python numbers."""
    if fq.axis is not None or fq.quant_min < 0 or fq.quant_max > 255:
        raise ValueError(f"convert supports unsigned per-tensor activation quantizers, got {fq}")
    scale, zero_point = fq.integer_qparams()
    return float(scale.reshape(())), int(zero_point.reshape(()))


def _clip_codes(b, value, fq, relu):
    """Clip uint8 codes to the quantizer's range (and to z for a fused ReLU) when needed."""
    lo = value.qparams[1] if relu else fq.quant_min
    if lo <= 0 and fq.quant_max >= 255:
        return value
    out = b.node("Clip", [value.name, b.const("lo", np.uint8(lo)), b.const("hi", np.uint8(fq.quant_max))], "clip")
    return _Value(out, value.qparams)


def _requantize_fq(b, value, fq):
    """A standalone (input) FakeQuantize: float -> uint8 codes, round(x * (1/s)) + z."""
    value = _dequantized(b, value)
    scale, zero_point = _act_qparams(fq)
    inv = torch.reciprocal(torch.tensor(scale, dtype=torch.float32)).numpy()
    scaled = b.node("Mul", [value.name, b.const("inv_scale", inv)], "scaled")
    q = b.node("QuantizeLinear", [scaled, b.const("one", np.float32(1.0)), b.const("zp", np.uint8(zero_point))],
               "quantized")
    return _clip_codes(b, _Value(q, (scale, zero_point)), fq, relu=False)


def _dequantized(b, value):
    if value.qparams is None:
        return value
    out = b.node("DequantizeLinear", [value.name] + b.qparam_inputs(value.qparams), "dequantized")
    return _Value(out)


def _integer_weight(m):
    """(int8 weight, float32 per-channel scale) of a QATConv2d/QATLinear."""
    fq = m.weight_fake_quant
    w = m.quantized_weight_input().detach().float()
    scale, zero_point = fq.integer_qparams()
    if fq.axis is None:
        scale, zero_point = scale.expand(w.shape[0]), zero_point.expand(w.shape[0])
    elif fq.axis != 0:
        raise ValueError(f"convert needs weights quantized per output channel (axis 0), got axis={fq.axis}")
    if not (fq.quant_min >= -128 and fq.quant_max <= 127 and torch.all(zero_point == 0)):
        raise ValueError("convert needs signed symmetric weight quantizers (int8 range, zero point 0)")
    q = quantize_codes(w, scale, zero_point, fq.quant_min, fq.quant_max, axis=0)
    return q.to(torch.int8).numpy(), scale.numpy().astype(np.float32)


def _qlinear_conv(b, x, m, conv_attrs):
    """QLinearConv of uint8 ``x`` with module ``m``'s folded integer weight and int32 bias."""
    q_w, s_w = _integer_weight(m)
    q_w = q_w.reshape(q_w.shape + (1,) * (4 - q_w.ndim))  # a Linear weight as a 1x1 kernel
    codes, _ = m.integer_bias(torch.tensor(x.qparams[0], dtype=torch.float32))
    q_b = codes.to(torch.int32).numpy()
    out_q = _act_qparams(m.output_fake_quant)
    inputs = [x.name, *b.qparam_inputs(x.qparams), b.const("w", q_w), b.const("w_scale", s_w),
              b.const("w_zero_point", np.zeros(len(s_w), np.int8)), *b.qparam_inputs(out_q), b.const("bias", q_b)]
    y = b.node("QLinearConv", inputs, "qconv", **conv_attrs)
    return _clip_codes(b, _Value(y, out_q), m.output_fake_quant, m.relu)


def _conv(b, x, m):
    pads = [int(p) for p in m.padding] * 2
    attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=pads,
                 dilations=list(m.dilation), group=m.groups)
    return _qlinear_conv(b, x, m, attrs)


def _linear(b, x, m, shape):
    if len(shape) != 2:
        raise ValueError(f"convert supports Linear on 2-D inputs (N, features), got input shape {tuple(shape)}")
    x4 = _Value(b.node("Unsqueeze", [x.name, b.const("axes", np.array([2, 3], np.int64))], "as_image"), x.qparams)
    y = _qlinear_conv(b, x4, m, dict(kernel_shape=[1, 1]))
    return _Value(b.node("Flatten", [y.name], "flat", axis=1), y.qparams)


def _add(b, x, y, m):
    out_q = _act_qparams(m.output_fake_quant)
    inputs = [x.name, *b.qparam_inputs(x.qparams), y.name, *b.qparam_inputs(y.qparams), *b.qparam_inputs(out_q)]
    out = b.node("QLinearAdd", inputs, "qadd", domain="com.microsoft")
    return _clip_codes(b, _Value(out, out_q), m.output_fake_quant, m.relu)


def _avg_pool(b, x, m):
    out_q = _act_qparams(m.output_fake_quant)
    inputs = [x.name, *b.qparam_inputs(x.qparams), *b.qparam_inputs(out_q)]
    if m.is_global:
        out = b.node("QLinearGlobalAveragePool", inputs, "qgap", domain="com.microsoft", channels_last=0)
    else:
        p = m.pool
        pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
        out = b.node("QLinearAveragePool", inputs, "qavgpool", domain="com.microsoft",
                     kernel_shape=pair(p.kernel_size), strides=pair(p.stride or p.kernel_size),
                     pads=pair(p.padding) * 2, ceil_mode=int(p.ceil_mode), count_include_pad=int(p.count_include_pad))
    return _clip_codes(b, _Value(out, out_q), m.output_fake_quant, relu=False)


def _passthrough(b, gm, node, x):
    m = called_module(gm, node)
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return x
    if isinstance(m, nn.MaxPool2d):
        pair = lambda v: [v, v] if isinstance(v, int) else list(v)  # noqa: E731
        out = b.node("MaxPool", [x.name], "maxpool", kernel_shape=pair(m.kernel_size),
                     strides=pair(m.stride or m.kernel_size), pads=pair(m.padding) * 2,
                     dilations=pair(m.dilation), ceil_mode=int(m.ceil_mode))
        return _Value(out, x.qparams)
    if isinstance(m, nn.Flatten) or node.target in (torch.flatten, "flatten"):
        return _Value(b.node("Flatten", [x.name], "flat", axis=1), x.qparams)
    if x.qparams is None:
        return _Value(b.node("Relu", [x.name], "relu"))
    zp = np.uint8(x.qparams[1])
    return _Value(b.node("Clip", [x.name, b.const("zp", zp), b.const("max", np.uint8(255))], "relu"), x.qparams)


def _normalize(b, x, m):
    x = _dequantized(b, x)
    centred = b.node("Sub", [x.name, b.const("mean", m.mean.detach().float().cpu().numpy())], "centred")
    return _Value(b.node("Div", [centred, b.const("std", m.std.detach().float().cpu().numpy())], "normalized"))


def build_int8_onnx(gm, example_input):
    """The ONNX ModelProto of prepared ``gm`` (a CPU copy in eval mode, observers trained) for
    inputs shaped like ``example_input`` (N, C, H, W); the batch dimension is dynamic."""
    with torch.no_grad():
        ShapeProp(gm).propagate(example_input)
    b, env, out_shape = _GraphBuilder(), {}, None
    for node in gm.graph.nodes:
        m = called_module(gm, node)
        if node.op == "get_attr":  # the input scales prepare_qat wires into QATConv2d/QATLinear
            continue
        args = [env[a] for a in node.args if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
        if node.op == "placeholder":
            env[node] = _Value(INPUT_NAME)
        elif node.op == "output":
            result = _dequantized(b, args[0])
            out_shape = ["batch", *node.args[0].meta["tensor_meta"].shape[1:]]
            b.nodes.append(helper.make_node("Identity", [result.name], [OUTPUT_NAME], name=OUTPUT_NAME))
        elif isinstance(m, FakeQuantize):
            env[node] = _requantize_fq(b, args[0], m)
        elif isinstance(m, QATConv2d):
            env[node] = _conv(b, args[0], m)
        elif isinstance(m, QATLinear):
            env[node] = _linear(b, args[0], m, node.args[0].meta["tensor_meta"].shape)
        elif isinstance(m, QATAdd):
            env[node] = _add(b, args[0], args[1], m)
        elif isinstance(m, QATAvgPool2d):
            env[node] = _avg_pool(b, args[0], m)
        elif isinstance(m, Normalize):
            env[node] = _normalize(b, args[0], m)
        elif is_passthrough(gm, node):
            env[node] = _passthrough(b, gm, node, args[0])
        else:
            raise ValueError(f"convert: unsupported operation {node.format_node()} "
                             "(was the model built by prepare_qat?)")
    _, c, h, w = example_input.shape
    graph = helper.make_graph(
        b.nodes, "divqat_int8",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)],
        initializer=b.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="divqat")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
