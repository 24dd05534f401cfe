"""Your own models: ``package.module:callable`` and nn.Module architectures, initial weights,
what prepare_qat says about an unsupported layer or a torch.ao qconfig, and torch.onnx.export
of a prepared model checked against the model itself in ONNX Runtime."""
import json
import sys
import textwrap
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from divqat.cli import main
from divqat.data import dataset_info
from divqat.models import CustomClassifier, ImageClassifier, build_model, build_model_for
from divqat.quant import get_qconfig, prepare_qat

pytestmark = pytest.mark.usefixtures("one_thread")

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    def tiny_net(num_classes, in_channels):
        """conv-bn-relu, pool, linear: quantizable."""
        return nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes))

    def takes_everything(**kw):
        CALLS.append(kw)
        return tiny_net(kw["num_classes"], kw["in_channels"])

    CALLS = []

    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.body = tiny_net(num_classes, 1)

        def forward(self, x):
            return self.body(x)

    def wrong_shape(num_classes):
        return nn.Flatten()

    def not_a_module():
        return 3

    def needs_depth(depth, num_classes):
        return tiny_net(num_classes, 1)

    def with_sigmoid(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.LazyLinear(num_classes))

    class FunctionalSigmoid(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, num_classes)

        def forward(self, x):
            return self.fc(torch.sigmoid(self.conv(x)).flatten(1))
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_nets", None)
    yield "my_nets"
    sys.modules.pop("my_nets", None)


META = dict(num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.4,))


def test_callable_reference_builds_a_wrapped_network(user_module):
    model = build_model("my_nets:tiny_net", **META)
    assert isinstance(model, CustomClassifier) and model.arch == "my_nets:tiny_net"
    assert model.meta == {**META, "mean": (0.3,), "std": (0.4,)}
    x = torch.rand(5, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model.net((x - 0.3) / 0.4))  # the net sees standardised images
    rebuilt = build_model(model.arch, **model.meta)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x), model(x))


def test_callable_gets_the_arguments_it_accepts(user_module):
    import my_nets

    build_model("my_nets:takes_everything", **META)
    assert my_nets.CALLS[-1] == {**META, "mean": (0.3,), "std": (0.4,)}


def test_module_instance_is_copied_and_wrapped(user_module):
    import my_nets

    net = my_nets.Net()
    model = build_model(net, **META)
    assert model.arch == "my_nets:Net" and model.net is not net
    assert all(a is not b for a, b in zip(model.parameters(), net.parameters()))
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(model.eval()(x), net.eval()((x - 0.3) / 0.4))
    ours = build_model_for("smallcnn", "digits")
    copy = build_model_for(ours, "digits")
    assert isinstance(copy, ImageClassifier) and copy is not ours
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), ours.state_dict().values()))
    with pytest.raises(ValueError, match="built for"):
        build_model_for(ours, "cifar10")


@pytest.mark.parametrize("arch, match", [
    ("no_such_module:f", "cannot import no_such_module"),
    ("my_nets:missing", "has no attribute 'missing'"),
    ("my_nets:CALLS", "not callable"),
    ("my_nets:not_a_module", "returned int, not an nn.Module"),
    ("my_nets:needs_depth", r"cannot call it with \['num_classes'\].*depth"),
    ("my_nets:wrong_shape", r"expected logits of shape \(2, 10\)"),
    (3.5, "arch must be a name, package.module:callable or an nn.Module"),
    ("resnet7", "or give package.module:callable"),
])
def test_bad_architectures_are_named(user_module, arch, match):
    with pytest.raises(ValueError, match=match):
        build_model(arch, **META)


def test_initial_weights_from_a_file(user_module, tmp_path):
    source = build_model("my_nets:tiny_net", **META)
    torch.save(source.net.state_dict(), tmp_path / "net.pt")  # the user's network alone
    torch.save({"arch": source.arch, "state_dict": source.state_dict()}, tmp_path / "surrogate.pt")
    for name in ("net.pt", "surrogate.pt"):
        model = build_model("my_nets:tiny_net", **META, weights=tmp_path / name)
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit arch 'my_nets:tiny_net'"):
        build_model("my_nets:tiny_net", **META, weights=tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model("lenet5", **{**META, "image_size": 28}, weights=tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="weights .*junk.pt is unreadable"):
        build_model("my_nets:tiny_net", **META, weights=tmp_path / "junk.pt")


def test_prepare_qat_names_the_unsupported_layer(user_module):
    with pytest.raises(ValueError) as err:
        prepare_qat(build_model("my_nets:with_sigmoid", **META))
    message = str(err.value)
    assert "layer Sigmoid at 'net.1'" in message and "supported: Normalize, Conv2d" in message
    assert "%" not in message and "num_users" not in message  # no raw fx node dump
    with pytest.raises(ValueError, match=r"function torch\.sigmoid \(input from 'net.conv'\)"):
        prepare_qat(build_model("my_nets:FunctionalSigmoid", **META))


def test_prepare_qat_rejects_a_torch_ao_qconfig_with_what_to_pass():
    from torch.ao.quantization import get_default_qat_qconfig

    with pytest.raises(ValueError, match=r"torch\.ao.*get_qconfig\(weight_bits=8, act_bits=8\)"):
        prepare_qat(build_model_for("smallcnn", "digits"), get_default_qat_qconfig("x86"))


def _export_and_run(model, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(model, (x[:1],), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}})
    return ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]


@pytest.mark.parametrize("bits, learnable", [(8, False), (4, False), (8, True)])
def test_onnx_export_of_a_prepared_model_computes_the_model(tmp_path, bits, learnable):
    model = build_model_for("smallcnn", "digits")
    prepared = prepare_qat(model, get_qconfig(bits, bits, learnable=learnable))
    prepared(torch.rand(32, 1, 8, 8))  # observe ranges
    prepared.eval()
    x = torch.rand(9, 1, 8, 8)
    with torch.no_grad():
        expected = prepared(x).numpy()
    got = _export_and_run(prepared, x, tmp_path / "prepared.onnx")
    np.testing.assert_array_equal(got, expected)  # the fake quantizer's formula, op for op


def test_onnx_export_of_a_prepared_user_model(user_module, tmp_path):
    prepared = prepare_qat(build_model("my_nets:tiny_net", **META))
    prepared(torch.rand(16, 1, 8, 8))
    prepared.eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        expected = prepared(x).numpy()
    np.testing.assert_array_equal(_export_and_run(prepared, x, tmp_path / "m.onnx"), expected)


def test_state_dicts_with_the_old_dict_extra_state_still_load():
    prepared = prepare_qat(build_model_for("smallcnn", "digits"))
    state = prepared.state_dict()
    old = {k: ({"observer_enabled": False, "fake_quant_enabled": True} if k.endswith("fake_quant._extra_state")
               else {"freeze_bn": True} if k.endswith("._extra_state") and isinstance(v, torch.Tensor) and v.numel() == 1
               else v) for k, v in state.items()}
    fresh = prepare_qat(build_model_for("smallcnn", "digits"))
    fresh.load_state_dict(old)
    quantizers = [m for m in fresh.modules() if type(m).__name__ == "FakeQuantize"]
    assert quantizers and all(not q.observer_enabled and q.fake_quant_enabled for q in quantizers)
    assert all(m.freeze_bn for m in fresh.modules() if type(m).__name__ == "QATConv2d")


def test_cli_victim_and_surrogate_from_the_users_module(user_module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # my_nets.py is in the working directory
    run = tmp_path / "victim"
    common = ["--dataset", "digits", "--arch", "my_nets:tiny_net", "--batch-size", "64", "--no-progress",
              "--device", "cpu"]
    assert main(["train", *common, "--epochs", "2", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "my_nets:tiny_net" and config["meta"]["image_size"] == dataset_info("digits").image_size
    assert main(["train", *common, "--method", "qat", "--teacher", str(run), "--epochs", "1",
                 "--out", str(tmp_path / "qat")]) == 0
    assert (tmp_path / "qat" / "model_int8.onnx").is_file()
    surrogate = build_model("my_nets:tiny_net", **config["meta"])
    torch.save(surrogate.net.state_dict(), tmp_path / "init.pt")
    out = tmp_path / "attack"
    assert main(["attack", "--victim", str(tmp_path / "qat"), "--attack", "copycat", "--queryset", "digits",
                 "--budget", "100", "--epochs", "1", "--arch", "my_nets:tiny_net",
                 "--surrogate-weights", str(tmp_path / "init.pt"), "--no-progress", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == "my_nets:tiny_net" and metrics["queries_used"] == 100
    saved = torch.load(out / "surrogate.pt", weights_only=True)
    assert saved["arch"] == "my_nets:tiny_net"
