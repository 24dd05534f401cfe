"""``convert``: a trained QAT model (from ``prepare_qat``) to a real integer model on CPU.

The integer graph is built by divqat.quant.onnx_export (QLinearConv / QLinearAdd / ... with
the folded weights and the observed scales, Jacob et al. 2018) and run by ONNX Runtime's
integer kernels (divqat.quant.int8_model). ONNX Runtime was chosen over PyTorch's x86
quantized engine because its int8 QOperator model is the edge-deployment format and the file
is self-contained (no Python model code needed to load it).

Verified (tests/test_quant_convert.py): after ONNX Runtime's graph optimizations the graph runs
QLinearConv (every conv and linear layer), QLinearAdd, QLinearGlobalAveragePool /
QLinearAveragePool and uint8 MaxPool; no float Conv, Gemm or MatMul remains. Float arithmetic is
left only at the boundaries (Normalize and the input quantization, the final dequantization).
The same test checks that the integer model's argmax agrees with the fake-quantized model's on
at least 99% of MNIST test images after a short LeNet-5 QAT (docs/science.md §2).
"""
import copy

import torch
from torch import fx

from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.int8_model import Int8Model, with_metadata
from divqat.quant.onnx_export import build_int8_onnx

__all__ = ["convert"]


def _check_prepared(model):
    if not isinstance(model, fx.GraphModule) or not any(isinstance(m, FakeQuantize) for m in model.modules()):
        raise ValueError("prepared_model: convert needs a model returned by divqat.quant.prepare_qat "
                         "(and trained or calibrated); got a model without fake quantizers")
    for name, m in model.named_modules():
        if not isinstance(m, FakeQuantize):
            continue
        if not m.fake_quant_enabled:
            raise ValueError(f"prepared_model: fake quantization is disabled at {name!r}; "
                             "call enable_fake_quant(model) before converting")
        if not bool(m.observer.has_observed()):
            raise RuntimeError(f"prepared_model: quantizer {name!r} has observed no data; train the model "
                               "(or run divqat.quant.calibrate) before converting")


def convert(prepared_model, example_input, batch_size=256):
    """The Int8Model of ``prepared_model`` for inputs shaped like ``example_input``.

    Args:
        prepared_model: output of ``prepare_qat`` after QAT (or calibration); not modified.
        example_input: a float tensor (N, C, H, W) of images in [0, 1]; fixes C, H, W (the
            batch size of the integer model stays dynamic) and checks the graph's shapes.
        batch_size: chunk size the Int8Model uses at inference.
    """
    _check_prepared(prepared_model)
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4 or len(example_input) == 0:
        raise ValueError("example_input must be a non-empty float tensor of shape (N, C, H, W)")
    gm = copy.deepcopy(prepared_model).cpu().eval()
    proto = build_int8_onnx(gm, example_input.detach().to("cpu", torch.float32))
    proto = with_metadata(proto, getattr(prepared_model, "arch", None), getattr(prepared_model, "meta", None))
    return Int8Model(proto.SerializeToString(), batch_size=batch_size)
