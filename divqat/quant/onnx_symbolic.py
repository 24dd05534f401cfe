"""``torch.onnx.export`` of a prepared (fake-quantized) model: ONNX for ``divqat::fake_quant``.

The compiled op is exported as the fake quantizer's own float formula (docs/science.md §2),

    y = (Clip(Round(x * (1 / s)) + z, qmin, qmax) - z) * s

with ONNX Round (half to even, as the kernels) and ``s``, ``z`` reshaped to broadcast along the
channel axis for per-channel quantizers, so the exported graph computes the eval-mode model's
values for every bit width. Registered for the TorchScript exporter (``dynamo=False``; the
default dynamo exporter needs the onnxscript package, which divqat does not install). For the
integer model (QLinearConv, ...) use :func:`divqat.quant.convert` instead.
"""
import torch
from torch.onnx import symbolic_helper

__all__ = ["OPSET", "register"]

OPSET = 13  # per-axis broadcasting and Round (opset 11) with Clip taking tensor bounds (opset 11)
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _const(g, value):
    return g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32))


def _fake_quant_symbolic(g, x, scale, zero_point, quant_min, quant_max, axis, grad_factor):
    qmin = symbolic_helper._maybe_get_const(quant_min, "i")
    qmax = symbolic_helper._maybe_get_const(quant_max, "i")
    scale = g.op("Cast", scale, to_i=_FLOAT)
    zero = g.op("Round", g.op("Cast", zero_point, to_i=_FLOAT))
    zero = g.op("Clip", zero, _const(g, float(qmin)), _const(g, float(qmax)))
    if not symbolic_helper._is_none(axis):
        rank = symbolic_helper._get_tensor_rank(x)
        if rank is None:
            raise ValueError("torch.onnx.export: a per-channel fake quantizer needs an input of known rank")
        ch = symbolic_helper._maybe_get_const(axis, "i") % rank
        shape = g.op("Constant", value_t=torch.tensor([-1 if d == ch else 1 for d in range(rank)]))
        scale, zero = g.op("Reshape", scale, shape), g.op("Reshape", zero, shape)
    q = g.op("Add", g.op("Round", g.op("Mul", x, g.op("Reciprocal", scale))), zero)
    q = g.op("Clip", q, _const(g, float(qmin)), _const(g, float(qmax)))
    return g.op("Mul", g.op("Sub", q, zero), scale)


def register():
    """Register the symbolic for the compiled and the Triton op names (idempotent)."""
    for name in ("divqat::fake_quant", "divqat_triton::fake_quant"):
        torch.onnx.register_custom_op_symbolic(name, _fake_quant_symbolic, OPSET)
