"""Quantization-aware training and integer conversion (docs/science.md §2).

    prepared = prepare_qat(model, get_qconfig(weight_bits=8, act_bits=8))   # fx: fold conv-bn-relu, fake quant
    ... train prepared; for the last epochs freeze_bn(prepared), freeze_observers(prepared) ...
    int8 = convert(prepared, example_input)      # Int8Model: ONNX Runtime QLinearConv/QLinearAdd/...
    save_int8(int8, "model_int8.onnx"); int8 = load_int8("model_int8.onnx")

Modules: observers (min/max statistics -> scale, zero point), fake_quantize (FakeQuantize, LSQ),
qconfig (presets), qat_modules (folded QAT layers), prepare (the fx pass), phases (switches,
calibration), onnx_export (the integer graph), int8_model (Int8Model, save/load), convert.
"""
from divqat.quant import onnx_symbolic
from divqat.quant.convert import convert
from divqat.quant.fake_quantize import FakeQuantize
from divqat.quant.int8_model import Int8Model, load_int8, save_int8
from divqat.quant.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    calculate_qparams,
    quant_range,
)
from divqat.quant.phases import (
    calibrate,
    disable_fake_quant,
    enable_fake_quant,
    enable_observers,
    freeze_bn,
    freeze_observers,
)
from divqat.quant.prepare import is_prepared, prepare_qat
from divqat.quant.qat_modules import QATAdd, QATAvgPool2d, QATConv2d, QATLinear
from divqat.quant.qconfig import QConfig, QuantSpec, default_qconfig, get_qconfig

onnx_symbolic.register()  # torch.onnx.export(prepared_model, ..., dynamo=False) works

__all__ = [
    "prepare_qat", "convert", "Int8Model", "save_int8", "load_int8", "is_prepared",
    "QConfig", "QuantSpec", "default_qconfig", "get_qconfig",
    "FakeQuantize", "MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver", "calculate_qparams", "quant_range",
    "QATConv2d", "QATLinear", "QATAdd", "QATAvgPool2d",
    "freeze_bn", "freeze_observers", "enable_observers", "disable_fake_quant", "enable_fake_quant", "calibrate",
]
