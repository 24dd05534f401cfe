"""convert: the ONNX Runtime integer model against the fake-quantized model it came from
(docs/science.md §2: argmax agreement >= 99% on real MNIST after a short QAT fine-tune; logits within
a few output quantization steps on residual networks and at low bit widths), that ORT runs
integer kernels, the atomic save/load round trip, and bad inputs."""
import os

import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from test_quant_prepare import Functional

from divqat.data import load_tensors
from divqat.models import build_model, build_model_for
from divqat.quant import (
    Int8Model,
    calibrate,
    convert,
    disable_fake_quant,
    enable_fake_quant,
    freeze_bn,
    freeze_observers,
    get_qconfig,
    load_int8,
    prepare_qat,
    save_int8,
)


def _fit(model, x, y, opt, batch=100):
    model.train()
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _logit_step(prepared):
    """Output quantization step of the model's logits (the last quantized module)."""
    last = list(prepared.graph.nodes)[-1].args[0]
    return prepared.get_submodule(last.target).output_fake_quant.scale.item()


@pytest.fixture(scope="module")
def mnist_qat():
    """LeNet-5 trained one epoch on 2000 MNIST images, then QAT on 1000 of them, then 500 more
    with BN and observers frozen (the usual end of QAT). Returns (prepared in eval, test x, y)."""
    torch.manual_seed(0)
    x, y = load_tensors("mnist", "train", limit=2000)
    xt, yt = load_tensors("mnist", "test", limit=1000)
    model = build_model_for("lenet5", "mnist")
    _fit(model, x, y, torch.optim.Adam(model.parameters(), 3e-3))
    prepared = prepare_qat(model)
    opt = torch.optim.SGD(prepared.parameters(), 1e-3, momentum=0.9)
    _fit(prepared, x[:1000], y[:1000], opt)
    freeze_observers(freeze_bn(prepared))
    _fit(prepared, x[1000:1500], y[1000:1500], opt)
    return prepared.eval(), xt, yt


def test_mnist_int8_agrees_with_fake_quant(mnist_qat, tmp_path):
    prepared, xt, yt = mnist_qat
    with torch.no_grad():
        fq_logits = prepared(xt)
    int8 = convert(prepared, xt[:1], batch_size=300)
    logits = int8(xt)
    agreement = (logits.argmax(1) == fq_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.99
    assert (fq_logits.argmax(1) == yt).float().mean() > 0.8  # the QAT model learned something
    diff = (logits - fq_logits).abs() / _logit_step(prepared)
    assert diff.max() <= 1.001 and (diff > 1e-3).float().mean() <= 0.01  # same int32 bias: near bit-exact
    assert int8.arch == "lenet5" and int8.meta["num_classes"] == 10 and not int8.training

    # ONNX Runtime runs integer kernels: QLinearConv for every conv and linear, no float GEMM
    ops = int8.kernel_op_types()
    assert "QLinearConv" in ops
    assert not {"Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm"} & set(ops)

    # atomic save / load round trip gives the identical model
    path = tmp_path / "victim" / "model_int8.onnx"
    save_int8(int8, path)
    assert sorted(os.listdir(path.parent)) == ["model_int8.onnx"]  # no temporary file left
    loaded = load_int8(path)
    assert torch.equal(loaded(xt[:50]), logits[:50])
    assert loaded.arch == "lenet5" and loaded.meta == int8.meta


def _resnet8():
    return build_model("resnet8", 5, 3, 8, [0.5, 0.4, 0.3], [0.25, 0.2, 0.3])


def _qat_steps(prepared, x, steps=3):
    """A few training steps with random labels so observers, BN statistics and weights move."""
    opt = torch.optim.SGD(prepared.parameters(), 1e-2)
    y = torch.randint(0, 5, (len(x),))
    for _ in range(steps):
        _fit(prepared, x, y, opt, batch=len(x))
    return prepared.eval()


@pytest.mark.parametrize("build,shape,weight_bits,act_bits,learnable", [
    (_resnet8, (3, 8, 8), 8, 8, False), (_resnet8, (3, 8, 8), 4, 6, False),
    (Functional, (1, 8, 8), 8, 8, False), (Functional, (1, 8, 8), 4, 8, False),
    (Functional, (1, 8, 8), 3, 4, False), (Functional, (1, 8, 8), 8, 8, True),
])
def test_residual_and_low_bit_logits_within_steps(build, shape, weight_bits, act_bits, learnable):
    """ResNet-8 (Add modules, identity and projection shortcuts) and a functional-style net,
    at low bit widths and with LSQ-learned scales and zero points."""
    torch.manual_seed(0)
    x = torch.rand(32, *shape)
    prepared = _qat_steps(prepare_qat(build(), get_qconfig(weight_bits, act_bits, learnable)), x)
    with torch.no_grad():
        fq_logits = prepared(x)
    int8 = convert(prepared, x[:2])
    logits = int8(x)
    step = _logit_step(prepared)
    # the eval-mode QAT model rounds its bias as the integer model does; only float-vs-integer
    # accumulation flips a rare code by one step (compounding over ResNet-8's depth)
    diff = (logits - fq_logits).abs() / step
    assert diff.max() <= 2.001 and (diff > 1e-3).float().mean() <= 0.1
    # b-bit weights are stored as int8 values inside the b-bit range
    proto = onnx.load_from_string(int8.onnx_bytes)
    weights = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.startswith("w_") and
               numpy_helper.to_array(t).dtype.name == "int8" and numpy_helper.to_array(t).ndim == 4]
    assert weights and all(w.min() >= -(2 ** (weight_bits - 1)) and w.max() <= 2 ** (weight_bits - 1) - 1
                           for w in weights)
    assert max(abs(int(w.min())) for w in weights) >= 2 ** (weight_bits - 1) - 1  # the range is used
    pool = "QLinearGlobalAveragePool" if build is _resnet8 else "QLinearAveragePool"
    assert {"QLinearAdd", "QLinearConv", pool} <= set(int8.kernel_op_types())


def test_calibrate_then_convert_matches():
    torch.manual_seed(0)
    model = build_model("smallcnn", 5, 1, 12, [0.5], [0.25]).eval()
    x = torch.rand(32, 1, 12, 12)
    prepared = calibrate(prepare_qat(model), [x[:16], (x[16:], None)])
    assert not prepared.training
    with torch.no_grad():
        fq_logits = prepared(x)
    logits = convert(prepared, x[:1])(x)
    assert (logits - fq_logits).abs().max() <= 1.001 * _logit_step(prepared)


def test_bad_inputs_raise(tmp_path):
    model = build_model("smallcnn", 5, 1, 12, [0.5], [0.25])
    x = torch.rand(4, 1, 12, 12)
    with pytest.raises(ValueError, match="prepared_model"):
        convert(model, x)
    prepared = prepare_qat(model)
    with pytest.raises(RuntimeError, match="observed no data"):
        convert(prepared, x)
    prepared(x)
    with pytest.raises(ValueError, match="example_input"):
        convert(prepared, x[0])
    disable_fake_quant(prepared)
    with pytest.raises(ValueError, match="enable_fake_quant"):
        convert(prepared, x)
    int8 = convert(enable_fake_quant(prepared), x)
    with pytest.raises(RuntimeError, match="inference-only"):
        int8.train()
    with pytest.raises(ValueError, match="x must be"):
        int8(torch.rand(2, 3, 12, 12))
    with pytest.raises(FileNotFoundError, match="path"):
        load_int8(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="model must be an Int8Model"):
        save_int8(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="onnx_bytes"):
        Int8Model(b"not an onnx file")
    assert int8(torch.rand(0, 1, 12, 12)).shape == (0, 5)
