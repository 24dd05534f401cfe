"""divqat.models: forward shapes, fx traceability, the module vocabulary, conv-bn-relu
ordering, parameter counts against the papers, rebuild from .arch/.meta, bad arguments."""
import operator

import pytest
import torch
import torch.fx
from torch import nn

from divqat.models import ARCHITECTURES, Add, Normalize, build_model, build_model_for, trace
from divqat.utils import seed_everything

ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, Add, Normalize)

CASES = [("lenet5", "mnist"), ("lenet5", "cifar10"), ("lenet_caffe", "mnist"), ("smallcnn", "mnist"), ("smallcnn", "digits"),
         ("smallcnn", "svhn"), ("resnet20", "cifar10"), ("resnet32", "cifar100"),
         ("vgg11_bn", "cifar10"), ("vgg16_bn", "cifar100"), ("wrn16_4", "svhn")]


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_every_architecture_is_covered():
    assert {a for a, _ in CASES} == set(ARCHITECTURES)


@pytest.mark.parametrize("arch, dataset", CASES)
def test_forward_trace_and_structure(arch, dataset):
    model = build_model_for(arch, dataset).eval()
    meta = model.meta
    x = torch.rand(2, meta["in_channels"], meta["image_size"], meta["image_size"])
    logits = model(x)
    assert logits.shape == (2, meta["num_classes"]) and torch.isfinite(logits).all()
    assert model.arch == arch

    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), logits, rtol=0, atol=0)
    graph_module = trace(model)
    torch.testing.assert_close(graph_module(x), logits, rtol=0, atol=0)
    assert graph_module.arch == arch and graph_module.meta == meta
    modules = dict(model.named_modules())
    nodes = list(graph_module.graph.nodes)
    calls = [n for n in nodes if n.op == "call_module"]
    assert all(isinstance(modules[n.target], ALLOWED) for n in calls)
    assert not [n for n in nodes if n.op == "call_function" and n.target is not operator.getitem]
    assert isinstance(modules[calls[0].target], Normalize) and calls[0].args[0].op == "placeholder"
    for node in calls:  # every BN reads a conv that feeds nothing else; every conv feeds a BN
        mod = modules[node.target]
        if isinstance(mod, nn.BatchNorm2d):
            (src,) = node.args
            assert isinstance(modules[src.target], nn.Conv2d) and len(src.users) == 1
        if isinstance(mod, nn.Conv2d):
            (user,) = node.users
            assert isinstance(modules[user.target], nn.BatchNorm2d)


def test_input_sizes_and_channels():
    for arch in ("lenet5", "smallcnn", "resnet20"):
        for c, s in ((1, 28), (3, 32), (3, 28)):
            m = build_model(arch, 7, c, s, (0.5,) * c, (0.25,) * c).eval()
            assert m(torch.rand(2, c, s, s)).shape == (2, 7)


def test_normalize_and_add_against_float64():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    norm = Normalize(mean, std)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    as64 = lambda v: torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1)  # noqa: E731
    ref = (x - as64(mean)) / as64(std)
    torch.testing.assert_close(norm(x.float()).double(), ref, rtol=1e-6, atol=1e-6)
    assert set(norm.state_dict()) == {"mean", "std"}
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(Add()(a, b), a + b)
    with pytest.raises(ValueError, match="std"):
        Normalize((0.0,), (0.0,))


def _conv_bn(cin, cout, k):
    return cin * cout * k * k + 2 * cout


def test_resnet_parameter_count_formula_and_paper():
    """He et al. 2016 Table 6: ResNet-20 0.27M, ResNet-32 0.46M parameters (option A; our
    option-B projections add 1x1 convs). Exact count from the layer formula, then the paper."""
    for arch, n, paper in (("resnet20", 3, 0.27e6), ("resnet32", 5, 0.46e6)):
        expected = _conv_bn(3, 16, 3) + 64 * 10 + 10
        for cin, cout in ((16, 16), (16, 32), (32, 64)):
            expected += _conv_bn(cin, cout, 3) + (2 * n - 1) * _conv_bn(cout, cout, 3)
            expected += _conv_bn(cin, cout, 1) if cin != cout else 0
        count = _params(build_model_for(arch, "cifar10"))
        assert count == expected
        assert count == pytest.approx(paper, rel=0.02)


def test_other_parameter_counts_against_papers():
    # Zagoruyko & Komodakis 2016, Table 1/4: WRN-16-4 2.7M, WRN-16-8 11.0M
    assert _params(build_model_for("wrn16_4", "cifar10")) == pytest.approx(2.7e6, rel=0.03)
    assert _params(build_model_for("wrn16_4", "cifar10", width=8)) == pytest.approx(11.0e6, rel=0.02)
    # LeCun et al. 1998: LeNet-5 has about 60,000 trainable parameters
    assert _params(build_model_for("lenet5", "mnist")) == pytest.approx(60e3, rel=0.05)
    # Caffe's MNIST LeNet: 20*25 + 50*20*25 conv weights (bias-free, BatchNorm adds 2 per channel),
    # 800*500 + 500 and 500*10 + 10 in the classifier
    assert _params(build_model_for("lenet_caffe", "mnist")) == 500 + 40 + 25000 + 100 + 400500 + 5010


def test_rebuild_from_arch_and_meta_and_seed():
    seed_everything(11)
    first = build_model_for("wrn16_4", "cifar10", width=2)
    assert first.arch == "wrn16_2"
    seed_everything(11)
    again = build_model(first.arch, **first.meta)
    assert first.meta == again.meta and set(first.meta) == {"num_classes", "in_channels", "image_size", "mean", "std"}
    a, b = first.state_dict(), again.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    seed_everything(12)
    other = build_model(first.arch, **first.meta).state_dict()
    assert not torch.equal(a["features.0.0.weight"], other["features.0.0.weight"])
    assert build_model("resnet44", 10, 3, 32, (0.5,) * 3, (0.2,) * 3).arch == "resnet44"


@pytest.mark.parametrize("kwargs, name", [
    ({"arch": "resnet19"}, "arch"),
    ({"arch": "alexnet"}, "arch"),
    ({"num_classes": 1}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
    ({"mean": (0.5, 0.5)}, "mean"),
    ({"std": (0.0,)}, "std"),
    ({"dropout": 0.5}, "dropout"),
    ({"arch": "resnet20", "width": 2}, "width"),
    ({"arch": "vgg11_bn"}, "image_size"),
    ({"arch": "lenet5", "image_size": 8}, "image_size"),
])
def test_bad_arguments(kwargs, name):
    args = {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "image_size": 28,
            "mean": (0.5,), "std": (0.25,), **kwargs}
    with pytest.raises(ValueError, match=name):
        build_model(**args)
    with pytest.raises(ValueError, match="dataset"):
        build_model_for("lenet5", "imagenet")
